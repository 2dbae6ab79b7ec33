"""Files in and out: one reader for every input file, one atomic writer for every output, and
where the harness keeps its caches (`user_cache`).

`read_input` turns anything that can go wrong reading a user's file (missing, unreadable,
a directory, not UTF-8) into one HarnessError line naming the file; `atomic_write` writes via a
temp file in the same directory, fsynced and renamed over, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import os
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
