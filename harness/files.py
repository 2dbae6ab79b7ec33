"""Files in and out: one reader for every input file, one atomic writer for every output, and
where the harness keeps its caches (`user_cache`).

`read_input` turns anything that can go wrong reading a user's file (missing, unreadable,
a directory, not UTF-8) into one HarnessError line naming the file; `atomic_write` writes via a
temp file in the same directory, fsynced and renamed over, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from harness.errors import HarnessError


def read_input(path: str | Path, what: str) -> str:
    """The text of an input file; HarnessError("<what> <path>: why") otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HarnessError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise HarnessError(f"{what} {path}: is a directory, not a file") from None
    except OSError as exc:
        raise HarnessError(f"{what} {path}: {exc.strerror or exc}") from None
    if b"\0" in data:
        raise HarnessError(f"{what} {path}: a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise HarnessError(f"{what} {path}: line {line} is not UTF-8 text") from None


# A \u escape not itself escaped (an even run of backslashes before it), high+low or alone.
_ESCAPED = r"(?<!\\)((?:\\\\)*)"
_PAIR = re.compile(_ESCAPED + r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})", re.I)
_LONE = re.compile(_ESCAPED + r"\\u(d[89a-f][0-9a-f]{2})", re.I)


def _astral(m: re.Match) -> str:
    code = 0x10000 + ((int(m[2], 16) - 0xD800) << 10) + int(m[3], 16) - 0xDC00
    return f"{m[1]}\\U{code:08x}"


def json_escapes(text: str, what: str, path: str | Path) -> str:
    """The text with JSON's surrogate-pair escapes (a character beyond U+FFFF, e.g. an emoji)
    as YAML's \\U escapes: YAML reads \\u as a code point, so the JSON file would not parse.
    A lone surrogate is no character at all: HarnessError naming its line."""
    if "\\u" not in text:
        return text
    text = _PAIR.sub(_astral, text)
    if lone := _LONE.search(text):
        line = text.count("\n", 0, lone.start()) + 1
        raise HarnessError(
            f"{what} {path}: line {line}: \\u{lone[2]} is a lone UTF-16 surrogate, not a character"
        )
    return text


def syntax_error(exc: Exception, what: str, path: str | Path, kind: str = "is not valid YAML"):
    """One line for a YAML parser's error: where, and the parser's own words."""
    mark = getattr(exc, "problem_mark", None)
    where = f" line {mark.line + 1}" if mark else ""
    problem = getattr(exc, "problem", None)
    return HarnessError(f"{what} {path}:{where} {kind}" + (f" ({problem})" if problem else ""))


def atomic_write(path: Path, data: bytes | Callable[[IO[bytes]], None]) -> Path:
    """Write `data` (bytes, or a function filling a binary file) to `path`, or nothing at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def last_line(text: str) -> str:
    """The last non-empty line, stripped."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def user_cache(name: str) -> Path:
    """The harness's part of the user's cache ($XDG_CACHE_HOME, else ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "compat-harness" / name
