"""The report's figures (matplotlib, Agg): per mode the success rate beside the time-to-solution
(verdict), outcomes per mode (failures), run times of successful
runs per mode (walltimes), the census per image (images) and the outdirs side by side
(compare). Each is drawn once and saved as PNG and SVG; report.html inlines the SVG."""

from __future__ import annotations

import io
import math

import numpy as np

import harness.report.formats as fmt
from harness.judge.reasons import REASONS, SUCCESS, counts_in_rate
from harness.report.compare import expected_rates
from harness.report.model import Summary
from harness.report.ordering import reason_colour

DPI = 120  # figures are drawn and saved at this resolution
MAX_DOTS = 300  # run times drawn as dots per mode; more would only hide each other


def _stacked(ax, keys: list[str], entries: dict, reasons: list[str], fontsize: float = 8):
    """Stacked bars of reason counts (success first, at the bottom), one PolyCollection per
    reason (a patch per segment is several times slower to draw), the success rate above each
    bar. Returns the bar tops."""
    from matplotlib.collections import PolyCollection

    extra = [r for r in reasons if r not in REASONS]
    x = np.arange(len(keys), dtype=float)
    bottom = np.zeros(len(keys))
    order = ([SUCCESS] if SUCCESS in reasons else []) + [r for r in reasons if r != SUCCESS]
    for r in order:
        vals = np.array([entries[k].reasons.get(r, 0) for k in keys], dtype=float)
        nz = vals > 0
        if not nz.any():
            continue
        x0, x1 = x[nz] - 0.4, x[nz] + 0.4
        y0, y1 = bottom[nz], bottom[nz] + vals[nz]
        verts = np.stack([np.c_[x0, y0], np.c_[x1, y0], np.c_[x1, y1], np.c_[x0, y1]], axis=1)
        ax.add_collection(
            PolyCollection(
                verts,
                facecolors=reason_colour(r, extra),
                edgecolors="white",
                linewidths=0.5,
                label=r if counts_in_rate(r) else f"{r} (not in n)",
            ),
            autolim=False,
        )
        bottom += vals
    ax.set_xlim(-0.6, max(len(keys), 1) - 0.4)
    for xi, k in zip(x, keys, strict=True):
        ax.annotate(
            fmt.pct(entries[k].rate),
            (xi, bottom[int(xi)]),
            ha="center",
            va="bottom",
            fontsize=fontsize,
            xytext=(0, 2),
            textcoords="offset points",
        )
    return bottom


def _integer_y(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _legend_or_note(ax, keys: list, note: str) -> None:
    if keys:
        ax.legend(title="reason", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes)


def _expected_marks(summary: Summary, keys: list[str]) -> tuple[list, list, list, list]:
    """x, expected successes (rate x n) and its 95 % range below and above, per mode that has
    an expected rate beside its measured one."""
    expected = {(e.outdir, e.mode): e for e in (summary.expected or {}).values()}
    ex, ey, elo, ehi = [], [], [], []
    for xi, k in enumerate(keys):
        m = summary.modes[k]
        e = expected.get((m.outdir, m.mode))
        if e is None or e.interval95_counts is None or e.rate is None:
            continue
        y = e.rate * m.n
        lo, hi = e.interval95_counts
        ex.append(xi)
        ey.append(y)
        elo.append(max(0.0, y - lo))
        ehi.append(max(0.0, hi - y))
    return ex, ey, elo, ehi


def _failures_figure(plt, summary: Summary, keys: list[str], width: float, rotate: int):
    fig, ax = plt.subplots(figsize=(width, 4.8), dpi=DPI)
    bottom = _stacked(ax, keys, summary.modes, fmt.all_reasons(summary))
    ex, ey, elo, ehi = _expected_marks(summary, keys)
    top = float(bottom.max(initial=0))
    if ex:
        ax.errorbar(
            ex,
            ey,
            yerr=[elo, ehi],
            fmt="D",
            color="black",
            markersize=5,
            capsize=4,
            zorder=4,
            label="expected successes\n(census, 95 % interval)",
        )
        top = max(top, max(y + h for y, h in zip(ey, ehi, strict=True)))
    ax.set_xticks(np.arange(len(keys)), keys, rotation=rotate, ha="right" if rotate else "center")
    ax.set_xlabel("selection mode")
    ax.set_ylabel("iterations")
    _integer_y(ax)
    ax.set_title("Outcome per selection mode (label: success rate)")
    ax.set_ylim(0, max(1.0, top) * 1.1)
    _legend_or_note(ax, keys, "no sampled runs")
    return fig


def _walltimes_figure(plt, summary: Summary, keys: list[str], width: float, rotate: int):
    fig, ax = plt.subplots(figsize=(width, 4.8), dpi=DPI)
    data = [np.asarray(summary.modes[k].run_times, dtype=float) for k in keys]
    rng = np.random.default_rng(0)
    for xi, vals in enumerate(data):
        if not len(vals):
            continue
        ax.boxplot(
            [vals], positions=[xi], widths=0.5, showfliers=False, medianprops={"color": "black"}
        )
        pts = vals if len(vals) <= MAX_DOTS else rng.choice(vals, MAX_DOTS, replace=False)
        ax.scatter(
            xi + rng.uniform(-0.18, 0.18, len(pts)),
            pts,
            s=6,
            alpha=0.4,
            color=reason_colour(SUCCESS),
            linewidths=0,
            zorder=3,
        )
        ax.annotate(
            f"n={len(vals)}",
            (xi, 0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=7,
        )
    ax.set_xticks(np.arange(len(keys)), keys, rotation=rotate, ha="right" if rotate else "center")
    ax.set_xlim(-0.6, max(len(keys), 1) - 0.4)
    ax.set_xlabel("selection mode")
    ax.set_ylabel("run time of successful runs (s)")
    ax.set_title(
        "Wall time of successful runs per selection mode\n"
        f"(box: quartiles, whiskers 1.5 IQR; dots: up to {MAX_DOTS} runs per mode)",
        fontsize=10,
    )
    if not any(len(d) for d in data):
        ax.text(0.5, 0.5, "no successful runs", ha="center", va="center", transform=ax.transAxes)
    return fig


def _verdict_figure(plt, summary: Summary, keys: list[str], width: float):
    """Per mode, side by side: how often it runs (rate, Wilson 95 %) and how fast what it
    picks runs (median time-to-solution of the successes, 95 % interval), modes top down in
    the user's order; the census's fastest image as a line; under a mode measured against a
    baseline mode, its shift."""
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(max(8.0, width), 0.45 * len(keys) + 1.8), dpi=DPI, sharey=True
    )
    y = np.arange(len(keys))[::-1]
    rows = [summary.modes[k] for k in keys]
    for yi, m in zip(y, rows, strict=True):
        if m.rate is None:
            continue
        lo, hi = m.ci95
        left.barh(yi, 100 * m.rate, color=reason_colour(SUCCESS), height=0.6)
        # Wilson's bounds can miss the rate by a rounding error at 0 % and 100 %
        rate_err = [[max(0.0, 100 * (m.rate - lo))], [max(0.0, 100 * (hi - m.rate))]]
        left.errorbar(100 * m.rate, yi, xerr=rate_err, color="black", capsize=3, linewidth=1)
        if m.median_wall_s is not None and m.tts_ci95 is not None:
            low, high = m.tts_ci95
            err = [[m.median_wall_s - low], [high - m.median_wall_s]]
            right.errorbar(m.median_wall_s, yi, xerr=err, fmt="o", color="black", capsize=3)
        if m.shift is not None and m.tts_ci95 is not None:  # the two-sample answer beside it
            # on white, so that the census's line does not cross the text
            right.annotate(
                f"{m.shift.verdict} than {m.against}:\n{fmt.shift_cells(m)[2]}",
                xy=(m.tts_ci95[1], yi), xytext=(8, 0), textcoords="offset points",
                va="center", fontsize=7, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
            )  # fmt: skip
    fastest = [m.median_wall_s - m.regret_s for m in rows if m.regret_s is not None]
    if fastest:
        right.axvline(
            fastest[0], color=reason_colour(SUCCESS), linestyle="--", linewidth=1,
            label="fastest image (census)",
        )  # fmt: skip
        right.legend(loc="best", fontsize=7, frameon=False)
    left.set_yticks(y, keys)
    left.set_xlim(0, 105)
    left.set_xlabel("success rate (%), 95 % interval")
    right.set_xlabel("time-to-solution of successes (s), median and 95 % interval")
    left.set_title("How often it runs", fontsize=10)
    right.set_title("How fast what it picks runs", fontsize=10)
    if not keys:
        left.text(0.5, 0.5, "no sampled runs", ha="center", va="center", transform=left.transAxes)
    return fig


def _images_figure(plt, summary: Summary):
    images = summary.images or {}
    keys = list(images)
    short = fmt.short_images(summary)
    labels = [short[k] for k in keys]
    # a bar per image; past ~40 images the bars get thinner rather than the figure wider
    width = min(16.0, max(6.0, 0.35 * len(keys) + 3.5))
    small = len(keys) > 24
    fig, ax = plt.subplots(figsize=(width, 5.2), dpi=DPI)
    bottom = _stacked(ax, keys, images, fmt.all_reasons(summary), fontsize=6 if small else 8)
    rotate = 35 if len(keys) > 3 or any(len(s) > 14 for s in labels) else 0
    ax.set_xticks(
        np.arange(len(keys)),
        labels,
        rotation=rotate,
        ha="right" if rotate else "center",
        fontsize=6 if small else 8,
    )
    ax.set_xlim(-0.6, max(len(keys), 1) - 0.4)
    ax.set_xlabel("image (ordered by OS version, then variant)")
    ax.set_ylabel("census runs")
    _integer_y(ax)
    ax.set_ylim(0, max(1.0, float(bottom.max(initial=0))) * 1.12)
    ax.set_title("Census: outcome per image (label: success rate)")
    _legend_or_note(ax, keys, "no census runs")
    return fig


def _rates_of(summary: Summary, label: str, names: list[str]):
    """Rates (%) of an outdir's modes and their Wilson intervals below and above; NaN where
    the outdir has no counted run of the mode."""
    by = {(m.outdir, m.mode): m for m in summary.modes.values()}
    rates, lo, hi = [], [], []
    for mode in names:
        m = by.get((label, mode))
        r = m.rate if m and m.rate is not None else math.nan
        rates.append(100 * r)
        a, b = m.ci95 if m and m.rate is not None else (r, r)
        lo.append(0.0 if math.isnan(r) else max(0.0, 100 * (r - a)))
        hi.append(0.0 if math.isnan(r) else max(0.0, 100 * (b - r)))
    return rates, lo, hi


def _compare_figure(plt, summary: Summary):
    labels = [o.label for o in summary.outdirs]
    expected = expected_rates(summary)
    modes = {(m.outdir, m.mode) for m in summary.modes.values()}
    names = summary.order.sort({mode for _, mode in [*modes, *expected]})
    x = np.arange(len(names))
    step = 0.8 / max(1, len(labels))
    width = max(7.0, 0.45 * len(names) * len(labels) + 3.0)
    fig, ax = plt.subplots(figsize=(width, 4.8), dpi=DPI)
    for j, label in enumerate(labels):
        pos = x - 0.4 + step * (j + 0.5)
        rates, lo, hi = _rates_of(summary, label, names)
        for p_, r in zip(pos, rates, strict=True):
            if math.isnan(r):  # this outdir has no counted run of the mode
                ax.annotate(
                    "no runs",
                    (p_, 0),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    rotation=90,
                    fontsize=7,
                    color="grey",
                )
        colour = f"C{j % 10}"
        ax.bar(
            pos,
            rates,
            width=step * 0.95,
            yerr=[lo, hi],
            capsize=3,
            color=colour,
            label=label,
            error_kw={"elinewidth": 1},
        )
        marks = [
            (p_, 100 * expected[(label, mode)])
            for p_, mode in zip(pos, names, strict=True)
            if (label, mode) in expected
        ]
        if marks:
            ax.scatter(
                [m[0] for m in marks],
                [m[1] for m in marks],
                marker="D",
                facecolors="none",
                edgecolors=colour,
                zorder=4,
                label=f"{label}: expected (census)",
            )
    rotate = 30 if len(names) > 4 else 0
    ax.set_xticks(x, names, rotation=rotate, ha="right" if rotate else "center")
    ax.set_xlabel("selection mode")
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 105)
    ax.set_title(
        "Success rate per mode and outdir\n(bars: sampled runs, Wilson 95 % interval; "
        "diamonds: expected from a census)"
    )
    ax.legend(title="outdir", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def draw(summary: Summary):
    """(pyplot, {name: figure}): verdict, failures and walltimes always, images with a census,
    compare with a comparison. Close the figures with pyplot.close when done."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(summary.modes)
    width = max(6.0, 1.1 * len(keys) + 2.5)
    rotate = 30 if len(keys) > 4 or any(len(k) > 14 for k in keys) else 0
    figs = {
        "verdict": _verdict_figure(plt, summary, keys, width),
        "failures": _failures_figure(plt, summary, keys, width, rotate),
        "walltimes": _walltimes_figure(plt, summary, keys, width, rotate),
    }
    if summary.images is not None:
        figs["images"] = _images_figure(plt, summary)
    if summary.compare is not None:
        figs["compare"] = _compare_figure(plt, summary)
    for fig in figs.values():
        fig.tight_layout()  # once here, not on every savefig as layout="constrained" would
    return plt, figs


def save(fig, fmt_: str) -> bytes:
    """PNG at the figure's own dpi (the text laid out for tight_layout is reused); SVG with
    text as text, not glyph outlines (smaller, searchable, faster), and no date (stable)."""
    import matplotlib

    buf = io.BytesIO()
    if fmt_ == "svg":
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            fig.savefig(buf, format="svg", dpi=DPI, metadata={"Date": None})
    else:
        fig.savefig(buf, format=fmt_, dpi=DPI)
    return buf.getvalue()


def rendered(summary: Summary) -> dict[str, dict[str, bytes]]:
    """Every figure as {name: {"png": bytes, "svg": bytes}}."""
    plt, figs = draw(summary)
    try:
        return {name: {f: save(fig, f) for f in ("png", "svg")} for name, fig in figs.items()}
    finally:
        for fig in figs.values():
            plt.close(fig)
