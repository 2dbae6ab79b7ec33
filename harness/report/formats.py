"""How numbers and names read in every table (markdown, HTML, console, CSV columns)."""

from __future__ import annotations

from collections.abc import Iterable

from harness.judge.reasons import REASONS, SUCCESS, counts_in_rate
from harness.report.model import Comparison, Expected, FigureColumn, ImageRow, ModeRow, Summary
from harness.report.ordering import image_tag, reason_order
from harness.select import performance
from harness.select.performance import TIME_TO_SOLUTION, Ranked, Spread


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def secs(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f} s"


def num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def figure(x: float | None, units: str) -> str:
    """A figure of merit's median: as seconds when it is a time, else a plain number."""
    return secs(x) if units == "s" else num(x)


def figure_ci(s: Spread, units: str) -> str:
    """A median with its interval in one cell: `1.11 s [1.05–1.20]`, `135.6 [130.1–140.2]`."""
    if units == "s":
        return tts_ci(s.median, (s.low, s.high))
    return f"{num(s.median)} [{num(s.low)}–{num(s.high)}]"


def fastest_first(summary: Summary, keys: Iterable[str]) -> list[Ranked]:
    """The census images (row keys) that ran, by median time-to-solution (each image against
    the next is a two-sample statistic: made once per set of images, kept in the summary)."""
    images = summary.images or {}
    wanted = tuple(keys)
    if wanted not in summary.rankings:
        ran = [k for k in wanted if TIME_TO_SOLUTION in images[k].speed]
        summary.rankings[wanted] = performance.fastest_first(
            {k: images[k].speed[TIME_TO_SOLUTION] for k in ran},
            {k: images[k].run_times for k in ran},
        )
    return summary.rankings[wanted]


def speed_cell(row: ImageRow, column: FigureColumn) -> str:
    """An image's median of a headline figure with its interval; – when no success gave it."""
    s = row.speed.get(column.name)
    return "–" if s is None else figure_ci(s, column.units)


def next_verdict(r: Ranked) -> str:
    """How much slower the next image runs (the shift of its times against this image's, with
    its interval: `0.20 s [0.15–0.26]`) where the interval is clear of zero, else `not told
    apart`; what the interval covers where below 95 % (too few runs)."""
    s = r.to_next
    if s is None:
        return "–"
    if not r.clear_of_next:
        return "not told apart"
    covers = "" if s.coverage >= 0.95 else f" ({100 * s.coverage:.0f} %)"
    return f"{s.estimate:.2f} s [{s.low:.2f}–{s.high:.2f}]{covers}"


def covers(s: Spread) -> str:
    """What a median's interval really covers; – for a single run, which has none."""
    return "–" if s.n < 2 else f"{100 * s.coverage:.0f} %"


def tts_ci(median: float | None, ci: tuple[float, float] | None) -> str:
    """`3.40 s [3.31–3.52]`: a median time with its interval, in one cell."""
    if median is None or ci is None:
        return "–"
    return f"{median:.2f} s [{ci[0]:.2f}–{ci[1]:.2f}]"


def shift_cells(m: ModeRow) -> list[str]:
    """A mode against its baseline: the baseline, the runs on each side, the shift with its
    interval (`-0.143 s [-0.203, -0.001]`: three decimals, so a bound near zero keeps its sign),
    what the interval covers, and the verdict."""
    s = m.shift
    if s is None:
        return [m.against or "–", "–", "–", "–", "–"]
    return [
        m.against or "–",
        f"{s.n} vs {s.n_baseline}",
        f"{s.estimate:+.3f} s [{s.low:+.3f}, {s.high:+.3f}]",
        f"{100 * s.coverage:.0f} %",
        s.verdict,
    ]


SHIFT_HEAD = ["mode", "against", "successes", "shift [95 % CI]", "covers", "verdict"]


def regret(seconds: float | None) -> str:
    """Seconds over the fastest image of the census (`+0.12 s`); – without a census."""
    return "–" if seconds is None else f"{seconds:+.2f} s"


def rate_ci(rate: float | None, ci95: list[float]) -> str:
    """`75.0 % [30.1–95.4]`: the rate with its Wilson interval, in one cell."""
    lo, hi = ci95
    shown = "–" if rate is None else f"{100 * rate:.1f} %"
    return f"{shown} [{100 * lo:.1f}–{100 * hi:.1f}]"


def flag(e: Expected) -> str:
    if e.outside is None:
        return "–"
    return "OUTSIDE" if e.outside else "inside"


def measured(e: Expected) -> str:
    m = e.measured
    return "–" if m is None else f"{m.success}/{m.n} = {pct(m.rate)}"


def seen(rows: Iterable) -> set[str]:
    """The reasons the rows (modes or images) counted."""
    return {r for m in rows for r in m.reasons}


def all_reasons(summary: Summary, only_seen: bool = False) -> list[str]:
    """Reasons in display order: all of REASONS (plus extras seen), or only those that occur."""
    present = seen(summary.modes.values()) | seen((summary.images or {}).values())
    return [r for r in reason_order(present) if r in present or not only_seen]


def reason_columns(reasons: list[str]) -> list[str]:
    """Reason columns: the failures that count, then the reasons left out of n (infra)."""
    fails = [r for r in reasons if r != SUCCESS and counts_in_rate(r)]
    return fails + [r for r in reasons if not counts_in_rate(r)]


def excluded_reasons() -> list[str]:
    """The reasons left out of n (e.g. infra)."""
    return [r for r in REASONS if not counts_in_rate(r)]


def short_images(summary: Summary) -> dict[str, str]:
    """Image key -> display name: the tag when tags are unique, else the key."""
    images = summary.images or {}
    prefix = len({m.outdir for m in images.values()}) > 1
    short = {
        k: f"{m.outdir}:{image_tag(m.image)}" if prefix else image_tag(m.image)
        for k, m in images.items()
    }
    return short if len(set(short.values())) == len(short) else {k: k for k in images}


def compare_cells(c: Comparison) -> list[str]:
    """baseline, other, their rates (n), delta, overlap, their expected rates."""
    delta = "–" if c.delta is None else f"{100 * c.delta:+.1f} pp"
    overlap = "–" if c.overlap is None else ("yes" if c.overlap else "NO")
    return [
        c.baseline_outdir,
        c.other_outdir,
        pct(c.baseline) + f" (n={c.baseline_n})",
        pct(c.other) + f" (n={c.other_n})",
        delta,
        overlap,
        pct(c.baseline_expected),
        pct(c.other_expected),
    ]
