"""The report's files: report.csv, report.md, report.json, report.html and the figures as PNG
and SVG (write), and the figures of merit of the records as CSV (FomExport).

Every file is rendered in memory first and then written through a temp file renamed into
place, so an error never leaves a half-written report file behind, and a failing figure
leaves the previous report's files as they were.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from pathlib import Path

import harness.report.formats as fmt
from harness import application
from harness.errors import HarnessError
from harness.files import atomic_write
from harness.judge.reasons import SUCCESS
from harness.records import Record
from harness.report.html import html
from harness.report.markdown import markdown
from harness.report.model import Summary

FOM_COLUMNS = ("outdir", "mode", "iteration", "image", "reason", "figure", "value", "unit")


def csv_text(summary: Summary) -> str:
    """report.csv: a row per mode with its counts, rate, interval and expected rate."""
    reasons = fmt.reason_columns(fmt.all_reasons(summary))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["key", "outdir", "mode", "n", "success", "rate", "ci95_lo", "ci95_hi", *reasons]
        + ["median_wall_s", "runs", "expected_rate", "expected_outside"]
        + ["tts_ci95_lo", "tts_ci95_hi", "regret_s"]
        + ["against", "shift_s", "shift_ci95_lo", "shift_ci95_hi"]
    )
    expected = {(e.outdir, e.mode): e for e in (summary.expected or {}).values()}
    for key, m in summary.modes.items():
        e = expected.get((m.outdir, m.mode))
        w.writerow(
            [
                key,
                m.outdir,
                m.mode,
                m.n,
                m.success,
                "" if m.rate is None else f"{m.rate:.6f}",
                f"{m.ci95[0]:.6f}",
                f"{m.ci95[1]:.6f}",
                *(m.reasons.get(r, 0) for r in reasons),
                "" if m.median_wall_s is None else f"{m.median_wall_s:.3f}",
                m.runs,
                "" if e is None or e.rate is None else f"{e.rate:.6f}",
                "" if e is None or e.outside is None else str(e.outside).lower(),
                *(("", "") if m.tts_ci95 is None else (f"{v:.3f}" for v in m.tts_ci95)),
                "" if m.regret_s is None else f"{m.regret_s:.3f}",
                m.against or "",
                *(
                    ("", "", "")
                    if m.shift is None
                    else (f"{v:.3f}" for v in (m.shift.estimate, m.shift.low, m.shift.high))
                ),
            ]
        )
    return buf.getvalue()


def json_text(summary: Summary) -> str:
    return json.dumps(summary.to_json(), indent=2, allow_nan=False) + "\n"


def write(summary: Summary, dest: Path) -> list[Path]:
    """Write report.csv, report.md, report.json, report.html and the figures into `dest`."""
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"report: cannot create {dest}: {exc.strerror or exc}") from exc
    from harness.report.figures import rendered  # matplotlib: only when figures are drawn

    drawn = rendered(summary)
    files = {
        "report.csv": csv_text(summary).encode(),
        "report.md": markdown(summary).encode(),
        "report.json": json_text(summary).encode(),
        "report.html": html(summary, {n: f["svg"] for n, f in drawn.items()}, dest).encode(),
    }
    for name, formats in drawn.items():
        files.update({f"{name}.{ext}": data for ext, data in formats.items()})
    try:
        return [atomic_write(dest / name, data) for name, data in files.items()]
    except OSError as exc:
        raise HarnessError(f"report: cannot write into {dest}: {exc.strerror or exc}") from exc


def figure_units(app_name: str) -> dict[str, str]:
    """Units of an application's figures of merit (harness/data/applications/); none for an
    application this harness does not describe (a record of `--application FILE`)."""
    if app_name not in application.available():  # a record's name, never read as a path
        return {}
    return application.load(app_name).units()


class FomExport:
    """The figures of merit of the records it is shown, one CSV line per (record, figure):
    outdir, mode, iteration, image, reason, figure, value, unit. Successes only, unless
    `everything` (a failed or singleton run's timings would mix with the successes').

    Streams into a temp file beside `path` as the records go by; commit() renames it into
    place, leaving the with-block without commit() removes it.
    """

    def __init__(self, path: Path, everything: bool = False) -> None:
        self.path = Path(path)
        self.everything = everything
        self.units: dict[str, dict[str, str]] = {}  # application -> its figures' units
        self._tmp: str | None = None

    def __enter__(self) -> FomExport:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
            )
        except OSError as exc:
            raise HarnessError(f"report: cannot write {self.path}: {exc.strerror or exc}") from exc
        self._fh = os.fdopen(fd, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._fh, lineterminator="\n")
        self._csv.writerow(FOM_COLUMNS)
        return self

    def __call__(self, label: str, r: Record) -> None:
        if not self.everything and r.reason != SUCCESS:
            return
        if r.application not in self.units:
            self.units[r.application] = figure_units(r.application)
        units = self.units[r.application]
        for name in sorted(r.figures):
            self._csv.writerow(
                [label, r.mode, r.iteration, r.image or "", r.reason, name, r.figures[name]]
                + [units.get(name, "")]
            )

    def commit(self) -> Path:
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            os.chmod(self._tmp, 0o644)
            os.replace(self._tmp, self.path)
        except OSError as exc:
            raise HarnessError(f"report: cannot write {self.path}: {exc.strerror or exc}") from exc
        self._tmp = None
        return self.path

    def __exit__(self, *exc) -> None:
        self._fh.close()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
