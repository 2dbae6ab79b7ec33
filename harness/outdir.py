"""The run directory: the one owner of its files and of the locks that guard them.

    OUTDIR/
      records.jsonl            one JSON line per iteration (harness/records.py: what a line is)
      records.rejected.jsonl   lines set aside: torn by a crash, or no record (records repair)
      records.index            what resume and status need of records.jsonl (record_index.py)
      census.json              a census's candidate sets on its host
      logs/MODE/iter-NNNN.<attempt>.out|.err   each attempt's job output; executors journal
                               their jobs beside them
      .lock-MODE, .lock-records

Locking rule (flock; every writer of a file holds the lock that guards it, whatever its mode):

    .lock-MODE     held by a run of MODE (`harness run`, or `harness census` for MODE census)
                   for its whole length, taken without waiting: a second run of MODE is refused.
                   It guards MODE's iterations (which are still to do), logs/MODE/ and, for the
                   census, census.json.
    .lock-records  held by every writer of records.jsonl, records.rejected.jsonl and
                   records.index for one operation: an append, a rewrite (an infra redo, a
                   repair), setting a torn last line aside, saving the index. Waited for, held
                   briefly, taken after .lock-MODE and never while waiting for anything else.

Readers take no lock: an append is one write() of a whole line and a rewrite renames a complete
new file over the old one, so a reader sees whole lines and at most one torn last line (a writer
that died mid-write), which it skips and the next writer sets aside.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from harness.errors import HarnessError
from harness.files import atomic_write

RECORDS_FILE = "records.jsonl"
REJECTED_FILE = "records.rejected.jsonl"
INDEX_FILE = "records.index"
CENSUS_FILE = "census.json"
CENSUS_MODE = "census"  # the mode of `harness census`, whose lock guards census.json
LOGS = "logs"
RECORDS_LOCK = ".lock-records"
BLOCK = 1 << 16


def outdir_path(text: str) -> Path:
    """An outdir named on the command line; '' would silently be the current directory."""
    if not text.strip():
        raise HarnessError("the outdir is empty: name a directory (e.g. --outdir results)")
    if "\0" in text:
        raise HarnessError(f"outdir {text!r}: a NUL byte is in no file name")
    return Path(text)


class RecordsReader:
    """records.jsonl held open: the same file (inode) however a rewrite renames another over it,
    so everything read from it is a prefix of one file."""

    def __init__(self, path: Path, fh: IO[bytes]) -> None:
        self.path = path
        self._fh = fh
        self.ino = os.fstat(fh.fileno()).st_ino
        self.torn = b""  # bytes after the last newline, seen by the last lines() to reach them

    def size(self) -> int:
        return os.fstat(self._fh.fileno()).st_size

    def read_at(self, offset: int, n: int) -> bytes:
        return os.pread(self._fh.fileno(), n, offset)

    def lines(self, offset: int = 0) -> Iterator[tuple[int, bytes]]:
        """(end offset, line) of every whole line from `offset` on; stops before a torn one."""
        self._fh.seek(offset)
        self.torn = b""
        try:
            for raw in self._fh:
                if not raw.endswith(b"\n"):
                    self.torn = raw
                    return
                offset += len(raw)
                yield offset, raw
        except OSError as exc:
            raise HarnessError(f"{self.path}: {exc.strerror or exc}") from None


class Outdir:
    """A run directory (see the module's docstring for its files and its locking rule)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._held: set[str] = set()  # the locks this object holds: what its writers check

    @classmethod
    def of(cls, where: Outdir | Path | str) -> Outdir:
        return where if isinstance(where, Outdir) else cls(where)

    @property
    def records_file(self) -> Path:
        return self.path / RECORDS_FILE

    @property
    def rejected_file(self) -> Path:
        return self.path / REJECTED_FILE

    @property
    def index_file(self) -> Path:
        return self.path / INDEX_FILE

    @property
    def census_file(self) -> Path:
        return self.path / CENSUS_FILE

    def prepare(self) -> None:
        """Create the directory (and logs/) of a run that is about to write."""
        try:
            (self.path / LOGS).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HarnessError(f"outdir {self.path}: {exc.strerror}") from None
        if not os.access(self.path, os.W_OK):
            raise HarnessError(f"outdir {self.path}: not writable")

    # ---------------------------------------------------------------------------------- locks
    @contextmanager
    def mode_lock(self, mode: str) -> Iterator[None]:
        """One run per (outdir, mode): a detached run and a manual rerun must not both run it."""
        with self._flock(f".lock-{mode}", wait=False):
            yield

    @contextmanager
    def records_lock(self) -> Iterator[None]:
        """Held by every writer of records.jsonl, records.rejected.jsonl and records.index."""
        with self._flock(RECORDS_LOCK, wait=True):
            yield

    @contextmanager
    def _flock(self, name: str, wait: bool) -> Iterator[None]:
        with (self.path / name).open("w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                mode = name.removeprefix(".lock-")
                raise HarnessError(
                    f"another harness run is writing mode {mode} in {self.path}; wait for it, "
                    "or use another outdir"
                ) from None
            self._held.add(name)
            try:
                yield
            finally:
                self._held.discard(name)

    def _require(self, name: str, what: str) -> None:
        if name not in self._held:  # a writer that skipped its lock: a bug, never bad input
            raise RuntimeError(f"{what} written without holding {name}")

    # -------------------------------------------------------------------------- records.jsonl
    @contextmanager
    def open_records(self) -> Iterator[RecordsReader | None]:
        """records.jsonl held open for reading (None when there is none yet)."""
        path = self.records_file
        try:
            fh = path.open("rb")
        except (FileNotFoundError, NotADirectoryError):  # no outdir yet, or none can be
            yield None
            return
        except IsADirectoryError:
            raise HarnessError(f"{path}: not a file") from None
        except OSError as exc:
            raise HarnessError(f"{path}: {exc.strerror or exc}") from None
        with fh:
            yield RecordsReader(path, fh)

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """(line number, line) of every whole line of records.jsonl, in file order."""
        with self.open_records() as reader:
            if reader is not None:
                for number, (_, raw) in enumerate(reader.lines(), start=1):
                    yield number, raw

    def records_ino(self) -> int | None:
        try:
            return self.records_file.stat().st_ino
        except FileNotFoundError:
            return None

    def append(self, line: bytes) -> None:
        """Append one whole line with a single write(), then fsync, under .lock-records.

        A torn last line left by a writer that died is set aside first, so the new line starts
        a line of its own; a write that fails (a full disk) is cut back off, so a crash or an
        error leaves at most a torn last line, which readers skip: no record is half-written.
        """
        path = self.records_file
        with self.records_lock():
            created = not path.exists()
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = self._set_torn_tail_aside(fd)
                try:
                    view = memoryview(line)
                    while view:  # a regular file takes it in one write; a short one must not tear
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, size)
                    raise
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.path)  # the new file's name survives a crash too

    def _set_torn_tail_aside(self, fd: int) -> int:
        """Move bytes after the last newline (a dead writer's torn line) to the rejected file
        and cut them off; returns the file's size after. Call under .lock-records."""
        size = os.fstat(fd).st_size
        end = size
        while end > 0:
            start = max(0, end - BLOCK)
            at = os.pread(fd, end - start, start).rfind(b"\n")
            if at >= 0:
                end = start + at + 1
                break
            end = start
        if end < size:
            self._set_aside([os.pread(fd, size - end, end)])
            os.ftruncate(fd, end)
            os.fsync(fd)
        return end

    def _set_aside(self, lines: list[bytes]) -> None:
        self._require(RECORDS_LOCK, REJECTED_FILE)
        with self.rejected_file.open("ab") as fh:
            fh.write(b"".join(x if x.endswith(b"\n") else x + b"\n" for x in lines))
            fh.flush()
            os.fsync(fh.fileno())

    def rewrite(self, edit: Callable[[bytes], bytes | None]) -> None:
        """Pass every line of records.jsonl (a torn last one too) through `edit` and put the
        result in place at once, under .lock-records: `edit` returns the line to keep (itself or
        another), or None to set it aside in records.rejected.jsonl. Streamed: memory does not
        grow with the file. The index goes first: it described the old file."""
        path = self.records_file
        with self.records_lock():
            if not path.is_file():
                raise HarnessError(f"{path}: no records")
            self.index_file.unlink(missing_ok=True)
            aside: list[bytes] = []

            def fill(out: IO[bytes]) -> None:
                with path.open("rb") as src:
                    for raw in src:
                        new = edit(raw)
                        if new is None:
                            aside.append(raw)
                            if len(aside) >= 1024:
                                self._set_aside(aside)
                                aside.clear()
                        else:
                            out.write(new if new.endswith(b"\n") else new + b"\n")
                if aside:  # set aside (fsynced) before the rename: a crash loses no line
                    self._set_aside(aside)

            atomic_write(path, fill)

    # ---------------------------------------------------------------------- records.index
    def read_index(self) -> bytes | None:
        try:
            return self.index_file.read_bytes()
        except OSError:
            return None  # absent or unreadable: a cache, rebuilt from the records

    def write_index(self, data: bytes) -> None:
        self._require(RECORDS_LOCK, INDEX_FILE)
        atomic_write(self.index_file, data)

    # ------------------------------------------------------------------------ census.json
    def write_census(self, body: dict) -> None:
        self._require(f".lock-{CENSUS_MODE}", CENSUS_FILE)
        atomic_write(self.census_file, (json.dumps(body, indent=2) + "\n").encode())

    # ------------------------------------------------------------------------------- logs
    def attempt_paths(self, mode: str, i: int, create: bool = True) -> tuple[Path, Path]:
        """Fresh stdout/stderr paths for one attempt of an iteration: a job left behind by an
        earlier attempt can never write into the logs a record points to."""
        logs = self.path / LOGS / mode
        if create:
            logs.mkdir(parents=True, exist_ok=True)
        stem = f"iter-{i:04d}.{uuid.uuid4().hex[:8]}"
        return logs / f"{stem}.out", logs / f"{stem}.err"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
