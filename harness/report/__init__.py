"""Summarise one or more outdirs: success rates with 95 % intervals, failure reasons, run times,
and, when an outdir holds a census, the outcome per image and each mode's expected success rate.

`harness report OUTDIR...` calls main(). The pipeline, one module per step:

    aggregate.load(outdirs, filters) -> Aggregates   one streamed pass over each records.jsonl
    summary.summarize(aggregates)    -> Summary      rows per mode and image, expected rates
    compare.compare_outdirs(summary) -> comparisons  with --compare
    export.write(summary, dest)      -> report.csv, .md, .json, .html, figures (PNG and SVG)
    console.render(summary, console)                 rich tables that fit the terminal

and beside them stats (Wilson, exact binomial ranges), ordering (modes as the user gave them,
reasons, images), document (what report.md and report.html say), figures, and dataframe:
frame(outdirs), the records as a pandas DataFrame for notebooks (docs/report.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.errors import HarnessError
from harness.report.aggregate import Filters, check_filters, load, load_census
from harness.report.compare import compare_outdirs
from harness.report.console import render
from harness.report.dataframe import frame
from harness.report.export import FOM_COLUMNS, FomExport, write
from harness.report.model import SCHEMA, Summary
from harness.report.ordering import (
    ModeOrder,
    image_os_version,
    image_sort_key,
    image_tag,
    reason_colour,
    reason_help,
    reason_order,
)
from harness.report.stats import binomial_interval, wilson
from harness.report.summary import summarize
from harness.select import modes as mode_data

__all__ = [
    "FOM_COLUMNS",
    "SCHEMA",
    "Filters",
    "ModeOrder",
    "Summary",
    "binomial_interval",
    "compare_outdirs",
    "frame",
    "image_os_version",
    "image_sort_key",
    "image_tag",
    "load",
    "load_census",
    "main",
    "reason_colour",
    "reason_help",
    "reason_order",
    "render",
    "summarize",
    "wilson",
    "write",
]


def _aggregate(
    paths: list[Path], filters: Filters, fom: Path | None, fom_all: bool, mode_file: Path | None
):
    """The one pass over the records, the figures of merit written as they go by (kept only
    when every filter matched something)."""
    if fom is None:
        aggregates = load(paths, filters)
        check_filters(aggregates, mode_file)
        return aggregates, None
    with FomExport(fom, everything=fom_all) as sink:
        aggregates = load(paths, filters, on_record=sink)
        check_filters(aggregates, mode_file)
        return aggregates, sink.commit()


def main(
    outdirs: list[str],
    as_json: bool = False,
    dest: str | None = None,
    compare: bool = False,
    *,
    modes: list[str] | None = None,
    images: list[str] | None = None,
    reasons: list[str] | None = None,
    export_fom: Path | None = None,
    export_fom_all: bool = False,
    mode_file: Path | None = None,
) -> int:
    """`harness report`: print tables (or the JSON summary with --json) and write the files.

    dest: where the files go (default: the first outdir; a filtered report writes files only
    where dest says, so it never replaces the outdir's full report).
    compare: per-mode deltas against the first outdir (needs two or more outdirs).
    modes / images / reasons: keep only those records; a value matching nothing is an error.
    export_fom: write the figures of merit of the kept successes (every kept record with
    export_fom_all) as CSV to this path. mode_file: more modes, shown in the file's order.
    """
    if not outdirs:
        raise HarnessError("report: give at least one outdir")
    paths = [Path(p) for p in outdirs]
    if compare and len(dict.fromkeys(paths)) < 2:
        raise HarnessError("report: --compare needs at least two outdirs")
    mode_data.order(mode_file)  # a bad mode file stops here, before any file is written
    filters = Filters.of(modes, images, reasons)
    aggregates, fom = _aggregate(paths, filters, export_fom, export_fom_all, mode_file)
    summary = summarize(aggregates, mode_file)
    if compare:
        summary.compare = compare_outdirs(summary)
    target = Path(dest) if dest else (None if filters else paths[0])
    written = write(summary, target) if target else []
    if as_json:
        from harness.report.export import json_text

        sys.stdout.write(json_text(summary))
        sys.stdout.flush()
        return 0
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 100)  # a file or pipe: 100 columns
    render(summary, console)
    if target:
        console.print(f"wrote {len(written)} files into {target}", markup=False, soft_wrap=True)
    else:
        console.print(
            "filtered report: nothing written (--out DIR writes it)", markup=False, soft_wrap=True
        )
    if fom is not None:
        console.print(f"figures of merit: {fom}", markup=False, soft_wrap=True)
    return 0
