"""Run records: the schema of one JSON line per iteration, versioned like ReFrame's, and the
typed views of records.jsonl.

The schema is documented in docs/records.md and published as JSON Schema in
docs/record.schema.json; bump SCHEMA when a field changes meaning. The bytes and locks of
records.jsonl belong to harness.outdir.Outdir; this module says what a line means. Every reader
(resume and status through harness.record_index, report, predict) parses lines with `parse()`
and names the file and line of anything that is not a record.
"""

from __future__ import annotations

import json
import operator
from array import array
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import orjson

from harness.application import DEFAULT as DEFAULT_APPLICATION
from harness.errors import HarnessError
from harness.outdir import CENSUS_FILE as CENSUS_FILE  # re-exported for their readers
from harness.outdir import CENSUS_MODE, Outdir
from harness.outdir import RECORDS_FILE as RECORDS_FILE
from harness.outdir import REJECTED_FILE as REJECTED_FILE

SCHEMA = "compat-harness/record/3"
# Schemas this reader understands: record/1 lacks the provenance and step fields, record/2 the
# application (defaults: LAMMPS, the only application before record/3).
READABLE = ("compat-harness/record/1", "compat-harness/record/2", SCHEMA)
# A census (every image in turn, harness census) records mode CENSUS and writes CENSUS_FILE.
CENSUS = CENSUS_MODE
CENSUS_SCHEMA = "compat-harness/census/1"


@dataclass
class Timings:
    """Seconds spent in each phase of one iteration."""

    select_s: float = 0.0
    pull_s: float = 0.0
    queue_s: float = 0.0
    run_s: float = 0.0
    wrapper_s: float = 0.0  # the whole iteration, pick to record
    # the application's own wall time as it reports it (LAMMPS: "Total wall time"), and the
    # job's share around it: run_s - app_s (launcher, container runtime, MPI start and end);
    # None when the application reported none
    app_s: float | None = None
    overhead_s: float | None = None


@dataclass
class Record:
    """What happened in one iteration of one mode."""

    iteration: int
    mode: str
    seed: int
    host: dict[str, str]
    candidates: list[str]
    image: str | None
    artifact: str | None
    artifact_digest: str | None
    image_digest: str | None
    executor: str
    launcher: str
    mpi_model: str
    np: int
    argv: list[str]
    exit_code: int | None
    signal: int | None
    timed_out: bool
    pulled: bool
    timings: Timings
    stdout_path: str | None
    stderr_path: str | None
    figures: dict[str, float | int | str]
    reason: str
    evidence: str
    started_at: str
    events: list[dict] = field(default_factory=list)
    matcher: str = "native"
    source: str = "application"  # who decided: application, infrastructure or harness (a fault)
    note: str | None = None  # an infrastructure line that did not decide, kept for the reader
    fault: dict | None = None  # the executor's typed fault ({kind, detail}) when there was one
    steps: dict[str, float] = field(default_factory=dict)  # seconds per named step
    stage: str | None = None  # the step where the iteration failed (None: it succeeded)
    executor_version: str | None = None  # e.g. "flux-core 0.55.0", "slurm 22.05.8"
    application: str = DEFAULT_APPLICATION  # what ran (harness/data/applications/NAME.yaml)
    schema: str = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: object) -> Record:
        """A Record from one decoded line; ValueError says what is wrong with it."""
        if not isinstance(data, dict):
            raise ValueError(f"a record is a JSON object, not {type(data).__name__}")
        # A reader's hot path (a million records): a line of this schema's every field, each of
        # its type, checked at once in C; anything else takes the checks that name what is wrong.
        try:
            whole = len(data) == len(_ALL) and all(map(isinstance, _ALL_VALUES(data), _ALL_KINDS))
        except KeyError:
            whole = False
        keys = data.keys()
        if not whole:
            if not keys >= _REQUIRED_SET:
                missing = [n for n in _REQUIRED if n not in data]
                raise ValueError(f"missing field(s) {', '.join(missing)}")
            _check_types(data)
        if isinstance(data["iteration"], bool) or data["iteration"] < 0:
            raise ValueError("field 'iteration' must be a whole number >= 0")
        schema = data.get("schema", SCHEMA)
        if schema not in READABLE:
            raise ValueError(f"schema {schema!r} is not one this harness reads ({SCHEMA})")
        # Filled in directly, not through __init__: binding 35 keyword arguments costs a reader
        # of a million records more than all its checks (the values were just checked above).
        rec = object.__new__(cls)
        values = rec.__dict__
        if not whole:
            values.update(_DEFAULTS)
            for name, make in _FACTORIES:
                if name not in data:
                    values[name] = make()
        values.update(data)
        if not whole and len(values) > len(_FIELDS):  # fields of a later schema, not known here
            for name in keys - _FIELDS:
                del values[name]
        timings = object.__new__(Timings)
        timings.__dict__.update(_TIMING_DEFAULTS)
        timings.__dict__.update(data["timings"])
        if len(timings.__dict__) > len(_TIMINGS):
            for name in data["timings"].keys() - _TIMINGS:
                del timings.__dict__[name]
        values["timings"] = timings
        return rec


_FIELDS = {f.name for f in fields(Record)}
_DEFAULTS = {f.name: f.default for f in fields(Record) if f.default is not MISSING}
_FACTORIES = tuple(
    (f.name, f.default_factory) for f in fields(Record) if f.default_factory is not MISSING
)
_TIMINGS = {f.name for f in fields(Timings)}
_TIMING_DEFAULTS = {f.name: f.default for f in fields(Timings)}
_REQUIRED = tuple(
    f.name
    for f in fields(Record)
    if f.default is f.default_factory  # both MISSING: no default
)
_NULLABLE = {
    "image",
    "artifact",
    "artifact_digest",
    "image_digest",
    "exit_code",
    "signal",
    "stdout_path",
    "stderr_path",
}
_REQUIRED_SET = frozenset(_REQUIRED)
_TYPES: dict[str, type | tuple[type, ...]] = {
    "iteration": int,
    "mode": str,
    "seed": int,
    "host": dict,
    "candidates": list,
    "image": str,
    "executor": str,
    "np": int,
    "argv": list,
    "exit_code": int,
    "timed_out": bool,
    "timings": dict,
    "figures": dict,
    "reason": str,
    "evidence": str,
    "started_at": str,
    "events": list,
    "steps": dict,
    "application": str,
}


# (field, its types, whether it must not be null): the checks from_dict makes of every line
_CHECKS = tuple(
    (name, kinds, name in _REQUIRED and name not in _NULLABLE) for name, kinds in _TYPES.items()
)

# every field, and each one's types (with None where it may be null; object: not checked)
_ALL = tuple(_FIELDS)
_ALL_VALUES = operator.itemgetter(*_ALL)
_KIND_OF = {
    name: kinds if needed else (*(kinds if isinstance(kinds, tuple) else (kinds,)), type(None))
    for name, kinds, needed in _CHECKS
}
_ALL_KINDS = tuple(_KIND_OF.get(name, object) for name in _ALL)


def _check_types(data: dict) -> None:
    """ValueError naming the first field of `data` whose value has the wrong type."""
    for name, kinds, needed in _CHECKS:
        value = data.get(name)
        if (needed and value is None) or (value is not None and not isinstance(value, kinds)):
            raise ValueError(f"field {name!r} has the wrong type ({type(value).__name__})")


# The seeds a record holds: a 64-bit signed integer, what every JSON reader of records reads.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
DENSE_SLACK = 1 << 16  # how far past the known iterations an array grows before a dict holds one


class Outcomes:
    """A small code (1..65535; 0 is none) per iteration of one mode: an array for the
    iterations runs write (0, 1, 2, ...), a dict for a stray far one, so that memory follows the
    iterations of the mode, not the size of the file."""

    def __init__(self, dense: array | None = None, sparse: dict[int, int] | None = None) -> None:
        self.dense = dense if dense is not None else array("H")
        self.sparse = sparse or {}

    def get(self, i: int) -> int:
        return self.dense[i] if i < len(self.dense) else self.sparse.get(i, 0)

    def set(self, i: int, code: int) -> None:
        n = len(self.dense)
        if n <= i < 2 * n + DENSE_SLACK:
            self.dense.frombytes(bytes(self.dense.itemsize * (i + 1 - n)))
            for k in [k for k in self.sparse if k <= i]:
                self.dense[k] = self.sparse.pop(k)
        if i < len(self.dense):
            self.dense[i] = code
        else:
            self.sparse[i] = code

    def count(self, code: int, below: int | None = None) -> int:
        """How many iterations (below `below`, if given) have `code`."""
        dense = self.dense if below is None else self.dense[:below]
        sparse = sum(
            1 for k, c in self.sparse.items() if c == code and (below is None or k < below)
        )
        return dense.count(code) + sparse


def records_path(outdir: Outdir | Path | str) -> Path:
    return Outdir.of(outdir).records_file


def parse(raw: bytes) -> Record:
    """The Record of one line; ValueError (or TypeError) says what is wrong with it."""
    try:
        data = orjson.loads(raw)  # orjson: 3-4x json.loads
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    return Record.from_dict(data)


def parse_line(raw: bytes, path: Path, number: int) -> Record:
    """The Record of line `number` of `path`; HarnessError naming both when it is none."""
    try:
        return parse(raw)
    except (ValueError, TypeError) as exc:
        raise HarnessError(
            f"{path} line {number}: not a harness record ({exc}); "
            f"`harness records repair {path.parent}` sets such lines aside"
        ) from None


def second_record(path: Path, number: int, rec: Record) -> HarnessError:
    return HarnessError(
        f"{path} line {number}: a second record for mode {rec.mode} iteration {rec.iteration}; "
        f"`harness records repair {path.parent}` keeps the first"
    )


class Seen:
    """The (mode, iteration) pairs met so far, in an Outcomes per mode."""

    def __init__(self) -> None:
        self.modes: dict[str, Outcomes] = {}

    def first(self, rec: Record) -> bool:
        """Whether this is the first record of its (mode, iteration); marks it seen."""
        marks = self.modes.get(rec.mode)
        if marks is None:  # not setdefault: that would make an Outcomes for every record
            marks = self.modes[rec.mode] = Outcomes()
        if marks.get(rec.iteration):
            return False
        marks.set(rec.iteration, 1)
        return True


def read(outdir: Outdir | Path | str) -> Iterator[Record]:
    """The records of an outdir, in file order, typed, in one pass; a torn last line (a writer
    died mid-write) is skipped. HarnessError names the file and line of a line that is not a
    record, and of a second record for the same (mode, iteration)."""
    out = Outdir.of(outdir)
    path = out.records_file
    seen = Seen()
    for number, raw in out.lines():
        rec = parse_line(raw, path, number)
        if not seen.first(rec):
            raise second_record(path, number, rec)
        yield rec


def _line(record: Record) -> bytes:
    """The line of `record`, checked to read back: never write what the reader refuses."""
    line = (record.to_json() + "\n").encode()
    try:
        parse(line)
    except (ValueError, TypeError) as exc:
        raise HarnessError(
            f"the record of mode {record.mode} iteration {record.iteration} would not read back "
            f"({exc}); it was not written"
        ) from None
    return line


def append(outdir: Outdir | Path | str, record: Record) -> None:
    """Append one record (one write of a whole line, fsynced, under .lock-records)."""
    Outdir.of(outdir).append(_line(record))


def replace(outdir: Outdir | Path | str, *redone: Record) -> None:
    """Put each record in place of the record of the same (mode, iteration): iterations redone
    because the infrastructure failed. records.jsonl is rewritten once, under .lock-records, so
    no other mode's append can be lost; a record no longer there is appended."""
    out = Outdir.of(outdir)
    new = {(r.mode, r.iteration): _line(r) for r in redone}
    modes = {r.mode.encode() for r in redone}

    def edit(raw: bytes) -> bytes | None:
        if not raw.endswith(b"\n"):
            return None  # torn by a writer that died: set aside
        if not any(m in raw for m in modes):  # a cheap test before parsing
            return raw
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw
        key = (data.get("mode"), data.get("iteration")) if isinstance(data, dict) else None
        return new.pop(key, raw) if key in new else raw

    out.rewrite(edit)
    for line in new.values():
        out.append(line)


def repair_all(outdir: Outdir | Path | str) -> tuple[int, int]:
    """`harness records repair`: keep the first valid record per (mode, iteration), set every
    other line aside in records.rejected.jsonl; returns (kept, set aside). It holds
    .lock-records like every writer, so harnesses may keep running meanwhile."""
    seen = Seen()
    counts = {"kept": 0, "aside": 0}

    def edit(raw: bytes) -> bytes | None:
        try:
            rec = parse(raw)
        except (ValueError, TypeError):
            counts["aside"] += 1
            return None
        if not seen.first(rec):
            counts["aside"] += 1
            return None
        counts["kept"] += 1
        return raw

    Outdir.of(outdir).rewrite(edit)
    return counts["kept"], counts["aside"]
