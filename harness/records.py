"""Run records: one JSON line per iteration, appended atomically, versioned like ReFrame's.

The schema is documented in docs/records.md; bump SCHEMA when a field changes meaning.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import orjson

SCHEMA = "compat-harness/record/1"
RECORDS_FILE = "records.jsonl"


@dataclass
class Timings:
    """Seconds spent in each phase of one iteration."""

    select_s: float = 0.0
    pull_s: float = 0.0
    queue_s: float = 0.0
    run_s: float = 0.0
    wrapper_s: float = 0.0


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
    schema: str = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        data = dict(data)
        data["timings"] = Timings(**data.get("timings", {}))
        return cls(**data)


def records_path(outdir: Path) -> Path:
    return Path(outdir) / RECORDS_FILE


def append(outdir: Path, record: Record) -> None:
    """Append one record with a single write() of a whole line, then fsync.

    A crash can only leave a truncated last line, which read_records() drops, so resuming
    reruns exactly that iteration: no record is lost or duplicated.
    """
    line = (record.to_json() + "\n").encode()
    fd = os.open(records_path(outdir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(line)
        while view:  # a regular file takes it in one write; a short write must not tear it
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def iter_raw(outdir: Path) -> Iterator[dict]:
    """Complete records of an outdir as dicts; a torn last line (crash mid-write) is skipped."""
    path = records_path(outdir)
    if not path.exists():
        return
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                yield orjson.loads(raw)  # 3-4x json.loads: reports read 100,000s of lines
            except orjson.JSONDecodeError:
                continue


def completed_iterations(outdir: Path, mode: str) -> set[int]:
    return {r["iteration"] for r in iter_raw(outdir) if r.get("mode") == mode}


def repair(outdir: Path) -> None:
    """Cut a torn last line left by a crash so that the next append starts on a fresh line."""
    path = records_path(outdir)
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with path.open("r+b") as fh:
            fh.truncate(keep)
