"""Parsed artifacts remembered by file: a later selection stats an artifact file instead of
reading, hashing and parsing it.

A 100,000-image selection reads as many files from a compspec-go cache directory: about 1 s of
open/read/close, SHA-256 and JSON before any matching. An entry remembers a file's stat
(mtime, ctime, size, inode) as it was when read, with its digest and flattened attributes; a
file whose stat differs now is read again, so an edit is a miss, never a stale answer. A file
changed less than RACY_NS before it was read is not remembered: timestamps are coarse, and a
rewrite of the same size within one tick would look unchanged. One index per cache directory
and version of the parsing code, kept beside the manifest cache (harness.select.manifest_cache),
only for selections of MIN_FILES or more; it holds the files the last such selection read.
"""

from __future__ import annotations

import contextlib
import os
import time

from harness.select import manifest_cache

MIN_FILES = 2_000  # below this, reading the files costs about what the index would
RACY_NS = 2_000_000_000
FOLDER = "artifact-index"

Stat = tuple[int, int, int, int]


def _stat(path: str) -> Stat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino


class ArtifactIndex:
    """The index of one cache directory: lookup() before reading a file, remember() after."""

    def __init__(self, name: str):
        self.name = name
        self._old: dict[str, tuple[Stat, str, dict]] = {}
        with contextlib.suppress(TypeError, ValueError, IndexError, KeyError):
            flats, files = manifest_cache.read(name, FOLDER) or ([], {})
            self._old = {p: (tuple(e[:4]), e[4], flats[e[5]]) for p, e in files.items()}
        self._seen: dict[str, tuple[Stat, str, dict]] = {}
        self._pending: dict[str, Stat] = {}
        self._now = time.time_ns()
        self._added = False

    def lookup(self, path: str) -> tuple[str, dict[str, str]] | None:
        """(digest, attributes) remembered for the file as it is now; None: read it."""
        stat = _stat(path)
        if stat is None:
            return None
        entry = self._old.get(path)
        if entry is not None and entry[0] == stat:
            self._seen[path] = entry
            return entry[1], entry[2]
        if self._now - stat[1] > RACY_NS:
            self._pending[path] = stat  # taken before the read: a later change is a miss
        return None

    def remember(self, path: str, digest: str, attributes: dict[str, str]) -> None:
        """The file lookup() missed, as it was read and parsed."""
        stat = self._pending.pop(path, None)
        if stat is not None:
            self._seen[path] = (stat, digest, attributes)
            self._added = True

    def save(self) -> None:
        """Keep what this selection read, when it differs from what was kept."""
        if not self._added and len(self._seen) == len(self._old):
            return
        flats: dict[tuple, int] = {}  # equal attributes kept once: images built alike
        files = {}
        for path, (stat, digest, attributes) in self._seen.items():
            i = flats.setdefault(tuple(attributes.items()), len(flats))
            files[path] = [*stat, digest, i]
        manifest_cache.write(self.name, [[dict(f) for f in flats], files], FOLDER)
