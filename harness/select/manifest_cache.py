"""Validated manifests cached by content: a large manifest is parsed once, then loaded as JSON.

PyYAML builds a Python node for every scalar before it builds the data: a 100,000-image
manifest costs about 1.9 s of CPU to load even with libyaml's parser, 0.3 s from here (the rows
manifest.load validated, as JSON). An entry's name is the SHA-256 of the manifest's text and of what
turned it into rows (the validating code, PyYAML's version), so an edit of either is a miss,
never a stale answer. Only rows that JSON holds exactly are cached (a YAML date or a non-string
key inside `flux` is not), only manifests of MIN_BYTES or more (a small one parses faster than
a cache is read), the KEEP most recently used entries at most. Invalid manifests are never
cached: their error is raised on every load. A cache that cannot be written costs nothing but
the time it would have saved. The parsed-artifact index (harness.select.artifact_index) is kept
the same way, in a folder of its own.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from pathlib import Path

import orjson

from harness.files import atomic_write, user_cache

MIN_BYTES = 256 * 1024  # about 2,500 images: parsing takes ~0.1 s, reading the cache ~0.01 s
KEEP = 8
FOLDER = "manifests"


def entry_name(text: str, *salts: bytes) -> str:
    digest = hashlib.sha256(text.encode())
    for salt in salts:
        digest.update(hashlib.sha256(salt).digest())
    return digest.hexdigest() + ".json"


@functools.cache
def source(module_file: str) -> bytes:
    """The text of the code that made a cache's entries, part of their names (b"" where the
    harness is installed without its source: then nothing is cached)."""
    try:
        return Path(module_file).read_bytes()
    except OSError:
        return b""


def directory(folder: str = FOLDER) -> Path:
    return user_cache(folder)


def read(name: str, folder: str = FOLDER) -> list | None:
    """The cached rows, or None on a miss (absent, unreadable, not what write() wrote)."""
    path = directory(folder) / name
    try:
        rows = orjson.loads(path.read_bytes())
        path.touch()  # recently used: kept by prune()
    except (OSError, orjson.JSONDecodeError):
        return None
    return rows if isinstance(rows, list) else None


def write(name: str, rows: list, folder: str = FOLDER) -> None:
    """Cache the rows when JSON gives them back exactly; then keep the KEEP newest entries."""
    try:
        data = orjson.dumps(rows)
    except TypeError:  # e.g. a non-string mapping key
        return
    if orjson.loads(data) != rows:  # e.g. a date read back as a string, NaN as null
        return
    with contextlib.suppress(OSError):
        atomic_write(directory(folder) / name, data)
        prune(folder)


def prune(folder: str = FOLDER) -> None:
    entries = directory(folder).glob("*.json")
    entries = sorted(entries, key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        old.unlink(missing_ok=True)
