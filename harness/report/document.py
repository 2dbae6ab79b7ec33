"""What report.md says, as blocks (headings, paragraphs, tables, lists) that report.md and
report.html both render: the two show the same numbers because they are the same blocks.

Paragraphs and list items may hold `code` spans in backticks; table cells that are names or
log lines are Code cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import harness.report.formats as fmt
from harness.judge.reasons import counts_in_rate
from harness.report.model import Summary
from harness.report.ordering import reason_help


@dataclass(frozen=True)
class Code:
    """A cell shown as code: a mode, an image, a log line."""

    text: str


Cell = str | Code


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    head: list[str]
    align: str  # one letter per column: l(eft) or r(ight)
    rows: list[list[Cell]] = field(default_factory=list)
    empty: str | None = None  # the one row shown when there is no other


@dataclass
class Bullets:
    items: list[str]


Block = Heading | Paragraph | Table | Bullets


@dataclass
class Section:
    """A part of the report; report.html puts the section's figure after it."""

    name: str  # title, modes, expected, images, compare, help
    blocks: list[Block]


def document(summary: Summary) -> list[Section]:
    sections = [_title(summary), _modes(summary)]
    if any(m.against is not None for m in summary.modes.values()):
        sections.append(_shifts(summary))
    if summary.expected is not None:
        sections.append(_expected(summary))
    if summary.images is not None:
        sections.append(_images(summary))
        if fmt.fastest_first(summary, summary.images):
            sections.append(_speeds(summary))
    if summary.compare is not None:
        sections.append(_compare(summary))
    sections.append(_help(summary))
    return sections


def _title(summary: Summary) -> Section:
    outs = ", ".join(f"`{o.path}`" for o in summary.outdirs)
    total = sum(o.records for o in summary.outdirs)
    blocks: list[Block] = [
        Heading("Compatibility report", 1),
        Paragraph(f"Outdirs: {outs}. {total} records."),
    ]
    if summary.filters:
        kept = sum(o.records if o.kept is None else o.kept for o in summary.outdirs)
        shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in summary.filters.items())
        blocks.append(Paragraph(f"Filters: {shown} ({kept} records kept)."))
    return Section("title", blocks)


def _modes(summary: Summary) -> Section:
    reasons = fmt.reason_columns(fmt.all_reasons(summary, only_seen=True))
    head = ["mode", "n", "success", "rate", "95 % CI", *reasons]
    head += ["time-to-solution (success)", "95 % CI", "regret"]
    table = Table(head, "l" + "r" * (len(head) - 1), empty="(no sampled runs)")
    for key, m in summary.modes.items():
        lo, hi = m.ci95
        table.rows.append(
            [
                Code(key),
                str(m.n),
                str(m.success),
                fmt.pct(m.rate),
                f"{fmt.pct(lo)} – {fmt.pct(hi)}",
                *(str(m.reasons.get(r, 0)) for r in reasons),
                fmt.secs(m.median_wall_s),
                "–" if m.tts_ci95 is None else f"{m.tts_ci95[0]:.2f} – {m.tts_ci95[1]:.2f} s",
                fmt.regret(m.regret_s),
            ]
        )
    return Section("modes", [table])


def _shifts(summary: Summary) -> Section:
    table = Table(fmt.SHIFT_HEAD, "llrrrl")
    for key, m in summary.modes.items():
        if m.against is not None:
            against, *cells = fmt.shift_cells(m)
            table.rows.append([Code(key), Code(against), *cells])
    return Section("shifts", [Heading("Time-to-solution against a baseline mode"), table])


def _expected(summary: Summary) -> Section:
    head = ["mode", "candidates", "missing", "expected", "measured", "95 % interval", "flag"]
    table = Table(head, "lrrrrrr")
    notes: list[Block] = []
    for key, e in (summary.expected or {}).items():
        iv = e.interval95_counts
        m = e.measured
        table.rows.append(
            [
                Code(key),
                "no candidate set" if e.candidates is None else str(e.candidates),
                str(e.missing),
                fmt.pct(e.rate),
                fmt.measured(e),
                "–" if iv is None or m is None else f"{iv[0]}–{iv[1]} of {m.n}",
                fmt.flag(e),
            ]
        )
    for key, e in (summary.expected or {}).items():
        if e.missing:
            miss = ", ".join(f"`{i}`" for i in e.missing_images)
            notes.append(Paragraph(f"`{key}`: {e.missing} candidate(s) without census run: {miss}"))
        if e.error:
            notes.append(Paragraph(f"`{key}`: no candidate set on the census host: {e.error}"))
    return Section("expected", [Heading("Expected success rate from the census"), table, *notes])


def _images(summary: Summary) -> Section:
    short = fmt.short_images(summary)
    head = ["image", "runs", "n", "success", "rate", "reason", "evidence"]
    head += [f"{c.label} (median)" for c in summary.columns]
    align = "lrrrrll" + "r" * len(summary.columns)
    table = Table(head, align, empty="(no census runs)")
    for key, m in (summary.images or {}).items():
        table.rows.append(
            [
                Code(short[key]),
                str(m.runs),
                str(m.n),
                str(m.success),
                fmt.pct(m.rate),
                m.reason or "–",
                Code(m.evidence) if m.evidence else "–",
                *(fmt.figure(m.figures.get(c.name), c.units) for c in summary.columns),
            ]
        )
    return Section("images", [Heading("Census: outcome per image"), table])


def _speeds(summary: Summary) -> Section:
    short = fmt.short_images(summary)
    images = summary.images or {}
    head = ["image", "ok", "covers", "time-to-solution [95 % CI]", "next slower by [95 % CI]"]
    head += [f"{c.label} [95 % CI]" for c in summary.columns]
    table = Table(head, "lrrrl" + "r" * len(summary.columns))
    for r in fmt.fastest_first(summary, images):
        table.rows.append(
            [
                Code(short[r.name]),
                str(r.spread.n),
                fmt.covers(r.spread),
                fmt.figure_ci(r.spread, "s"),
                fmt.next_verdict(r),
                *(fmt.speed_cell(images[r.name], c) for c in summary.columns),
            ]
        )
    return Section("speeds", [Heading("Census: speed per image, fastest first"), table])


def _compare(summary: Summary) -> Section:
    head = ["mode", "baseline", "other", "baseline rate", "other rate", "delta", "overlap"]
    head += ["baseline expected", "other expected"]
    table = Table(head, "lllrrrlrr")
    for key, c in (summary.compare or {}).items():
        table.rows.append([Code(key), *fmt.compare_cells(c)])
    return Section("compare", [Heading("Comparison (baseline: the first outdir)"), table])


HOW_TO_READ = [
    "Each row of the first table is one selection mode (prefixed `outdir:` when the same mode "
    "comes from several outdirs). `n` counts the iterations that count toward the rate, one "
    "image chosen and run per iteration.",
    "`rate` is successes / n. `95 % CI` is the Wilson score interval: with few iterations it is "
    "wide, and two modes whose intervals overlap are not clearly different.",
    "The reason columns count why runs failed; each run has exactly one reason. Reasons that do "
    "not count toward a rate ({excluded}: the infrastructure failed, not the image) are left out "
    "of n and shown in their own columns, so success + the other reason columns = n. Columns no "
    "run fell into are left out.",
    "`time-to-solution (success)` is the median `timings.run_s` (seconds from launch to exit) "
    "of the successful runs only; failures are often fast and would hide the real cost. Its "
    "`95 % CI` is distribution-free (the order statistics that hold the median with at least "
    "95 %; with 5 runs or fewer, the whole range, which covers less). `regret` is that median "
    "minus the fastest image's median in the outdir's census: the time a mode loses against "
    "always picking the fastest image that runs here (– without a census).",
    "`against a baseline mode`: a mode that names one in its definition (`against` in "
    "harness/data/modes.yaml; descriptive-performance against descriptive-mpi, the random pick "
    "among the same images) gets the shift of its time-to-solution: the median of the "
    "differences between each of its successful runs and each of the baseline's (Hodges–"
    "Lehmann; negative: faster), with its distribution-free 95 % interval (Moses', from the "
    "Mann–Whitney U). `faster` when the interval is below zero, `slower` above, `not told "
    "apart` when it holds zero. Two modes' medians can have touching intervals while one is "
    "clearly faster: a random pick among three images runs the fastest a third of the time.",
    "A census (mode `census`, every image K times) is not a selection mode: it is shown per "
    "image, with the most frequent failure and its most frequent evidence line, and the medians "
    "over the successful runs of the application's headline figures of merit (the figures "
    "with a `column` in harness/data/applications/NAME.yaml).",
    "`speed per image` lists the census images that ran, fastest median time-to-solution "
    "first, each median (time-to-solution and every headline figure) with its distribution-free "
    "95 % interval; `covers` is what that interval really covers (below 95 % with 5 runs or "
    "fewer: the whole range); `next slower by` is the shift of the next image's times against "
    "this one's (the same statistic as against a baseline mode) where its interval is clear of "
    "zero, `not told apart` where these runs cannot tell the two apart.",
    "`expected` is a mode's success rate predicted from the census: the mean, over the mode's "
    "candidates on the census host, of each image's census success fraction; candidates without "
    "a counted census run are left out (`missing`). Beside a measured rate of that mode, `95 % "
    "interval` is the exact equal-tailed binomial interval of the success count for p = "
    "expected and the measured n (each tail at most 2.5 %); a measured count outside it is "
    "flagged `OUTSIDE`.",
    "`failures.png` / `.svg` stack the reasons per mode (success in green, at the bottom; the "
    "black marker is the expected number of successes with its 95 % interval); `walltimes.png` "
    "/ `.svg` show the run times of successful runs per mode; `images.png` / `.svg` the census "
    "outcome per image, ordered by OS version, then variant; `compare.png` / `.svg` the rates "
    "of each outdir side by side. `report.csv` and `report.json` hold the same numbers for "
    "further processing.",
]


def _help(summary: Summary) -> Section:
    excluded = ", ".join(fmt.excluded_reasons()) or "none"
    items = [t.format(excluded=excluded) if "{excluded}" in t else t for t in HOW_TO_READ]
    reasons = []
    for r in fmt.all_reasons(summary):
        help_ = reason_help(r)
        note = "" if counts_in_rate(r) else " (not counted in n)"
        reasons.append(f"`{r}`" + (f": {help_}" if help_ else "") + note)
    blocks: list[Block] = [Heading("How to read this"), Bullets(items), Paragraph("Reasons:")]
    return Section("help", [*blocks, Bullets(reasons)])
