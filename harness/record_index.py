"""What resume and status need of records.jsonl, kept beside it (records.index), so that
resuming into an outdir of a million records does not read them all again.

Per mode: its first record (what a resumed run must match), the reason of each recorded
iteration, the number of records and the latest start. The index covers a prefix of
records.jsonl, named by the file's inode, the prefix's size and line count and hashes of its
first and last bytes. Loading checks those against the file and reads only the lines appended
since. When they do not match it is rebuilt by one pass over the records: a rewrite (an infra
redo, a repair) removes the index under .lock-records, and a rewritten or hand-edited file
fails the check. Every line it reads is validated as `records.read()` validates it. The
records stay the truth: `harness records check` never uses the index.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import sys
import zlib
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from harness.errors import HarnessError
from harness.judge.reasons import counts_in_rate
from harness.outdir import Outdir, RecordsReader
from harness.records import Outcomes, Record, parse, parse_line, second_record

INDEX_SCHEMA = "compat-harness/records-index/1"
PROBE = 4096  # bytes hashed at each end of the covered prefix


@dataclass
class ModeIndex:
    """One mode's records: which iterations are recorded, and with which reason."""

    mode: str
    reasons: list[str]  # code - 1 -> reason name, shared by every mode of the index
    first: bytes = b""  # the mode's first record, as written
    outcomes: Outcomes = field(default_factory=Outcomes)  # iteration -> code of its reason
    records: int = 0
    last_started: str | None = None

    def first_record(self) -> Record | None:
        return parse(self.first) if self.first else None

    def recorded(self, i: int) -> bool:
        return self.outcomes.get(i) != 0

    def todo(self, iters: int) -> Iterator[int]:
        """Iterations below `iters` still to run, lazily: not recorded, or recorded with a
        reason outside the success rate (infra: the infrastructure failed, so redo it)."""
        done = {code for code, name in enumerate(self.reasons, 1) if counts_in_rate(name)}
        get = self.outcomes.get
        return (i for i in range(iters) if get(i) not in done)

    def counts(self, below: int | None = None) -> Counter[str]:
        """Records per reason (of the iterations below `below`, if given)."""
        found: Counter[str] = Counter()
        for code, name in enumerate(self.reasons, 1):
            if n := self.outcomes.count(code, below):
                found[name] = n
        return found


class RecordIndex:
    """The index of one outdir's records.jsonl (see the module's docstring)."""

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.modes: dict[str, ModeIndex] = {}
        self.reasons: list[str] = []
        self._codes: dict[str, int] = {}
        self.ino: int | None = None
        self.size = 0  # bytes of records.jsonl covered, a whole number of lines
        self.lines = 0
        self.head = self.tail = ""

    @classmethod
    def load(cls, outdir: Outdir | Path | str, save: bool = False) -> RecordIndex:
        """The index of records.jsonl as it is now: the saved one, checked and brought up to
        date, or one rebuilt; `save` keeps it for the next reader (a writer's choice)."""
        out = Outdir.of(outdir)
        index = cls.decode(out.read_index()) or cls()
        index.refresh(out, save)
        return index

    def mode(self, name: str) -> ModeIndex:
        return self.modes.get(name) or ModeIndex(name, self.reasons)

    def refresh(self, outdir: Outdir | Path | str, save: bool = False) -> None:
        """Bring the index up to date with records.jsonl (and save it, under .lock-records)."""
        out = Outdir.of(outdir)
        with out.open_records() as reader:
            if reader is None or not self._matches(reader):
                self._clear()
            if reader is None:
                return
            self._extend(reader, out.records_file)
            if save:
                self._save(out, reader)

    def _save(self, out: Outdir, reader: RecordsReader) -> None:
        try:
            with out.records_lock():
                # held open since it was read, the file keeps its inode: another inode at the
                # path means a rewrite since, and the next reader rebuilds
                if out.records_ino() != reader.ino:
                    return
                self._extend(reader, out.records_file)  # what was appended meanwhile
                out.write_index(self.encode())
        except OSError:
            return  # a read-only outdir, a full disk: the index is only a cache

    def _matches(self, reader: RecordsReader) -> bool:
        if self.ino != reader.ino or reader.size() < self.size:
            return False
        return _hashes(reader, self.size) == (self.head, self.tail)

    def _extend(self, reader: RecordsReader, path: Path) -> None:
        """Read and validate the lines after the covered prefix."""
        for end, raw in reader.lines(self.size):
            self.lines += 1
            self._add(parse_line(raw, path, self.lines), raw, path)
            self.size = end
        self.ino = reader.ino
        self.head, self.tail = _hashes(reader, self.size)

    def _add(self, rec: Record, raw: bytes, path: Path) -> None:
        m = self.modes.get(rec.mode)
        if m is None:
            m = self.modes[rec.mode] = ModeIndex(rec.mode, self.reasons, first=raw)
        if m.recorded(rec.iteration):
            raise second_record(path, self.lines, rec)
        if rec.reason not in self._codes:
            if len(self.reasons) >= 0xFFFF:
                raise HarnessError(f"{path} line {self.lines}: more than 65535 reasons")
            self.reasons.append(rec.reason)
            self._codes[rec.reason] = len(self.reasons)
        m.outcomes.set(rec.iteration, self._codes[rec.reason])
        m.records += 1
        if rec.started_at and (m.last_started is None or rec.started_at > m.last_started):
            m.last_started = rec.started_at

    def encode(self) -> bytes:
        modes = {
            name: {
                "first": m.first.decode(),
                "records": m.records,
                "last_started": m.last_started,
                "dense": base64.b64encode(zlib.compress(m.outcomes.dense.tobytes())).decode(),
                "sparse": sorted(m.outcomes.sparse.items()),
            }
            for name, m in self.modes.items()
        }
        return orjson.dumps(
            {
                "schema": INDEX_SCHEMA,
                "byteorder": sys.byteorder,
                "ino": self.ino,
                "size": self.size,
                "lines": self.lines,
                "head": self.head,
                "tail": self.tail,
                "reasons": self.reasons,
                "modes": modes,
            }
        )

    @classmethod
    def decode(cls, data: bytes | None) -> RecordIndex | None:
        """A saved index, or None when there is none or it is not one this code wrote."""
        if data is None:
            return None
        try:
            body = orjson.loads(data)
            if body["schema"] != INDEX_SCHEMA or body["byteorder"] != sys.byteorder:
                return None
            index = cls()
            index.ino, index.size, index.lines = body["ino"], body["size"], body["lines"]
            index.head, index.tail = body["head"], body["tail"]
            index.reasons.extend(body["reasons"])
            index._codes = {name: code for code, name in enumerate(index.reasons, 1)}
            for name, m in body["modes"].items():
                dense = array("H", zlib.decompress(base64.b64decode(m["dense"])))
                index.modes[name] = ModeIndex(
                    name,
                    index.reasons,
                    m["first"].encode(),
                    Outcomes(dense, {int(k): int(c) for k, c in m["sparse"]}),
                    m["records"],
                    m["last_started"],
                )
            return index
        except (
            orjson.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            zlib.error,
            binascii.Error,
        ):
            return None


def _hashes(reader: RecordsReader, size: int) -> tuple[str, str]:
    head = reader.read_at(0, min(PROBE, size))
    tail = reader.read_at(max(0, size - PROBE), min(PROBE, size))
    return hashlib.sha256(head).hexdigest(), hashlib.sha256(tail).hexdigest()


def check(outdir: Outdir | Path | str) -> tuple[int, int]:
    """`harness records check`: every line of records.jsonl validated in one pass, never
    trusting the index; (records, modes), or HarnessError naming the file and first bad line."""
    out = Outdir.of(outdir)
    index = RecordIndex()
    with out.open_records() as reader:
        if reader is None:
            raise HarnessError(f"{out.records_file}: no such file")
        index._extend(reader, out.records_file)
        if reader.torn:
            raise HarnessError(
                f"{out.records_file} line {index.lines + 1}: torn, no newline at its end (a "
                "writer died mid-write); the next run sets it aside, as `harness records repair` "
                "does"
            )
    return index.lines, len(index.modes)
