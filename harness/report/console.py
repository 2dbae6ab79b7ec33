"""The tables `harness report` prints (rich). Every table fits the console (100 columns is the
target; the tests hold every table to 100 and 80, and the modes' tables to 60): when the wide
layout does not fit, it is stacked into narrower tables, names and log lines wrap, and a number
is never cut.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import harness.report.formats as fmt
from harness.report.model import ModeRow, OutdirInfo, Summary

NAME_WIDTH = 24  # columns a mode's or image's name keeps before it wraps


def _table(title: str, head: Sequence[str], rows: list[list], names: int = 1, wide: bool = True):
    """A table whose first `names` columns are names (left, wrapping when narrow) and the rest
    numbers (right-aligned, never narrower than their widest cell); cells are plain text, never
    markup (an evidence line may hold brackets)."""
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    cells = [[c if isinstance(c, Text) else Text(c) for c in row] for row in rows]
    t = Table(
        title=Text(title, overflow="fold"),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for i, name in enumerate(head):
        if name == "evidence":
            t.add_column(name, overflow="fold", max_width=60 if wide else None)
            continue
        width = max((cell_len(row[i].plain) for row in cells), default=1)
        if i < names:  # a name wraps only past NAME_WIDTH, headers of numbers fold first
            t.add_column(name, no_wrap=wide or width <= NAME_WIDTH, overflow="fold")
            continue
        t.add_column(name, justify="right", no_wrap=wide, overflow="fold", min_width=width)
    for row in cells:
        t.add_row(*row)
    return t


def _styled(text: str, style: str | None):
    from rich.text import Text

    return Text(text, style=style or "")


def _mode_tables(out: OutdirInfo, rows: list[ModeRow], failures: list[str], width: int) -> list:
    """The outdir's table; at width 1 the reason counts go into a second table of their own, at
    0 the time-to-solution too."""
    head = ["mode", "n", "ok", "rate [95 % CI]"]
    cells = [[m.mode, str(m.n), str(m.success), fmt.rate_ci(m.rate, m.ci95)] for m in rows]
    counts = [[str(m.reasons.get(r, 0)) for r in failures] for m in rows]
    wall = [[fmt.tts_ci(m.median_wall_s, m.tts_ci95), fmt.regret(m.regret_s)] for m in rows]
    speed = ["time-to-solution [95 % CI]", "regret"]
    title = f"{out.label}  ({out.path})"
    if width == 2 or (width == 1 and not failures):
        body = [[*c, *k, *w] for c, k, w in zip(cells, counts, wall, strict=True)]
        return [_table(title, [*head, *failures, *speed], body, wide=width == 2)]
    reasons = [[m.mode, *k] for m, k in zip(rows, counts, strict=True)]
    by_reason = f"{out.label}: failures by reason"
    tables = [_table(by_reason, ["mode", *failures], reasons, wide=False)] if failures else []
    if width == 1:
        main = [[*c, *w] for c, w in zip(cells, wall, strict=True)]
        return [_table(title, [*head, *speed], main, wide=False), *tables]
    times = [[m.mode, *w] for m, w in zip(rows, wall, strict=True)]
    return [
        _table(title, head, cells, wide=False),
        *tables,
        _table(
            f"{out.label}: time-to-solution of the successes", ["mode", *speed], times, 1, False
        ),
    ]


def _shift_tables(label: str, rows: list[ModeRow], wide: bool) -> list:
    """Each mode that names a baseline mode (modes.yaml `against`): how much faster it ran (the
    successes it compares are the mode table's); when not wide, the shift goes into a table of
    its own, without what its interval covers."""
    head = fmt.SHIFT_HEAD
    cells = [[m.mode, *fmt.shift_cells(m)] for m in rows if m.against is not None]
    title = f"{label}: time-to-solution against a baseline mode"
    if wide:
        keep = [0, 1, 3, 4, 5]  # mode, against, shift, covers, verdict
        return [_table(title, [head[i] for i in keep], [[r[i] for i in keep] for r in cells], 2)]
    first, second = [0, 1, 5], [0, 3]
    return [
        _table(title, [head[i] for i in first], [[r[i] for i in first] for r in cells], 2, False),
        _table(
            f"{label}: the shift",
            [head[i] for i in second],
            [[r[i] for i in second] for r in cells],
            wide=False,
        ),
    ]


def _expected_tables(label: str, summary: Summary, keys: list[str], wide: bool) -> list:
    """Expected beside measured; when not wide, the measured side gets a table of its own."""
    left, right = [], []
    for k in keys:
        e = (summary.expected or {})[k]
        iv = e.interval95_counts
        left.append(
            [
                e.mode,
                "no set" if e.candidates is None else str(e.candidates),
                str(e.missing),
                fmt.pct(e.rate),
            ]
        )
        right.append(
            [
                fmt.measured(e),
                "–" if iv is None else f"{iv[0]}–{iv[1]}",
                _styled(fmt.flag(e), "bold red" if e.outside else None),
            ]
        )
    title = f"{label}: expected success rate from the census"
    head_left = ["mode", "cands", "missing", "expected"]
    head_right = ["measured", "95 % range", "flag"]
    if wide:
        body = [[*a, *b] for a, b in zip(left, right, strict=True)]
        return [_table(title, head_left + head_right, body)]
    measured = [[a[0], *b] for a, b in zip(left, right, strict=True)]
    return [
        _table(title, head_left, left, wide=False),
        _table(f"{label}: measured against the expected rate", ["mode", *head_right], measured),
    ]


def _image_tables(label: str, summary: Summary, keys: list[str], wide: bool) -> list:
    """The census per image; when not wide, figures and evidence go into a second table."""
    short = fmt.short_images(summary)
    images = summary.images or {}
    left = [
        [
            short[k],
            str(images[k].runs),
            str(images[k].success),
            fmt.rate_ci(images[k].rate, images[k].ci95),
            images[k].reason or "–",
        ]
        for k in keys
    ]
    columns = [c for c in summary.columns if any(c.name in images[k].figures for k in keys)]
    right = [
        [
            *(fmt.figure(images[k].figures.get(c.name), c.units) for c in columns),
            images[k].evidence or "–",
        ]
        for k in keys
    ]
    head_left = ["image", "runs", "ok", "rate [95 % CI]", "reason"]
    head_right = [*(c.label for c in columns), "evidence"]
    title = f"{label}: census, outcome per image"
    if wide:
        body = [[*a, *b] for a, b in zip(left, right, strict=True)]
        return [_table(title, head_left + head_right, body)]
    more = [[a[0], *b] for a, b in zip(left, right, strict=True)]
    return [
        _table(title, head_left, left, wide=False),
        _table(
            f"{label}: census, evidence and figures of merit",
            ["image", *head_right],
            more,
            wide=False,
        ),
    ]


def _speed_tables(label: str, summary: Summary, keys: list[str], width: int) -> list:
    """The images that ran, fastest median time-to-solution first, each median with its
    interval and how much slower the next image runs (the shift of its times against this
    image's, where that is clear of zero); at width 1 the figures of merit go into a second
    table, at 0 the next image's shift too."""
    short = fmt.short_images(summary)
    images = summary.images or {}
    order = fmt.fastest_first(summary, keys)
    names = [short[r.name] for r in order]
    times = [[str(r.spread.n), fmt.covers(r.spread), fmt.figure_ci(r.spread, "s")] for r in order]
    nexts = [[fmt.next_verdict(r)] for r in order]
    columns = [c for c in summary.columns if any(c.name in images[r.name].speed for r in order)]
    figures = [[fmt.speed_cell(images[r.name], c) for c in columns] for r in order]
    head_times = ["ok", "covers", "time-to-solution [95 % CI]"]
    head_next = ["next slower by [95 % CI]"]
    head_figures = [f"{c.label} [95 % CI]" for c in columns]
    title = f"{label}: census, speed per image, fastest first"
    parts = [(head_times + head_next + head_figures, [times, nexts, figures], title)]
    if width < 2 and columns:
        parts = [
            (head_times + head_next, [times, nexts], title),
            (head_figures, [figures], f"{label}: census, figures of merit"),
        ]
    if width < 1:
        parts = [
            (head_times, [times], title),
            (head_next, [nexts], f"{label}: census, how much slower the next image is"),
            *parts[1:],
        ]

    def rows(cols: list[list[list[str]]]) -> list[list[str]]:  # each image's cells, joined
        return [
            [n, *(c for part in cells for c in part)]
            for n, *cells in zip(names, *cols, strict=True)
        ]

    return [_table(t, ["image", *head], rows(cols), wide=width == 2) for head, cols, t in parts]


def _compare_tables(summary: Summary, wide: bool) -> list:
    """The comparison; when not wide, the rates and the outdirs with their expected rates go
    into two tables."""
    rows = []
    for key, c in (summary.compare or {}).items():
        cells: list = [key, *fmt.compare_cells(c)]
        cells[6] = _styled(cells[6], "bold" if c.overlap is False else None)
        rows.append(cells)
    head = ["mode", "baseline", "other", "baseline rate", "other rate", "delta", "CIs overlap"]
    head += ["baseline expected", "other expected"]
    title = "comparison (baseline: the first outdir)"
    if wide:
        return [_table(title, head, rows, names=3)]
    rates = [[r[0], *r[3:7]] for r in rows]
    context = [[r[0], r[1], r[2], *r[7:]] for r in rows]
    return [
        _table(title, [head[0], *head[3:7]], rates, wide=False),
        _table("comparison: outdirs and expected rates", [*head[:3], *head[7:]], context, 3, False),
    ]


def _print_fitting(
    console, build: Callable[[Any], list], layouts: Sequence = (True, False)
) -> None:
    """The first layout whose tables fit the console (the widest first), else the last."""
    from rich.measure import Measurement

    unlimited = console.options.update(max_width=10**5)
    for layout in layouts:
        tables = build(layout)
        if all(Measurement.get(console, unlimited, t).maximum <= console.width for t in tables):
            break
    for t in tables:
        console.print(t)


def render(summary: Summary, console) -> None:
    """Per outdir: a table of modes (n, successes, rate with 95 % CI, a count per failure
    reason, median wall time of successes), and with a census the expected rates and the
    per-image table. Then the comparison, when there is one."""
    if not summary.modes and not summary.images and not summary.expected:
        console.print("[yellow]no records[/yellow]")
        return
    for out in summary.outdirs:
        label = out.label
        rows = summary.rows_of(label)
        images = [k for k, m in (summary.images or {}).items() if m.outdir == label]
        expected = [k for k, e in (summary.expected or {}).items() if e.outdir == label]
        if not rows and not images and not expected:
            console.print(f"{out.path}: no records", style="yellow", markup=False)
            continue
        if rows:
            present = fmt.seen(rows)
            failures = fmt.reason_columns([r for r in fmt.all_reasons(summary) if r in present])
            _print_fitting(console, partial(_mode_tables, out, rows, failures), (2, 1, 0))
            if any(m.against is not None for m in rows):
                _print_fitting(console, partial(_shift_tables, label, rows))
        if expected:
            _print_fitting(console, partial(_expected_tables, label, summary, expected))
        if images:
            _print_fitting(console, partial(_image_tables, label, summary, images))
            if fmt.fastest_first(summary, images):
                _print_fitting(console, partial(_speed_tables, label, summary, images), (2, 1, 0))
    if summary.compare:
        _print_fitting(console, partial(_compare_tables, summary))
