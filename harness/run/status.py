"""`harness status OUTDIR`: a run's progress from its records (and its detached Flux jobs).

The records are read through the outdir's index (harness/record_index.py): one pass the first
time, then only what was appended since, however many records the outdir holds.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.judge.reasons import counts_in_rate
from harness.record_index import RecordIndex


@dataclass
class ModeStatus:
    mode: str
    done: int = 0  # iterations recorded with a reason in the success rate
    redo: int = 0  # iterations recorded as infra: still to do, a resume redoes them
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
    """Per mode: the iterations done and those to redo (infra), the target (when the run was
    detached) and the count of each reason, from the records alone."""
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise HarnessError(f"status: {outdir} is not a directory")
    rows: dict[str, ModeStatus] = {}
    for name, m in RecordIndex.load(outdir, save=True).modes.items():
        row = rows[name] = ModeStatus(name, reasons=m.counts(), last=m.last_started)
        row.done = sum(n for reason, n in row.reasons.items() if counts_in_rate(reason))
        row.redo = m.records - row.done
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
    # redo: iterations recorded as infra, which the next run of the mode redoes
    header = ["mode", "done", "of", "redo", "reasons", "last started", "flux job", "state"]
    table = [header]
    for r in rows:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.reasons.items())) or "-"
        table.append(
            [
                r.mode,
                str(r.done),
                str(r.target) if r.target else "-",
                str(r.redo),
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
