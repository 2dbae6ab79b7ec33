"""Summarise one or more outdirs: success rates with 95 % intervals, failure reasons, wall times.

`harness report OUTDIR... [--json] [--out DIR]` calls main(). The pipeline is

    load(outdirs) -> DataFrame (one row per record)
    summarize(df) -> dict (schema compat-harness/report/1, also written as report.json)
    write(df, summary, dest) -> report.csv, report.md, report.json, failures.*, walltimes.*
    render(summary, console) -> one rich table per outdir

Only the fields the report needs are kept from each record, so 100,000 records (~170 MB of
JSON lines) stay well under 500 MB; benchmarks/bench_report.py measures the whole pipeline
against its 3 s / 500 MB targets.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from harness.classify import REASONS
from harness.errors import HarnessError
from harness.records import iter_raw, records_path

SCHEMA = "compat-harness/report/1"
MODE_ORDER = (
    "random",
    "basic",
    "platform",
    "platform-version",
    "descriptive-basic",
    "descriptive-mpi",
)
COLUMNS = (
    "outdir",
    "mode",
    "iteration",
    "image",
    "reason",
    "exit_code",
    "run_s",
    "wrapper_s",
    "pull_s",
    "total_wall_time_s",
    "loop_time_s",
)
Z95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal

# What each reason means, for report.md; reasons without an entry are listed without one.
REASON_HELP = {
    "success": "LAMMPS ran to completion and printed its timing figures",
    "arch": "the image was built for another CPU architecture (exec format error)",
    "os-abi": "the container's userland and the host kernel or libraries do not fit (GLIBC, ...)",
    "gpu": "the build needs a GPU, driver or CUDA runtime the host does not provide",
    "mpi": "the MPI inside the image cannot work with the host's launcher or MPI",
    "mpi-singleton": "the job ran, but as independent 1-rank copies instead of one N-rank job",
    "missing-binary": "the image has no usable LAMMPS executable",
    "pull": "the image could not be pulled or converted",
    "timeout": "the run exceeded its time limit and was killed",
    "unknown": "the run failed and no rule recognised why",
}

# Bar colours: success green, failure reasons in distinct non-green colours.
REASON_COLOURS = {
    "success": "#2ca02c",
    "arch": "#d62728",
    "os-abi": "#ff7f0e",
    "gpu": "#9467bd",
    "mpi": "#1f77b4",
    "mpi-singleton": "#17becf",
    "missing-binary": "#8c564b",
    "pull": "#e377c2",
    "timeout": "#bcbd22",
    "unknown": "#7f7f7f",
}
EXTRA_COLOURS = ("#393b79", "#843c39", "#7b4173", "#637939", "#3182bd", "#e6550d")


# --------------------------------------------------------------------------- loading


def _labels(outdirs: list[Path]) -> list[str]:
    """The outdir's name as its label; the full path where two outdirs share a name."""
    names = [p.name or str(p) for p in outdirs]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(outdirs, names, strict=True)]


def load(outdirs: list[Path]) -> pd.DataFrame:
    """One row per complete record of every outdir; a torn last line is ignored.

    Raises HarnessError naming the path when an outdir, or its records.jsonl, is missing or
    unreadable, or when a line is valid JSON but not a record.
    """
    outdirs = list(dict.fromkeys(Path(p) for p in outdirs))  # the same outdir twice: once
    if not outdirs:
        raise HarnessError("report: no outdir given")
    rows: list[tuple] = []
    add = rows.append
    labels = _labels(outdirs)
    sizes: list[int] = []
    for outdir in outdirs:
        if not outdir.is_dir():
            raise HarnessError(f"report: outdir {outdir} does not exist or is not a directory")
        path = records_path(outdir)
        if not path.is_file():
            raise HarnessError(f"report: {path} does not exist (not a harness outdir?)")
        before = len(rows)
        try:
            for rec in iter_raw(outdir):
                t = rec.get("timings") or {}
                f = rec.get("figures") or {}
                add(
                    (
                        rec["mode"],
                        rec.get("iteration"),
                        rec.get("image"),
                        rec.get("reason"),
                        rec.get("exit_code"),
                        t.get("run_s"),
                        t.get("wrapper_s"),
                        t.get("pull_s"),
                        f.get("total_wall_time_s"),
                        f.get("loop_time_s"),
                    )
                )
        except OSError as exc:
            raise HarnessError(f"report: cannot read {path}: {exc.strerror or exc}") from exc
        except (ValueError, AttributeError, TypeError, KeyError) as exc:
            raise HarnessError(
                f"report: {path}: record {len(rows) - before + 1} is not a harness record ({exc!r})"
            ) from exc
        sizes.append(len(rows) - before)
    # pandas transposes the tuples in C (several times faster than zip(*rows)) and infers
    # dtypes; the coercions below only do work for odd values (strings in figures, null ids).
    df = pd.DataFrame(rows, columns=list(COLUMNS[1:]))
    del rows
    for col in ("run_s", "wrapper_s", "pull_s", "total_wall_time_s", "loop_time_s"):
        if df[col].dtype != np.float64:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(np.float64)
    for col in ("iteration", "exit_code"):
        values = pd.to_numeric(df[col], errors="coerce")
        try:
            df[col] = values.astype("Int64")
        except (TypeError, ValueError):
            df[col] = values.astype(np.float64)
    if isinstance(df["mode"].dtype, pd.StringDtype):
        bad = df["mode"].isna()
    else:
        bad = ~df["mode"].map(lambda v: isinstance(v, str)).astype(bool)
    if bad.any():
        where = np.searchsorted(np.cumsum(sizes), int(np.argmax(bad.to_numpy())), side="right")
        raise HarnessError(f"report: {records_path(outdirs[where])}: a record has no mode")
    if isinstance(df["reason"].dtype, pd.StringDtype):
        df["reason"] = df["reason"].fillna("unknown")
    else:
        df["reason"] = df["reason"].where(df["reason"].map(lambda v: isinstance(v, str)), "unknown")
    for col in ("mode", "reason"):
        df[col] = df[col].astype("category")
    df.insert(
        0,
        "outdir",
        pd.Categorical(np.repeat(np.array(labels, dtype=object), sizes), categories=labels),
    )
    df.attrs["outdirs"] = [
        {"label": label, "path": str(p), "records": k}
        for p, label, k in zip(outdirs, labels, sizes, strict=True)
    ]
    return df


# --------------------------------------------------------------------------- summary


def mode_sort_key(mode: str) -> tuple[int, str]:
    """Display order: the six selection modes in ladder order, then others alphabetically."""
    try:
        return (MODE_ORDER.index(mode), "")
    except ValueError:
        return (len(MODE_ORDER), mode)


def reason_order(reasons: Iterable[str]) -> list[str]:
    """REASONS in their fixed order, then any reasons unknown to classify alphabetically."""
    present = set(reasons)
    return list(REASONS) + sorted(present - set(REASONS))


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(df: pd.DataFrame) -> dict:
    """Per (outdir, mode) counts, success rate with Wilson 95 % interval, reasons, median wall.

    Modes are keyed by mode name, or "outdir:mode" when the same mode occurs in several outdirs.
    """
    outdirs = df.attrs.get("outdirs") or [
        {"label": str(o), "path": str(o), "records": int(k)}
        for o, k in df["outdir"].astype(str).value_counts(sort=False).items()
    ]
    labels = [o["label"] for o in outdirs]
    if df.empty:
        return {"schema": SCHEMA, "modes": {}, "outdirs": outdirs}

    outdir_s = df["outdir"].astype(str)
    mode_s = df["mode"].astype(str)
    reason_s = df["reason"].astype(str)
    counts = pd.crosstab([outdir_s, mode_s], reason_s)
    success = reason_s == "success"
    medians = df.loc[success, "run_s"].groupby([outdir_s[success], mode_s[success]]).median()
    modes_per_outdir: dict[str, list[str]] = {}
    for label, mode in counts.index:
        modes_per_outdir.setdefault(label, []).append(mode)
    shared = Counter(mode for _, mode in counts.index)
    reasons = reason_order(counts.columns)

    modes: dict[str, dict] = {}
    for label in labels:
        for mode in sorted(modes_per_outdir.get(label, ()), key=mode_sort_key):
            row = counts.loc[(label, mode)]
            n = int(row.sum())
            ok = int(row.get("success", 0))
            lo, hi = wilson(ok, n)
            med = medians.get((label, mode), math.nan)
            key = f"{label}:{mode}" if shared[mode] > 1 else mode
            modes[key] = {
                "outdir": label,
                "mode": mode,
                "n": n,
                "success": ok,
                "rate": ok / n if n else None,
                "ci95": [lo, hi],
                "reasons": {r: int(row[r]) for r in reasons if r in row.index and row[r] > 0},
                "median_wall_s": None if med is None or math.isnan(med) else float(med),
            }
    return {"schema": SCHEMA, "modes": modes, "outdirs": outdirs}


# --------------------------------------------------------------------------- files


def _atomic(dest: Path, name: str, fill: Callable[[IO[bytes]], None]) -> Path:
    """Write dest/name via a temp file in the same directory and os.replace, or not at all."""
    target = dest / name
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=dest)
    try:
        with os.fdopen(fd, "wb") as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def _text(text: str) -> Callable[[IO[bytes]], None]:
    return lambda fh: fh.write(text.encode())


def _all_reasons(summary: dict, only_seen: bool = False) -> list[str]:
    """Reasons in display order: all of REASONS (plus extras seen), or only those that occur."""
    seen = {r for m in summary["modes"].values() for r in m["reasons"]}
    return [r for r in reason_order(seen) if r in seen or not only_seen]


def _csv(summary: dict) -> str:
    reasons = [r for r in _all_reasons(summary) if r != "success"]  # success has its column
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "key",
            "outdir",
            "mode",
            "n",
            "success",
            "rate",
            "ci95_lo",
            "ci95_hi",
            *reasons,
            "median_wall_s",
        ]
    )
    for key, m in summary["modes"].items():
        w.writerow(
            [
                key,
                m["outdir"],
                m["mode"],
                m["n"],
                m["success"],
                "" if m["rate"] is None else f"{m['rate']:.6f}",
                f"{m['ci95'][0]:.6f}",
                f"{m['ci95'][1]:.6f}",
                *(m["reasons"].get(r, 0) for r in reasons),
                "" if m["median_wall_s"] is None else f"{m['median_wall_s']:.3f}",
            ]
        )
    return buf.getvalue()


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _secs(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f} s"


def _markdown(summary: dict) -> str:
    modes = summary["modes"]
    failures = [r for r in _all_reasons(summary, only_seen=True) if r != "success"]
    lines = ["# Compatibility report", ""]
    outs = ", ".join(f"`{o['path']}`" for o in summary["outdirs"])
    lines += [f"Outdirs: {outs}. {sum(m['n'] for m in modes.values())} records.", ""]
    head = ["mode", "n", "success", "rate", "95 % CI", *failures, "median wall (success)"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
    for key, m in modes.items():
        lo, hi = m["ci95"]
        cells = [
            f"`{key}`",
            str(m["n"]),
            str(m["success"]),
            _pct(m["rate"]),
            f"{_pct(lo)} – {_pct(hi)}",
            *(str(m["reasons"].get(r, 0)) for r in failures),
            _secs(m["median_wall_s"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if not modes:
        lines.append("| (no records) |" + " |" * (len(head) - 1))
    lines += [
        "",
        "## How to read this",
        "",
        "- Each row is one selection mode (prefixed `outdir:` when the same mode comes from "
        "several outdirs). `n` counts iterations, one image chosen and run per iteration.",
        "- `rate` is successes / n. `95 % CI` is the Wilson score interval: with few "
        "iterations it is wide, and two modes whose intervals overlap are not clearly "
        "different.",
        "- The reason columns count why runs failed; each run has exactly one reason, so "
        "success + the reason columns = n. Columns no run fell into are left out.",
        "- `median wall (success)` is the median `timings.run_s` (seconds of the run step) "
        "of the successful runs only; failures are often fast and would hide the real cost.",
        "- `failures.png` / `.svg` stack the reasons per mode (success in green); "
        "`walltimes.png` / `.svg` show the run times of successful runs per mode. "
        "`report.csv` and `report.json` hold the same numbers for further processing.",
        "",
        "Reasons:",
        "",
    ]
    for r in _all_reasons(summary):
        help_ = REASON_HELP.get(r)
        lines.append(f"- `{r}`" + (f": {help_}" if help_ else ""))
    return "\n".join(lines) + "\n"


def _colour(reason: str, extra: list[str]) -> str:
    if reason in REASON_COLOURS:
        return REASON_COLOURS[reason]
    return EXTRA_COLOURS[extra.index(reason) % len(EXTRA_COLOURS)]


def _figures(df: pd.DataFrame, summary: dict):
    """The two report figures: stacked reason counts per mode, and wall times of successes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(summary["modes"])
    reasons = _all_reasons(summary)
    extra = [r for r in reasons if r not in REASON_COLOURS]
    x = np.arange(len(keys))
    width = max(6.0, 1.1 * len(keys) + 2.5)
    rotate = 30 if len(keys) > 4 or any(len(k) > 14 for k in keys) else 0

    fail, ax = plt.subplots(figsize=(width, 4.8))
    bottom = np.zeros(len(keys))
    for r in reasons:
        vals = np.array([summary["modes"][k]["reasons"].get(r, 0) for k in keys], dtype=float)
        if not vals.any():
            continue
        ax.bar(
            x,
            vals,
            bottom=bottom,
            color=_colour(r, extra),
            label=r,
            edgecolor="white",
            linewidth=0.5,
        )
        bottom += vals
    for xi, k in zip(x, keys, strict=True):
        m = summary["modes"][k]
        ax.annotate(
            _pct(m["rate"]),
            (xi, bottom[xi]),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.set_xticks(x, keys, rotation=rotate, ha="right" if rotate else "center")
    ax.set_ylabel("iterations")
    ax.set_title("Outcome per selection mode (label: success rate)")
    ax.set_ylim(0, max(1.0, float(bottom.max(initial=0))) * 1.1)
    if reasons and keys:
        ax.legend(title="reason", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.text(0.5, 0.5, "no records", ha="center", va="center", transform=ax.transAxes)

    walls, ax = plt.subplots(figsize=(width, 4.8))
    ok = df[(df["reason"].astype(str) == "success") & df["run_s"].notna()]
    groups = {
        (str(o), str(m)): g.to_numpy()
        for (o, m), g in ok["run_s"].groupby(
            [ok["outdir"].astype(str), ok["mode"].astype(str)], observed=True
        )
    }
    data = [
        groups.get((summary["modes"][k]["outdir"], summary["modes"][k]["mode"]), np.array([]))
        for k in keys
    ]
    rng = np.random.default_rng(0)
    for xi, vals in zip(x, data, strict=True):
        if not len(vals):
            continue
        ax.boxplot(
            [vals], positions=[xi], widths=0.5, showfliers=False, medianprops={"color": "black"}
        )
        pts = vals if len(vals) <= 300 else rng.choice(vals, 300, replace=False)
        ax.scatter(
            xi + rng.uniform(-0.18, 0.18, len(pts)),
            pts,
            s=6,
            alpha=0.4,
            color=REASON_COLOURS["success"],
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
    ax.set_xticks(x, keys, rotation=rotate, ha="right" if rotate else "center")
    ax.set_xlim(-0.6, max(len(keys), 1) - 0.4)
    ax.set_ylabel("run time of successful runs (s)")
    ax.set_title(
        "Wall time of successful runs per selection mode\n"
        "(box: quartiles, whiskers 1.5 IQR; dots: up to 300 runs per mode)",
        fontsize=10,
    )
    if not any(len(d) for d in data):
        ax.text(0.5, 0.5, "no successful runs", ha="center", va="center", transform=ax.transAxes)
    for fig in (fail, walls):
        fig.tight_layout()  # once here, not on every savefig as layout="constrained" would
    return plt, {"failures": fail, "walltimes": walls}


def write(df: pd.DataFrame, summary: dict, dest: Path) -> list[Path]:
    """Write report.csv, report.md, report.json and failures/walltimes as PNG and SVG.

    Every file is written to a temp file next to it and renamed into place, so an error never
    leaves a half-written report file behind.
    """
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"report: cannot create {dest}: {exc.strerror or exc}") from exc
    written: list[Path] = []
    try:
        written.append(_atomic(dest, "report.csv", _text(_csv(summary))))
        written.append(_atomic(dest, "report.md", _text(_markdown(summary))))
        written.append(
            _atomic(
                dest, "report.json", _text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
            )
        )
        plt, figs = _figures(df, summary)
        try:
            for name, fig in figs.items():
                for fmt in ("png", "svg"):
                    meta = {"Date": None} if fmt == "svg" else {}
                    written.append(
                        _atomic(
                            dest,
                            f"{name}.{fmt}",
                            lambda fh, fig=fig, fmt=fmt, meta=meta: fig.savefig(
                                fh, format=fmt, dpi=120, metadata=meta
                            ),
                        )
                    )
        finally:
            for fig in figs.values():
                plt.close(fig)
    except OSError as exc:
        raise HarnessError(f"report: cannot write into {dest}: {exc.strerror or exc}") from exc
    return written


# --------------------------------------------------------------------------- console


def _rate_ci(m: dict) -> str:
    lo, hi = m["ci95"]
    rate = "–" if m["rate"] is None else f"{100 * m['rate']:.1f} %"
    return f"{rate} [{100 * lo:.1f}–{100 * hi:.1f}]"


def _tables(out: dict, rows: list[dict], failures: list[str], wide: bool) -> list:
    """The outdir's table; when not wide, reason counts go into a second table of their own."""
    from rich import box
    from rich.table import Table

    main = Table(
        title=f"{out['label']}  ({out['path']})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    main.add_column("mode", no_wrap=True)
    for col in ("n", "ok", "rate [95 % CI]", *(failures if wide else ()), "median wall"):
        main.add_column(col, justify="right", no_wrap=True)
    for m in rows:
        main.add_row(
            m["mode"],
            str(m["n"]),
            str(m["success"]),
            _rate_ci(m),
            *((str(m["reasons"].get(r, 0)) for r in failures) if wide else ()),
            _secs(m["median_wall_s"]),
        )
    if wide or not failures:
        return [main]
    reasons = Table(
        title=f"{out['label']}: failures by reason",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    reasons.add_column("mode", no_wrap=True)
    for r in failures:  # the header may fold, the counts must not
        digits = max(len(str(m["reasons"].get(r, 0))) for m in rows)
        reasons.add_column(r, justify="right", overflow="fold", min_width=digits)
    for m in rows:
        reasons.add_row(m["mode"], *(str(m["reasons"].get(r, 0)) for r in failures))
    return [main, reasons]


def render(summary: dict, console) -> None:
    """One rich table per outdir: mode, n, successes, rate with 95 % CI, a count per failure
    reason, median wall time of successes. On a console too narrow for that, the reason counts
    move to a second table."""
    from rich.measure import Measurement

    if not summary["modes"]:
        console.print("[yellow]no records[/yellow]")
        return
    unlimited = console.options.update(max_width=10**5)
    for out in summary["outdirs"]:
        rows = [m for m in summary["modes"].values() if m["outdir"] == out["label"]]
        if not rows:
            console.print(f"[yellow]{out['path']}: no records[/yellow]")
            continue
        seen = {r for m in rows for r in m["reasons"]}
        failures = [r for r in reason_order(seen) if r in seen and r != "success"]
        tables = _tables(out, rows, failures, wide=True)
        if Measurement.get(console, unlimited, tables[0]).maximum > console.width:
            tables = _tables(out, rows, failures, wide=False)
        for table in tables:
            console.print(table)


def main(outdirs: list[str], as_json: bool = False, dest: str | None = None) -> int:
    """`harness report`: print tables (or the JSON summary with --json) and write the files."""
    if not outdirs:
        raise HarnessError("report: give at least one outdir")
    paths = [Path(p) for p in outdirs]
    df = load(paths)
    summary = summarize(df)
    written = write(df, summary, Path(dest) if dest else paths[0])
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()
    else:
        from rich.console import Console

        console = Console()
        render(summary, console)
        console.print(f"wrote {len(written)} files into {written[0].parent}")
    return 0
