"""`harness status OUTDIR`: a run's progress from its records (and its detached Flux jobs)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness import records
from harness.errors import HarnessError


@dataclass
class ModeStatus:
    mode: str
    done: int = 0
    target: int | None = None
    reasons: Counter = field(default_factory=Counter)
    last: str | None = None
    job: str | None = None
    state: str | None = None


def detached_entries(outdir: Path) -> list[dict]:
    from harness.run.executors.flux_detach import DETACH_FILE  # no Flux bindings needed for it

    entries = []
    path = Path(outdir) / DETACH_FILE
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries


def status_rows(outdir: Path) -> list[ModeStatus]:
    """Per mode: the iterations recorded, the target (when the run was detached) and the count
    of each reason, from the records alone."""
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise HarnessError(f"status: {outdir} is not a directory")
    rows: dict[str, ModeStatus] = {}
    for rec in records.read(outdir):
        row = rows.setdefault(rec.mode, ModeStatus(rec.mode))
        row.done += 1
        row.reasons[rec.reason] += 1
        if rec.started_at and (row.last is None or rec.started_at > row.last):
            row.last = rec.started_at
    entries = detached_entries(outdir)
    states: dict[str, str] = {}
    if entries:
        from harness.run.executors.flux_detach import job_states

        states = job_states(entries)
    for e in entries:
        row = rows.setdefault(e.get("mode", "?"), ModeStatus(e.get("mode", "?")))
        row.target = e.get("iters")
        row.job = e["jobid"]
        row.state = states.get(e["jobid"])
    return sorted(rows.values(), key=lambda r: r.mode)


def status(outdir: Path) -> str:
    """A plain-text table of status_rows()."""
    rows = status_rows(outdir)
    if not rows:
        return f"{outdir}: no records yet"
    header = ["mode", "done", "of", "reasons", "last started", "flux job", "state"]
    table = [header]
    for r in rows:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.reasons.items())) or "-"
        table.append(
            [
                r.mode,
                str(r.done),
                str(r.target) if r.target else "-",
                reasons,
                r.last or "-",
                r.job or "-",
                r.state or "-",
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    )
