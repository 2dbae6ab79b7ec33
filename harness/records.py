"""Run records: one JSON line per iteration, appended atomically, versioned like ReFrame's.

The schema is documented in docs/records.md and published as JSON Schema in
docs/record.schema.json; bump SCHEMA when a field changes meaning. Every reader (resume, report,
status, predict) goes through `read()`, which returns typed Records and names the file and line
of anything that is not one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import orjson

from harness.errors import HarnessError
from harness.files import atomic_write

SCHEMA = "compat-harness/record/2"
# Schemas this reader understands: record/1 lacks the provenance and step fields (defaults).
READABLE = ("compat-harness/record/1", SCHEMA)
RECORDS_FILE = "records.jsonl"
REJECTED_FILE = "records.rejected.jsonl"
# A census (every image in turn, harness census) records mode CENSUS and writes CENSUS_FILE.
CENSUS = "census"
CENSUS_FILE = "census.json"
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
    schema: str = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: object) -> Record:
        """A Record from one decoded line; ValueError says what is wrong with it."""
        if not isinstance(data, dict):
            raise ValueError(f"a record is a JSON object, not {type(data).__name__}")
        missing = [n for n in _REQUIRED if n not in data]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        for name, kinds in _TYPES.items():
            value = data.get(name)
            if (
                value is not None
                and not isinstance(value, kinds)
                or (value is None and name in _REQUIRED and name not in _NULLABLE)
            ):
                raise ValueError(f"field {name!r} has the wrong type ({type(value).__name__})")
        if isinstance(data["iteration"], bool) or data["iteration"] < 0:
            raise ValueError("field 'iteration' must be a whole number >= 0")
        schema = data.get("schema", SCHEMA)
        if schema not in READABLE:
            raise ValueError(f"schema {schema!r} is not one this harness reads ({SCHEMA})")
        known = {k: v for k, v in data.items() if k in _FIELDS}
        known["timings"] = Timings(**{k: v for k, v in data["timings"].items() if k in _TIMINGS})
        return cls(**known)


_FIELDS = {f.name for f in fields(Record)}
_TIMINGS = {f.name for f in fields(Timings)}
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
    "events": list,
    "steps": dict,
}


def records_path(outdir: Path) -> Path:
    return Path(outdir) / RECORDS_FILE


def append(outdir: Path, record: Record) -> None:
    """Append one record with a single write() of a whole line, then fsync.

    A crash can only leave a truncated last line, which read() drops, so resuming reruns
    exactly that iteration: no record is lost or duplicated.
    """
    path = records_path(outdir)
    created = not path.exists()
    line = (record.to_json() + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(line)
        while view:  # a regular file takes it in one write; a short write must not tear it
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)  # the new file's name survives a crash too


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(outdir: Path) -> Iterator[Record]:
    """The records of an outdir, in file order, typed; a torn last line (crash mid-write) is
    skipped. HarnessError names the file and line of a line that is not a record, and of a
    second record for the same (mode, iteration)."""
    path = records_path(outdir)
    if not path.exists():
        return
    if not path.is_file():
        raise HarnessError(f"{path}: not a file")
    seen: set[tuple[str, int]] = set()
    try:
        with path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.endswith(b"\n"):
                    break  # torn by a crash: the next run cuts it
                try:
                    rec = Record.from_dict(orjson.loads(raw))  # orjson: 3-4x json.loads
                except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
                    raise HarnessError(
                        f"{path} line {number}: not a harness record ({exc}); "
                        f"`harness records repair {path.parent}` sets such lines aside"
                    ) from None
                key = (rec.mode, rec.iteration)
                if key in seen:
                    raise HarnessError(
                        f"{path} line {number}: a second record for mode {rec.mode} iteration "
                        f"{rec.iteration}; `harness records repair {path.parent}` keeps the first"
                    )
                seen.add(key)
                yield rec
    except OSError as exc:
        raise HarnessError(f"{path}: {exc.strerror or exc}") from None


def of_mode(outdir: Path, mode: str) -> list[Record]:
    return [r for r in read(outdir) if r.mode == mode]


def repair(outdir: Path) -> None:
    """Cut a torn last line left by a crash so that the next append starts on a fresh line.
    Call it only while holding the mode lock: a running harness may be mid-append."""
    path = records_path(outdir)
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with path.open("r+b") as fh:
            fh.truncate(keep)
            os.fsync(fh.fileno())


def replace(outdir: Path, record: Record) -> None:
    """Put `record` in place of the record of the same (mode, iteration): an iteration redone
    because the infrastructure failed. Rewrites the file atomically (call it under the lock)."""
    path = records_path(outdir)
    lines = path.read_bytes().splitlines(keepends=True)
    new = (record.to_json() + "\n").encode()
    out = []
    for raw in lines:
        data = orjson.loads(raw)
        same = data.get("mode") == record.mode and data.get("iteration") == record.iteration
        out.append(new if same else raw)
    atomic_write(path, b"".join(out))


def repair_all(outdir: Path) -> tuple[int, int]:
    """`harness records repair`: keep the first valid record per (mode, iteration), append
    every other line to records.rejected.jsonl; returns (kept, rejected). Takes every mode's
    lock is not possible from here, so run it when no harness writes the outdir."""
    path = records_path(outdir)
    if not path.is_file():
        raise HarnessError(f"{path}: no records to repair")
    kept, rejected, seen = [], [], set()
    for raw in path.read_bytes().splitlines(keepends=True):
        try:
            rec = Record.from_dict(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValueError, TypeError):
            rejected.append(raw if raw.endswith(b"\n") else raw + b"\n")
            continue
        if (rec.mode, rec.iteration) in seen:
            rejected.append(raw)
            continue
        seen.add((rec.mode, rec.iteration))
        kept.append(raw if raw.endswith(b"\n") else raw + b"\n")
    if rejected:
        with (Path(outdir) / REJECTED_FILE).open("ab") as fh:
            fh.write(b"".join(rejected))
            os.fsync(fh.fileno())
    atomic_write(path, b"".join(kept))
    return len(kept), len(rejected)
