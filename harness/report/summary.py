"""Aggregates -> the summary: a row per mode and per census image, each mode's expected rate.

Census. Mode `census` runs every image of a manifest K times; it is not a selection mode, so it
is shown per image, not as a mode. From it and census.json's candidate set of each mode, the
*expected* rate of a mode is the mean, over its candidates, of each image's census success
fraction (candidates with no counted census run are left out and counted as `missing`). Beside
a measured rate of that mode in the same outdir the report gives the exact equal-tailed binomial
95 % interval of the success count for p = expected and the measured n, [lo, hi] with lo the
smallest k with P(X <= k) >= 2.5 % and hi the largest k with P(X >= k) >= 2.5 %, and flags a
measured count outside it (`outside`). A `modes` filter limits the expected rates to the modes
named; an `images` filter also limits each mode's candidate set to those images.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness import application
from harness.judge.reasons import SUCCESS
from harness.report.aggregate import Aggregates, Filters, OutdirData
from harness.report.model import (
    Expected,
    FigureColumn,
    ImageRow,
    IterationList,
    Measured,
    ModeRow,
    OutdirInfo,
    Summary,
)
from harness.report.ordering import ModeOrder, image_matches, image_sort_key
from harness.report.stats import binomial_interval, counts, median
from harness.select import modes as mode_data
from harness.select.performance import TIME_TO_SOLUTION, spread
from harness.select.shift import Shift, shift


def mode_order(aggregates: Aggregates, mode_file: str | Path | None = None) -> ModeOrder:
    """The --mode filters, else the modes files' order; then census.json's modes, then the
    modes in the order their first record appears."""
    outs = aggregates.outdirs
    later = [m for o in outs if o.census for m in o.census["modes"]]
    later += [m for o in outs for m in o.seen_modes]
    return ModeOrder.build(aggregates.filters.modes, mode_file, later)


def summarize(aggregates: Aggregates, mode_file: str | Path | None = None) -> Summary:
    """Per (outdir, mode) counts, success rate with Wilson 95 % interval, reasons, median run
    time; with a census also per image and each mode's expected rate.

    Modes are keyed by mode name, or "outdir:mode" when the same mode occurs in several
    outdirs; images and expected rates likewise ("outdir:image", "outdir:mode").
    """
    outs = aggregates.outdirs
    filters = aggregates.filters
    order = mode_order(aggregates, mode_file)
    summary = Summary(
        modes=_modes(outs, order, mode_data.load(mode_file)),
        outdirs=[
            OutdirInfo(o.label, str(o.path), o.records, o.kept if filters else None) for o in outs
        ],
        order=order,
        filters=filters.as_dict(),
        iterations={o.label: IterationList(o.iterations, o.kept - len(o.iterations)) for o in outs},
    )
    if any(o.images or o.census for o in outs):
        summary.images = _images(outs)
        summary.columns = _columns(summary.images.values())
        summary.census = {
            o.label: {k: o.census.get(k) for k in ("manifests", "repeat", "seed", "images")}
            for o in outs
            if o.census
        }
        summary.expected = _expected(summary, outs, filters)
    return summary


def _shared_key(label: str, name: str, shared: Counter) -> str:
    return f"{label}:{name}" if shared[name] > 1 else name


def _modes(
    outs: list[OutdirData], order: ModeOrder, known: dict[str, mode_data.Mode]
) -> dict[str, ModeRow]:
    shared = Counter(mode for o in outs for mode in o.modes)
    rows: dict[str, ModeRow] = {}
    for o in outs:
        fastest = _fastest(o)
        for mode in order.sort(o.modes):
            g = o.modes[mode]
            run_times = g.values["run_s"]
            tts = spread(run_times) if len(run_times) else None
            against = known[mode].against if mode in known else None
            rows[_shared_key(o.label, mode, shared)] = ModeRow(
                outdir=o.label,
                mode=mode,
                **counts(g.reasons),
                median_wall_s=None if tts is None else tts.median,
                tts_ci95=None if tts is None else (tts.low, tts.high),
                tts_coverage=None if tts is None else round(tts.coverage, 4),
                regret_s=None if tts is None or fastest is None else tts.median - fastest,
                run_times=run_times,
                evidence={r: lines.top() for r, lines in g.evidence.items()},
                against=against,
                shift=_shift(o, mode, against),
            )
    return rows


def _shift(out: OutdirData, mode: str, against: str | None) -> Shift | None:
    """The mode's time-to-solution against its baseline mode's in the same outdir, where both
    have successful runs."""
    if against is None or against not in out.modes:
        return None
    mine, theirs = out.modes[mode].values["run_s"], out.modes[against].values["run_s"]
    return shift(theirs, mine) if len(mine) and len(theirs) else None


def _fastest(out: OutdirData) -> float | None:
    """The lowest median time-to-solution of an image in the outdir's census: what a mode that
    always picked the fastest image that runs here would take."""
    medians = [median(g.values["run_s"]) for g in out.images.values() if len(g.values["run_s"])]
    return min(medians) if medians else None


def _worst(reasons: dict[str, int]) -> str | None:
    """The most frequent failure; of equally frequent ones, the first in the reasons' order."""
    failures = [(k, -i, r) for i, (r, k) in enumerate(reasons.items()) if r != SUCCESS]
    return max(failures)[2] if failures else None


def _images(outs: list[OutdirData]) -> dict[str, ImageRow]:
    shared = Counter(image for o in outs for image in o.images)
    rows: dict[str, ImageRow] = {}
    for o in outs:
        for image in sorted(o.images, key=image_sort_key):
            g = o.images[image]
            c = counts(g.reasons)
            worst = _worst(c["reasons"])
            speed = {
                TIME_TO_SOLUTION if k == "run_s" else k: spread(v)
                for k, v in g.values.items()
                if len(v)
            }
            rows[_shared_key(o.label, image, shared)] = ImageRow(
                outdir=o.label,
                image=image,
                **c,
                reason=worst,
                evidence=g.evidence[worst].top() if worst else None,
                application=g.app,
                # the medians the spreads hold; None where no success gave the figure
                figures={
                    k: speed[k].median if k in speed else None for k in g.values if k != "run_s"
                },
                speed=speed,
                run_times=g.values["run_s"],
            )
    return rows


def _columns(rows) -> tuple[FigureColumn, ...]:
    """The headline figures of the images' applications, each once, in their files' order."""
    columns: dict[str, FigureColumn] = {}
    for name in dict.fromkeys(r.application for r in rows):
        app = application.known(name)
        for f in app.columns() if app is not None else ():
            columns.setdefault(f.name, FigureColumn(f.name, f.column or f.name, f.units))
    return tuple(columns.values())


def _expected(summary: Summary, outs: list[OutdirData], filters: Filters) -> dict[str, Expected]:
    """Each census mode's expected success rate: the mean census success fraction of its
    candidates, beside the mode's measured rate in the same outdir when there is one."""
    fraction = {
        (m.outdir, m.image): m.success / m.n for m in (summary.images or {}).values() if m.n > 0
    }
    measured = {(m.outdir, m.mode): (key, m) for key, m in summary.modes.items()}
    several = sum(1 for o in outs if o.census) > 1
    out: dict[str, Expected] = {}
    for o in outs:
        if not o.census:
            continue
        body = o.census["modes"]
        for mode in summary.order.sort(body):
            if filters.modes is not None and mode not in filters.modes:
                continue
            entry = body[mode] if isinstance(body[mode], dict) else {}
            cands = entry.get("candidates")
            if cands is not None and filters.images is not None:
                cands = [c for c in cands if image_matches(c, filters.images)]
            e = _expected_rate(o.label, mode, cands, fraction)
            e.error = str(entry["error"]) if entry.get("error") else None
            hit = measured.get((o.label, mode))
            if hit is not None:
                _measure(e, *hit)
            out[f"{o.label}:{mode}" if several else mode] = e
    return out


def _expected_rate(
    label: str, mode: str, cands: list[str] | None, fraction: dict[tuple[str, str], float]
) -> Expected:
    if cands is None:
        return Expected(label, mode, None, None, 0, [])
    known = [fraction[(label, c)] for c in cands if (label, c) in fraction]
    missing = [c for c in cands if (label, c) not in fraction]
    rate = sum(known) / len(known) if known else None
    return Expected(label, mode, rate, len(cands), len(missing), missing)


def _measure(e: Expected, key: str, m: ModeRow) -> None:
    """The measured rate beside the expected one, and whether its count is in the range."""
    e.measured = Measured(key, m.n, m.success, m.rate)
    if e.rate is not None and m.n > 0:
        lo, hi = binomial_interval(m.n, e.rate)
        e.interval95_counts = [lo, hi]
        e.interval95 = [lo / m.n, hi / m.n]
        e.outside = not lo <= m.success <= hi
