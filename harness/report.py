"""Summarise one or more outdirs: success rates with 95 % intervals, failure reasons, wall times,
and, when an outdir holds a census, the outcome per image and each mode's expected success rate.

`harness report OUTDIR... [--json] [--out DIR] [--compare]` calls main(). The pipeline is

    load(outdirs)        -> DataFrame, one row per record (typed harness.records.read), with
                            each outdir's census.json in df.attrs["census"]
    filter_rows(df, ...) -> the rows of the wanted modes, images and reasons
    summarize(df)        -> dict (schema compat-harness/report/2, also written as report.json)
    compare_outdirs(s)   -> per-mode deltas between outdirs (with --compare)
    write(df, s, dest)   -> report.csv, report.md, report.json, failures.*, walltimes.*,
                            images.* (census), compare.* (--compare)
    render(s, console)   -> rich tables

Rates. A run counts toward a success rate unless its reason says otherwise (harness/data/
reasons.yaml, `rate: false`, e.g. `infra`: the infrastructure failed, not the image): `n` is the
number of runs that count, `runs` all of them, `excluded` the difference; the excluded reasons
keep their own counts and columns. The rate's 95 % interval is Wilson's.

Census. Mode `census` runs every image of a manifest K times; it is not a selection mode, so it
is shown per image, not as a mode. From it and census.json's candidate set of each mode, the
*expected* rate of a mode is the mean, over its candidates, of each image's census success
fraction (candidates with no counted census run are left out and counted as `missing`). Beside
a measured rate of that mode in the same outdir the report gives the exact equal-tailed binomial
95 % interval of the success count for p = expected and the measured n, [lo, hi] with lo the
smallest k with P(X <= k) >= 2.5 % and hi the largest k with P(X >= k) >= 2.5 %, and flags a
measured count outside it (`outside`).

Filters (`modes`, `images`, `reasons`) leave rows out before anything is summarised. The census
is not a selection mode, so a `modes` filter keeps the census rows and limits the expected rates
to the modes named; an `images` filter also limits each mode's candidate set to those images;
a `reasons` filter applies to census rows like to any other.

Only the fields the report needs are kept from each record, so 100,000 records (~190 MB of JSON
lines) stay well under 500 MB; benchmarks/bench_report.py measures the whole pipeline against
its 3 s / 500 MB targets.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from harness import records
from harness.errors import HarnessError
from harness.files import atomic_write
from harness.judge.reasons import REASONS, counts_in_rate, reason
from harness.records import CENSUS, CENSUS_FILE, CENSUS_SCHEMA
from harness.select import modes as mode_data

SCHEMA = "compat-harness/report/2"  # 2: n leaves out reasons with rate false (infra)
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
    "timesteps_per_s",
    "evidence",
)
FLOATS = ("run_s", "wrapper_s", "pull_s", "total_wall_time_s", "loop_time_s", "timesteps_per_s")
Z95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal
LEVEL = 0.95
DPI = 120  # figures are drawn and saved at this resolution

# Colours for reasons harness/data/reasons.yaml does not know (an old record's).
EXTRA_COLOURS = ("#393b79", "#843c39", "#7b4173", "#637939", "#3182bd", "#e6550d")

# Units of the figures of merit when harness.judge.application has no figure_units().
FALLBACK_UNITS = {
    "loop_time_s": "s",
    "total_wall_time_s": "s",
    "timesteps_per_s": "timesteps/s",
    "tau_per_day": "tau/day",
    "ns_per_day": "ns/day",
    "katom_step_per_s": "katom-step/s",
    "procs": "ranks",
    "steps": "steps",
    "atoms": "atoms",
    "loop_lines": "lines",
    "lammps_version": "",
}
FOM_COLUMNS = ("outdir", "mode", "iteration", "image", "figure", "value", "unit")


# --------------------------------------------------------------------------- reasons, modes


def mode_sort_key(mode: str) -> tuple[int, str]:
    """Display order: the gradient as harness/data/modes.yaml lists it, others alphabetically."""
    return mode_data.rank(mode)


def reason_order(reasons: Iterable[str]) -> list[str]:
    """REASONS in their order (harness/data/reasons.yaml), then unknown ones alphabetically."""
    present = set(reasons)
    return list(REASONS) + sorted(present - set(REASONS))


def reason_help(name: str) -> str | None:
    try:
        return reason(name).description
    except KeyError:
        return None


def reason_colour(name: str, extra: list[str] | None = None) -> str:
    """The reason's colour from the reasons data; a fallback colour for an unknown reason."""
    try:
        return reason(name).colour
    except KeyError:
        extra = extra or [name]
        i = extra.index(name) if name in extra else 0
        return EXTRA_COLOURS[i % len(EXTRA_COLOURS)]


# --------------------------------------------------------------------------- images


_ARCH = {"amd64", "arm64", "x86_64", "aarch64", "ppc64le", "s390x", "riscv64", "i386", "386"}
_OS_NAMES = (
    "ubuntu",
    "debian",
    "rockylinux",
    "rocky",
    "almalinux",
    "alma",
    "centos",
    "alpine",
    "fedora",
    "rhel",
    "ubi",
    "sles",
    "opensuse",
    "leap",
    "amazonlinux",
    "oraclelinux",
)
_BARE_VERSION = re.compile(r"\d+(?:\.\d+)*")
_OS_VERSION = re.compile(rf"(?:{'|'.join(_OS_NAMES)})(\d+(?:\.\d+)*)", re.IGNORECASE)


def image_tag(name: str) -> str:
    """The tag of an image reference (`registry/repo:tag` -> `tag`), else its last component."""
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else last


def image_os_version(name: str) -> tuple[tuple[int, ...], str] | None:
    """(OS version, the rest of the tag) parsed from an image's tag, or None.

    The version is the first dash- or underscore-separated token that is a bare number
    (`openmpi-debian-gpu-12-amd64` -> 12, `ubuntu-22.04` -> 22.04), else the first token that
    is an OS name glued to its version (`rocky8`, `ubuntu22.04`); architectures never count.
    """
    tokens = [t for t in re.split(r"[-_]", image_tag(name)) if t]
    found = None
    for i, tok in enumerate(tokens):
        if tok.lower() not in _ARCH and _BARE_VERSION.fullmatch(tok):
            found = (i, tok)
            break
    if found is None:
        for i, tok in enumerate(tokens):
            m = _OS_VERSION.fullmatch(tok)
            if m:
                found = (i, m[1])
                break
    if found is None:
        return None
    i, version = found
    rest = "-".join(tokens[:i] + tokens[i + 1 :])
    return tuple(int(x) for x in version.split(".")), rest


def image_sort_key(name: str) -> tuple:
    """Images ordered by OS version, then the rest of the tag (the variant); images without a
    version in their tag after those, by name."""
    parsed = image_os_version(name)
    if parsed is None:
        return (1, (), "", name)
    return (0, parsed[0], parsed[1], name)


def _image_matches(name: str, wanted: set[str]) -> bool:
    return name in wanted or image_tag(name) in wanted


# --------------------------------------------------------------------------- loading


def _labels(outdirs: list[Path]) -> list[str]:
    """The outdir's name as its label; the full path where two outdirs share a name."""
    names = [p.name or str(p) for p in outdirs]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(outdirs, names, strict=True)]


def load_census(outdir: Path) -> dict | None:
    """OUTDIR/census.json checked (schema and each mode's candidate list), or None."""
    path = Path(outdir) / CENSUS_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise HarnessError(f"report: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise HarnessError(f"report: {path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != CENSUS_SCHEMA:
        raise HarnessError(f"report: {path} is not a census file (schema {CENSUS_SCHEMA})")
    body = data.get("modes")
    if not isinstance(body, dict):
        raise HarnessError(f"report: {path}: 'modes' must be a mapping")
    for mode, entry in body.items():
        cands = entry.get("candidates") if isinstance(entry, dict) else False
        if cands is not None and not (
            isinstance(cands, list) and all(isinstance(c, str) for c in cands)
        ):
            raise HarnessError(
                f"report: {path}: mode {mode!r} needs 'candidates': a list of images or null"
            )
    return data


def _finish_columns(df: pd.DataFrame) -> None:
    # pandas transposed the tuples in C and inferred dtypes; these coercions only do work for
    # odd values (a string among the figures, a null exit code).
    for col in FLOATS:
        if df[col].dtype != np.float64:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(np.float64)
    for col in ("iteration", "exit_code"):
        values = pd.to_numeric(df[col], errors="coerce")
        try:
            df[col] = values.astype("Int64")
        except (TypeError, ValueError):
            df[col] = values.astype(np.float64)
    for col in ("mode", "reason", "image"):
        df[col] = df[col].astype("category")


def load(outdirs: list[Path], fom: bool = False) -> pd.DataFrame:
    """One row per complete record of every outdir (harness.records.read: typed, a torn last
    line skipped). With `fom`, a column `figures` keeps each record's figures of merit.

    df.attrs["outdirs"] lists the outdirs ({label, path, records}); df.attrs["census"] maps
    each label whose outdir holds a census.json to its content. Raises HarnessError naming the
    path when an outdir, or its records.jsonl, is missing or unreadable, or a line is not a
    record.
    """
    outdirs = list(dict.fromkeys(Path(p) for p in outdirs))  # the same outdir twice: once
    if not outdirs:
        raise HarnessError("report: no outdir given")
    rows: list[tuple] = []
    add = rows.append
    labels = _labels(outdirs)
    sizes: list[int] = []
    census: dict[str, dict] = {}
    for outdir, label in zip(outdirs, labels, strict=True):
        if not outdir.is_dir():
            raise HarnessError(f"report: outdir {outdir} does not exist or is not a directory")
        path = records.records_path(outdir)
        if not path.is_file():
            raise HarnessError(f"report: {path} does not exist (not a harness outdir?)")
        before = len(rows)
        try:
            # Only the fields the report uses are kept from each Record as it streams.
            for r in records.read(outdir):
                t = r.timings
                f = r.figures
                row = (
                    r.mode,
                    r.iteration,
                    r.image,
                    r.reason,
                    r.exit_code,
                    t.run_s,
                    t.wrapper_s,
                    t.pull_s,
                    f.get("total_wall_time_s"),
                    f.get("loop_time_s"),
                    f.get("timesteps_per_s"),
                    r.evidence,
                )
                add((*row, f) if fom else row)
        except HarnessError as exc:
            raise HarnessError(f"report: {exc}") from None
        sizes.append(len(rows) - before)
        data = load_census(outdir)
        if data is not None:
            census[label] = data
    cols = list(COLUMNS[1:]) + (["figures"] if fom else [])
    df = pd.DataFrame(rows, columns=cols) if rows else pd.DataFrame(columns=cols)
    del rows
    _finish_columns(df)
    df.insert(
        0,
        "outdir",
        pd.Categorical(np.repeat(np.array(labels, dtype=object), sizes), categories=labels),
    )
    df.attrs["outdirs"] = [
        {"label": label, "path": str(p), "records": k}
        for p, label, k in zip(outdirs, labels, sizes, strict=True)
    ]
    df.attrs["census"] = census
    return df


def filter_rows(
    df: pd.DataFrame,
    modes: Iterable[str] | None = None,
    images: Iterable[str] | None = None,
    reasons: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The rows of the given modes, images (full name or tag) and reasons; None keeps all.

    Census rows stay under a `modes` filter (the census is not a selection mode; the filter
    limits the expected rates instead). The filters are kept in df.attrs["filters"].
    """
    filters = {
        k: sorted(set(v))
        for k, v in (("modes", modes), ("images", images), ("reasons", reasons))
        if v is not None
    }
    if not filters:
        return df
    keep = np.ones(len(df), dtype=bool)
    if "modes" in filters:
        wanted = set(filters["modes"]) | {CENSUS}
        keep &= df["mode"].astype(str).isin(wanted).to_numpy()
    if "images" in filters:
        wanted = set(filters["images"])
        cats = df["image"].cat.categories
        hit = {c for c in cats if _image_matches(str(c), wanted)}
        keep &= df["image"].isin(hit).to_numpy()
    if "reasons" in filters:
        keep &= df["reason"].astype(str).isin(set(filters["reasons"])).to_numpy()
    out = df[keep].reset_index(drop=True)
    out.attrs["filters"] = filters
    kept = Counter(out["outdir"].astype(str))
    out.attrs["outdirs"] = [{**o, "kept": kept.get(o["label"], 0)} for o in df.attrs["outdirs"]]
    return out


# --------------------------------------------------------------------------- statistics


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when n == 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def binomial_interval(n: int, p: float, level: float = LEVEL) -> tuple[int, int]:
    """Exact equal-tailed interval of success counts for Binomial(n, p): [lo, hi] with lo the
    smallest k with P(X <= k) >= (1 - level) / 2 and hi the largest k with P(X >= k) >= the
    same. A count outside it has a tail probability below 2.5 % (for level 0.95)."""
    if n <= 0:
        return (0, 0)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], not {p}")
    if p == 0.0:
        return (0, 0)
    if p == 1.0:
        return (n, n)
    alpha = (1.0 - level) / 2
    k = np.arange(n + 1, dtype=np.float64)
    i = k[1:]
    log_comb = np.concatenate(([0.0], np.cumsum(np.log(n - i + 1) - np.log(i))))
    log_pmf = log_comb + k * math.log(p) + (n - k) * math.log1p(-p)
    pmf = np.exp(log_pmf - log_pmf.max())
    pmf /= pmf.sum()
    eps = 1e-12  # a tail exactly at alpha is inside despite rounding
    lower = np.cumsum(pmf)  # P(X <= k)
    upper = np.cumsum(pmf[::-1])  # upper[j] = P(X >= n - j)
    lo = int(np.argmax(lower >= alpha - eps))
    hi = n - int(np.argmax(upper >= alpha - eps))
    return lo, hi


def _counts(row: pd.Series, reasons: list[str]) -> dict:
    """n (runs that count), success, runs, excluded, rate, ci95 and reason counts of a row of
    reason counts."""
    counts = {r: int(row[r]) for r in reasons if r in row.index and row[r] > 0}
    runs = sum(counts.values())
    n = sum(k for r, k in counts.items() if counts_in_rate(r))
    ok = counts.get("success", 0)
    lo, hi = wilson(ok, n)
    return {
        "n": n,
        "success": ok,
        "runs": runs,
        "excluded": runs - n,
        "rate": ok / n if n else None,
        "ci95": [lo, hi],
        "reasons": counts,
    }


def _float(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


# --------------------------------------------------------------------------- summary


def summarize(df: pd.DataFrame) -> dict:
    """Per (outdir, mode) counts, success rate with Wilson 95 % interval, reasons, median wall;
    with a census also per image ("images") and each mode's expected rate ("expected").

    Modes are keyed by mode name, or "outdir:mode" when the same mode occurs in several
    outdirs; images and expected rates likewise ("outdir:image", "outdir:mode").
    """
    outdirs = df.attrs.get("outdirs") or [
        {"label": str(o), "path": str(o), "records": int(k)}
        for o, k in df["outdir"].astype(str).value_counts(sort=False).items()
    ]
    census_files: dict[str, dict] = df.attrs.get("census") or {}
    filters: dict = df.attrs.get("filters") or {}
    labels = [o["label"] for o in outdirs]
    summary: dict = {"schema": SCHEMA, "modes": {}, "outdirs": outdirs}
    if filters:
        summary["filters"] = filters

    mode_s = df["mode"].astype(str)
    is_census = (mode_s == CENSUS).to_numpy()
    sampled = df[~is_census] if is_census.any() else df
    summary["modes"] = _summarize_modes(sampled, labels)
    census_rows = df[is_census]
    if is_census.any() or census_files:
        summary["images"] = _summarize_images(census_rows, labels)
        summary["census"] = {
            label: {
                k: census_files[label].get(k) for k in ("manifests", "repeat", "seed", "images")
            }
            for label in labels
            if label in census_files
        }
        summary["expected"] = _expected(summary, census_files, labels, filters)
    return summary


def _summarize_modes(df: pd.DataFrame, labels: list[str]) -> dict[str, dict]:
    if df.empty:
        return {}
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

    out: dict[str, dict] = {}
    for label in labels:
        for mode in sorted(modes_per_outdir.get(label, ()), key=mode_sort_key):
            med = medians.get((label, mode), math.nan)
            key = f"{label}:{mode}" if shared[mode] > 1 else mode
            out[key] = {
                "outdir": label,
                "mode": mode,
                **_counts(counts.loc[(label, mode)], reasons),
                "median_wall_s": _float(med),
            }
    return out


def _summarize_images(df: pd.DataFrame, labels: list[str]) -> dict[str, dict]:
    """Per (outdir, image) of the census: counts, the most frequent failure and its most
    frequent evidence line, median loop time and timesteps/s of the successful runs."""
    if df.empty:
        return {}
    df = df[df["image"].notna()]
    outdir_s = df["outdir"].astype(str)
    image_s = df["image"].astype(str)
    reason_s = df["reason"].astype(str)
    counts = pd.crosstab([outdir_s, image_s], reason_s)
    reasons = reason_order(counts.columns)
    ok = reason_s == "success"
    figs = (
        df.loc[ok, ["loop_time_s", "timesteps_per_s"]].groupby([outdir_s[ok], image_s[ok]]).median()
    )
    evidence = (
        pd.DataFrame({"o": outdir_s, "i": image_s, "r": reason_s, "e": df["evidence"]})[~ok]
        .groupby(["o", "i", "r", "e"], observed=True, sort=False)
        .size()
    )
    top_evidence: dict[tuple[str, str, str], str] = {}
    for (o, i, r, e), _k in sorted(evidence.items(), key=lambda kv: -kv[1]):
        top_evidence.setdefault((o, i, r), e)  # the most frequent line (stable on ties)
    per_outdir: dict[str, list[str]] = {}
    for label, image in counts.index:
        per_outdir.setdefault(label, []).append(image)
    shared = Counter(image for _, image in counts.index)

    out: dict[str, dict] = {}
    for label in labels:
        for image in sorted(per_outdir.get(label, ()), key=image_sort_key):
            c = _counts(counts.loc[(label, image)], reasons)
            failures = [(k, -reasons.index(r), r) for r, k in c["reasons"].items()]
            failures = [f for f in failures if f[2] != "success"]
            worst = max(failures)[2] if failures else None
            fig = figs.loc[(label, image)] if (label, image) in figs.index else None
            key = f"{label}:{image}" if shared[image] > 1 else image
            out[key] = {
                "outdir": label,
                "image": image,
                **c,
                "reason": worst,
                "evidence": top_evidence.get((label, image, worst)) if worst else None,
                "loop_time_s": None if fig is None else _float(fig["loop_time_s"]),
                "timesteps_per_s": None if fig is None else _float(fig["timesteps_per_s"]),
            }
    return out


def _expected(
    summary: dict, census_files: dict[str, dict], labels: list[str], filters: dict
) -> dict[str, dict]:
    """Each census mode's expected success rate: the mean census success fraction of its
    candidates, beside the mode's measured rate in the same outdir when there is one."""
    images = summary["images"]
    fraction = {
        (m["outdir"], m["image"]): m["success"] / m["n"] for m in images.values() if m["n"] > 0
    }
    measured = {(m["outdir"], m["mode"]): (key, m) for key, m in summary["modes"].items()}
    wanted_modes = set(filters["modes"]) if "modes" in filters else None
    wanted_images = set(filters["images"]) if "images" in filters else None
    several = sum(label in census_files for label in labels) > 1
    out: dict[str, dict] = {}
    for label in labels:
        if label not in census_files:
            continue
        body = census_files[label]["modes"]
        for mode in sorted(body, key=mode_sort_key):
            if wanted_modes is not None and mode not in wanted_modes:
                continue
            entry = body[mode] if isinstance(body[mode], dict) else {}
            cands = entry.get("candidates")
            if cands is not None and wanted_images is not None:
                cands = [c for c in cands if _image_matches(c, wanted_images)]
            rate = None
            missing: list[str] = []
            if cands is not None:
                known = [fraction[(label, c)] for c in cands if (label, c) in fraction]
                missing = [c for c in cands if (label, c) not in fraction]
                rate = sum(known) / len(known) if known else None
            e: dict = {
                "outdir": label,
                "mode": mode,
                "rate": rate,
                "candidates": None if cands is None else len(cands),
                "missing": len(missing),
                "missing_images": missing,
            }
            if entry.get("error"):
                e["error"] = str(entry["error"])
            hit = measured.get((label, mode))
            e["measured"] = None
            e["interval95"] = None
            e["interval95_counts"] = None
            e["outside"] = None
            if hit is not None:
                key, m = hit
                e["measured"] = {"key": key, "n": m["n"], "success": m["success"]}
                e["measured"]["rate"] = m["rate"]
                if rate is not None and m["n"] > 0:
                    lo, hi = binomial_interval(m["n"], rate)
                    e["interval95_counts"] = [lo, hi]
                    e["interval95"] = [lo / m["n"], hi / m["n"]]
                    e["outside"] = not lo <= m["success"] <= hi
            out[f"{label}:{mode}" if several else mode] = e
    return out


def compare_outdirs(summary: dict) -> dict[str, dict]:
    """Per mode, the success rate of every other outdir against the first (the baseline):
    delta = other - baseline, and whether their Wilson 95 % intervals overlap. Keyed by mode
    with two outdirs, by "other:mode" with more; null where a side has no counted run."""
    labels = [o["label"] for o in summary["outdirs"]]
    if len(labels) < 2:
        raise HarnessError("report: --compare needs at least two outdirs")
    by = {(m["outdir"], m["mode"]): m for m in summary["modes"].values()}
    expected = _expected_rates(summary)
    base = labels[0]
    out: dict[str, dict] = {}
    for other in labels[1:]:
        names = {mode for (o, mode) in [*by, *expected] if o in (base, other)}
        for mode in sorted(names, key=mode_sort_key):
            a, b = by.get((base, mode)), by.get((other, mode))
            ra = a["rate"] if a else None
            rb = b["rate"] if b else None
            both = ra is not None and rb is not None
            overlap = None
            if both:
                (alo, ahi), (blo, bhi) = a["ci95"], b["ci95"]
                overlap = alo <= bhi and blo <= ahi
            out[mode if len(labels) == 2 else f"{other}:{mode}"] = {
                "mode": mode,
                "baseline_outdir": base,
                "other_outdir": other,
                "baseline": ra,
                "other": rb,
                "delta": rb - ra if both else None,
                "overlap": overlap,
                "baseline_n": a["n"] if a else 0,
                "other_n": b["n"] if b else 0,
                "baseline_ci95": a["ci95"] if a else None,
                "other_ci95": b["ci95"] if b else None,
                # a census's exact expectation, where the outdir holds one (e.g. a hybrid
                # census beside a bind one): comparable even without sampled runs
                "baseline_expected": expected.get((base, mode)),
                "other_expected": expected.get((other, mode)),
            }
    return out


def _expected_rates(summary: dict) -> dict[tuple[str, str], float]:
    return {
        (e["outdir"], e["mode"]): e["rate"]
        for e in summary.get("expected", {}).values()
        if e.get("rate") is not None
    }


# --------------------------------------------------------------------------- files


def _atomic(dest: Path, name: str, fill: Callable[[IO[bytes]], None]) -> Path:
    return atomic_write(dest / name, fill)


def _text(text: str) -> Callable[[IO[bytes]], None]:
    return lambda fh: fh.write(text.encode())


def _seen(entries: Iterable[dict]) -> set[str]:
    return {r for m in entries for r in m["reasons"]}


def _all_reasons(summary: dict, only_seen: bool = False) -> list[str]:
    """Reasons in display order: all of REASONS (plus extras seen), or only those that occur."""
    seen = _seen(summary["modes"].values()) | _seen(summary.get("images", {}).values())
    return [r for r in reason_order(seen) if r in seen or not only_seen]


def _columns(reasons: list[str]) -> list[str]:
    """Reason columns: the failures that count, then the reasons left out of n (infra)."""
    fails = [r for r in reasons if r != "success" and counts_in_rate(r)]
    return fails + [r for r in reasons if not counts_in_rate(r)]


def _csv(summary: dict) -> str:
    reasons = _columns(_all_reasons(summary))
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
            "runs",
            "expected_rate",
            "expected_outside",
        ]
    )
    expected = {(e["outdir"], e["mode"]): e for e in summary.get("expected", {}).values()}
    for key, m in summary["modes"].items():
        e = expected.get((m["outdir"], m["mode"]))
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
                m["runs"],
                "" if e is None or e["rate"] is None else f"{e['rate']:.6f}",
                "" if e is None or e["outside"] is None else str(e["outside"]).lower(),
            ]
        )
    return buf.getvalue()


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _secs(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f} s"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _short_images(summary: dict) -> dict[str, str]:
    """Image key -> display name: the tag when tags are unique, else the key."""
    keys = list(summary.get("images", {}))
    tags = {k: image_tag(summary["images"][k]["image"]) for k in keys}
    prefix = len({m["outdir"] for m in summary.get("images", {}).values()}) > 1
    short = {k: (f"{summary['images'][k]['outdir']}:{t}" if prefix else t) for k, t in tags.items()}
    return short if len(set(short.values())) == len(short) else {k: k for k in keys}


def _flag(e: dict) -> str:
    if e["outside"] is None:
        return "–"
    return "OUTSIDE" if e["outside"] else "inside"


def _expected_cells(e: dict) -> list[str]:
    m = e["measured"]
    meas = "–" if m is None else f"{m['success']}/{m['n']} = {_pct(m['rate'])}"
    iv = e["interval95_counts"]
    interval = "–" if iv is None else f"{iv[0]}–{iv[1]} of {m['n']}"
    cands = "no candidate set" if e["candidates"] is None else str(e["candidates"])
    return [cands, str(e["missing"]), _pct(e["rate"]), meas, interval, _flag(e)]


def _markdown(summary: dict) -> str:
    modes = summary["modes"]
    reasons = _columns(_all_reasons(summary, only_seen=True))
    lines = ["# Compatibility report", ""]
    outs = ", ".join(f"`{o['path']}`" for o in summary["outdirs"])
    total = sum(o["records"] for o in summary["outdirs"])
    lines += [f"Outdirs: {outs}. {total} records.", ""]
    if summary.get("filters"):
        kept = sum(o.get("kept", o["records"]) for o in summary["outdirs"])
        shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in summary["filters"].items())
        lines += [f"Filters: {shown} ({kept} records kept).", ""]
    head = ["mode", "n", "success", "rate", "95 % CI", *reasons, "median wall (success)"]
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
            *(str(m["reasons"].get(r, 0)) for r in reasons),
            _secs(m["median_wall_s"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if not modes:
        lines.append("| (no sampled runs) |" + " |" * (len(head) - 1))

    if "expected" in summary:
        lines += ["", "## Expected success rate from the census", ""]
        head = ["mode", "candidates", "missing", "expected", "measured", "95 % interval", "flag"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for key, e in summary["expected"].items():
            lines.append("| " + " | ".join([f"`{key}`", *_expected_cells(e)]) + " |")
        for key, e in summary["expected"].items():
            if e["missing"]:
                miss = ", ".join(f"`{i}`" for i in e["missing_images"])
                lines.append(f"\n`{key}`: {e['missing']} candidate(s) without census run: {miss}")
            if e.get("error"):
                lines.append(f"\n`{key}`: no candidate set on the census host: {e['error']}")

    if "images" in summary:
        short = _short_images(summary)
        lines += ["", "## Census: outcome per image", ""]
        head = [
            "image",
            "runs",
            "n",
            "success",
            "rate",
            "reason",
            "evidence",
            "loop time (median)",
            "timesteps/s (median)",
        ]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|---|" + "---:|" * 4 + "---|---|" + "---:|" * 2)
        for key, m in summary["images"].items():
            ev = (m["evidence"] or "").replace("|", "\\|").replace("`", "'")
            cells = [
                f"`{short[key]}`",
                str(m["runs"]),
                str(m["n"]),
                str(m["success"]),
                _pct(m["rate"]),
                m["reason"] or "–",
                f"`{ev}`" if ev else "–",
                _secs(m["loop_time_s"]),
                _num(m["timesteps_per_s"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
        if not summary["images"]:
            lines.append("| (no census runs) |" + " |" * (len(head) - 1))

    if "compare" in summary:
        lines += ["", "## Comparison (baseline: the first outdir)", ""]
        head = [
            "mode", "baseline", "other", "baseline rate", "other rate", "delta", "overlap",
            "baseline expected", "other expected",
        ]  # fmt: skip
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|---|---|---|---:|---:|---:|---|---:|---:|")
        for key, c in summary["compare"].items():
            lines.append("| " + " | ".join([f"`{key}`", *_compare_cells(c)]) + " |")

    lines += [
        "",
        "## How to read this",
        "",
        "- Each row of the first table is one selection mode (prefixed `outdir:` when the same "
        "mode comes from several outdirs). `n` counts the iterations that count toward the "
        "rate, one image chosen and run per iteration.",
        "- `rate` is successes / n. `95 % CI` is the Wilson score interval: with few "
        "iterations it is wide, and two modes whose intervals overlap are not clearly "
        "different.",
        "- The reason columns count why runs failed; each run has exactly one reason. Reasons "
        "that do not count toward a rate (" + (", ".join(_excluded_names()) or "none") + ": "
        "the infrastructure failed, not the image) are left out of n and shown in their own "
        "columns, so success + the other reason columns = n. Columns no run fell into are "
        "left out.",
        "- `median wall (success)` is the median `timings.run_s` (seconds of the run step) "
        "of the successful runs only; failures are often fast and would hide the real cost.",
        "- A census (mode `census`, every image K times) is not a selection mode: it is shown "
        "per image, with the most frequent failure and its most frequent evidence line, and "
        "the median loop time and timesteps/s of the successful runs.",
        "- `expected` is a mode's success rate predicted from the census: the mean, over the "
        "mode's candidates on the census host, of each image's census success fraction; "
        "candidates without a counted census run are left out (`missing`). Beside a measured "
        "rate of that mode, `95 % interval` is the exact equal-tailed binomial interval of the "
        "success count for p = expected and the measured n (each tail at most 2.5 %); a "
        "measured count outside it is flagged `OUTSIDE`.",
        "- `failures.png` / `.svg` stack the reasons per mode (success in green, at the "
        "bottom; the black marker is the expected number of successes with its 95 % interval); "
        "`walltimes.png` / `.svg` show the run times of successful runs per mode; "
        "`images.png` / `.svg` the census outcome per image, ordered by OS version, then "
        "variant; `compare.png` / `.svg` the rates of each outdir side by side. "
        "`report.csv` and `report.json` hold the same numbers for further processing.",
        "",
        "Reasons:",
        "",
    ]
    for r in _all_reasons(summary):
        help_ = reason_help(r)
        note = "" if counts_in_rate(r) else " (not counted in n)"
        lines.append(f"- `{r}`" + (f": {help_}" if help_ else "") + note)
    return "\n".join(lines) + "\n"


def _excluded_names() -> list[str]:
    return [r for r in REASONS if not counts_in_rate(r)]


def _compare_cells(c: dict) -> list[str]:
    delta = "–" if c["delta"] is None else f"{100 * c['delta']:+.1f} pp"
    overlap = "–" if c["overlap"] is None else ("yes" if c["overlap"] else "NO")
    return [
        c["baseline_outdir"],
        c["other_outdir"],
        _pct(c["baseline"]) + f" (n={c['baseline_n']})",
        _pct(c["other"]) + f" (n={c['other_n']})",
        delta,
        overlap,
        _pct(c.get("baseline_expected")),
        _pct(c.get("other_expected")),
    ]


def _stacked(
    ax,
    keys: list[str],
    entries: dict[str, dict],
    reasons: list[str],
    fontsize: float = 8,
    annotate: bool = True,
) -> np.ndarray:
    """Stacked bars of reason counts (success first, at the bottom), one PolyCollection per
    reason (a patch per segment is several times slower to draw); the success rate above
    each bar when `annotate`. Returns the bar tops."""
    from matplotlib.collections import PolyCollection

    extra = [r for r in reasons if r not in REASONS]
    x = np.arange(len(keys), dtype=float)
    bottom = np.zeros(len(keys))
    order = (["success"] if "success" in reasons else []) + [r for r in reasons if r != "success"]
    for r in order:
        vals = np.array([entries[k]["reasons"].get(r, 0) for k in keys], dtype=float)
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
    if annotate:
        for xi, k in zip(x, keys, strict=True):
            ax.annotate(
                _pct(entries[k]["rate"]),
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


def _failures_figure(plt, summary: dict, keys: list[str], width: float, rotate: int):
    reasons = _all_reasons(summary)
    fig, ax = plt.subplots(figsize=(width, 4.8), dpi=DPI)
    x = np.arange(len(keys))
    bottom = _stacked(ax, keys, summary["modes"], reasons)
    expected = {(e["outdir"], e["mode"]): e for e in summary.get("expected", {}).values()}
    ex, ey, elo, ehi = [], [], [], []
    for xi, k in zip(x, keys, strict=True):
        m = summary["modes"][k]
        e = expected.get((m["outdir"], m["mode"]))
        if e is None or e["interval95_counts"] is None:
            continue
        y = e["rate"] * m["n"]
        lo, hi = e["interval95_counts"]
        ex.append(xi)
        ey.append(y)
        elo.append(max(0.0, y - lo))
        ehi.append(max(0.0, hi - y))
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
    ax.set_xticks(x, keys, rotation=rotate, ha="right" if rotate else "center")
    ax.set_xlabel("selection mode")
    ax.set_ylabel("iterations")
    _integer_y(ax)
    ax.set_title("Outcome per selection mode (label: success rate)")
    ax.set_ylim(0, max(1.0, top) * 1.1)
    if keys:
        ax.legend(title="reason", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.text(0.5, 0.5, "no sampled runs", ha="center", va="center", transform=ax.transAxes)
    return fig


def _walltimes_figure(plt, df, summary: dict, keys: list[str], width: float, rotate: int):
    fig, ax = plt.subplots(figsize=(width, 4.8), dpi=DPI)
    x = np.arange(len(keys))
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
            color=reason_colour("success"),
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
    ax.set_xlabel("selection mode")
    ax.set_ylabel("run time of successful runs (s)")
    ax.set_title(
        "Wall time of successful runs per selection mode\n"
        "(box: quartiles, whiskers 1.5 IQR; dots: up to 300 runs per mode)",
        fontsize=10,
    )
    if not any(len(d) for d in data):
        ax.text(0.5, 0.5, "no successful runs", ha="center", va="center", transform=ax.transAxes)
    return fig


def _images_figure(plt, summary: dict):
    images = summary["images"]
    keys = list(images)
    short = _short_images(summary)
    labels = [short[k] for k in keys]
    # a bar per image; past ~40 images the bars get thinner rather than the figure wider
    width = min(16.0, max(6.0, 0.35 * len(keys) + 3.5))
    small = len(keys) > 24
    fig, ax = plt.subplots(figsize=(width, 5.2), dpi=DPI)
    x = np.arange(len(keys))
    bottom = _stacked(ax, keys, images, _all_reasons(summary), fontsize=6 if small else 8)
    rotate = 35 if len(keys) > 3 or any(len(s) > 14 for s in labels) else 0
    ax.set_xticks(
        x, labels, rotation=rotate, ha="right" if rotate else "center", fontsize=6 if small else 8
    )
    ax.set_xlim(-0.6, max(len(keys), 1) - 0.4)
    ax.set_xlabel("image (ordered by OS version, then variant)")
    ax.set_ylabel("census runs")
    _integer_y(ax)
    ax.set_ylim(0, max(1.0, float(bottom.max(initial=0))) * 1.12)
    ax.set_title("Census: outcome per image (label: success rate)")
    if keys:
        ax.legend(title="reason", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:
        ax.text(0.5, 0.5, "no census runs", ha="center", va="center", transform=ax.transAxes)
    return fig


def _compare_figure(plt, summary: dict):
    labels = [o["label"] for o in summary["outdirs"]]
    by = {(m["outdir"], m["mode"]): m for m in summary["modes"].values()}
    expected = _expected_rates(summary)
    names = sorted({mode for _, mode in [*by, *expected]}, key=mode_sort_key)
    x = np.arange(len(names))
    step = 0.8 / max(1, len(labels))
    width = max(7.0, 0.45 * len(names) * len(labels) + 3.0)
    fig, ax = plt.subplots(figsize=(width, 4.8), dpi=DPI)
    for j, label in enumerate(labels):
        pos = x - 0.4 + step * (j + 0.5)
        rates, lo, hi = [], [], []
        for mode in names:
            m = by.get((label, mode))
            r = m["rate"] if m and m["rate"] is not None else math.nan
            rates.append(100 * r)
            a, b = m["ci95"] if m and m["rate"] is not None else (r, r)
            lo.append(0.0 if math.isnan(r) else max(0.0, 100 * (r - a)))
            hi.append(0.0 if math.isnan(r) else max(0.0, 100 * (b - r)))
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
        ax.bar(
            pos,
            rates,
            width=step * 0.95,
            yerr=[lo, hi],
            capsize=3,
            color=f"C{j % 10}",
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
                edgecolors=f"C{j % 10}",
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


def _figures(df: pd.DataFrame, summary: dict):
    """The report figures: failures and walltimes always, images with a census, compare with
    a comparison."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(summary["modes"])
    width = max(6.0, 1.1 * len(keys) + 2.5)
    rotate = 30 if len(keys) > 4 or any(len(k) > 14 for k in keys) else 0
    figs = {
        "failures": _failures_figure(plt, summary, keys, width, rotate),
        "walltimes": _walltimes_figure(plt, df, summary, keys, width, rotate),
    }
    if "images" in summary:
        figs["images"] = _images_figure(plt, summary)
    if "compare" in summary:
        figs["compare"] = _compare_figure(plt, summary)
    for fig in figs.values():
        fig.tight_layout()  # once here, not on every savefig as layout="constrained" would
    return plt, figs


def _save(fig, fmt: str, fh: IO[bytes]) -> None:
    """PNG at the figure's own dpi (the text laid out for tight_layout is reused); SVG with
    text as text, not glyph outlines (smaller, searchable, faster), and no date (stable)."""
    import matplotlib

    if fmt == "svg":
        with matplotlib.rc_context({"svg.fonttype": "none"}):
            fig.savefig(fh, format="svg", dpi=DPI, metadata={"Date": None})
    else:
        fig.savefig(fh, format=fmt, dpi=DPI)


def write(df: pd.DataFrame, summary: dict, dest: Path) -> list[Path]:
    """Write report.csv, report.md, report.json and the figures as PNG and SVG.

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
                    written.append(_atomic(dest, f"{name}.{fmt}", partial(_save, fig, fmt)))
        finally:
            for fig in figs.values():
                plt.close(fig)
    except OSError as exc:
        raise HarnessError(f"report: cannot write into {dest}: {exc.strerror or exc}") from exc
    return written


def figure_units() -> dict[str, str]:
    """Units of the figures of merit: harness.judge.application.figure_units() when it exists,
    over a small fallback."""
    from harness.judge import application

    units = dict(FALLBACK_UNITS)
    ask = getattr(application, "figure_units", None)
    if callable(ask):
        units.update({str(k): "" if v is None else str(v) for k, v in ask().items()})
    return units


def export_figures(df: pd.DataFrame, path: Path) -> Path:
    """Write the figures of merit of every row (df from load(..., fom=True)) as CSV, one line
    per (record, figure): outdir, mode, iteration, image, figure, value, unit."""
    if "figures" not in df.columns:
        raise HarnessError("report: the records were loaded without their figures (fom=True)")
    units = figure_units()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FOM_COLUMNS)
    cols = [df[c].tolist() for c in ("outdir", "mode", "iteration", "image", "figures")]
    for outdir, mode, it, image, figs in zip(*cols, strict=True):
        for name in sorted(figs or ()):
            value = figs[name]
            w.writerow(
                [outdir, mode, it, image if isinstance(image, str) else "", name, value]
                + [units.get(name, "")]
            )
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(path, _text(buf.getvalue()))
    except OSError as exc:
        raise HarnessError(f"report: cannot write {path}: {exc.strerror or exc}") from exc


# --------------------------------------------------------------------------- console


def _rate_ci(m: dict) -> str:
    lo, hi = m["ci95"]
    rate = "–" if m["rate"] is None else f"{100 * m['rate']:.1f} %"
    return f"{rate} [{100 * lo:.1f}–{100 * hi:.1f}]"


def _table(title: str):
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)


def _tables(out: dict, rows: list[dict], failures: list[str], wide: bool) -> list:
    """The outdir's table; when not wide, reason counts go into a second table of their own."""
    main = _table(f"{out['label']}  ({out['path']})")
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
    reasons = _table(f"{out['label']}: failures by reason")
    reasons.add_column("mode", no_wrap=True)
    for r in failures:  # the header may fold, the counts must not
        digits = max(len(str(m["reasons"].get(r, 0))) for m in rows)
        reasons.add_column(r, justify="right", overflow="fold", min_width=digits)
    for m in rows:
        reasons.add_row(m["mode"], *(str(m["reasons"].get(r, 0)) for r in failures))
    return [main, reasons]


def _expected_tables(label: str, entries: dict[str, dict], wide: bool) -> list:
    """Expected beside measured; when not wide, the measured side gets a table of its own."""
    title = f"{label}: expected success rate from the census"
    first = _table(title)
    second = first if wide else _table(f"{label}: measured against the expected rate")
    for t in {id(first): first, id(second): second}.values():
        t.add_column("mode", no_wrap=True)
    for col in ("cands", "missing", "expected"):
        first.add_column(col, justify="right", no_wrap=True)
    for col in ("measured", "95 % range", "flag"):
        second.add_column(col, justify="right", no_wrap=True)
    for e in entries.values():
        m = e["measured"]
        iv = e["interval95_counts"]
        flag = _flag(e)
        if e["outside"]:
            flag = f"[bold red]{flag}[/bold red]"
        left = [
            "no set" if e["candidates"] is None else str(e["candidates"]),
            str(e["missing"]),
            _pct(e["rate"]),
        ]
        right = [
            "–" if m is None else f"{m['success']}/{m['n']} = {_pct(m['rate'])}",
            "–" if iv is None else f"{iv[0]}–{iv[1]}",
            flag,
        ]
        if wide:
            first.add_row(e["mode"], *left, *right)
        else:
            first.add_row(e["mode"], *left)
            second.add_row(e["mode"], *right)
    return [first] if wide else [first, second]


def _images_tables(label: str, summary: dict, keys: list[str], wide: bool) -> list:
    """The census per image; when not wide, figures and evidence go into a second table."""
    short = _short_images(summary)
    first = _table(f"{label}: census, outcome per image")
    second = first if wide else _table(f"{label}: census, evidence and figures of merit")
    first.add_column("image", no_wrap=wide, overflow="fold")
    for col in ("runs", "ok", "rate [95 % CI]", "reason"):
        first.add_column(col, justify="right", no_wrap=True)
    if not wide:
        second.add_column("image", overflow="fold")
    second.add_column("loop time", justify="right", no_wrap=True)
    second.add_column("timesteps/s", justify="right", no_wrap=True)
    second.add_column("evidence", overflow="fold", max_width=None if not wide else 60)
    for k in keys:
        m = summary["images"][k]
        left = [str(m["runs"]), str(m["success"]), _rate_ci(m), m["reason"] or "–"]
        right = [_secs(m["loop_time_s"]), _num(m["timesteps_per_s"]), m["evidence"] or "–"]
        if wide:
            first.add_row(short[k], *left, *right)
        else:
            first.add_row(short[k], *left)
            second.add_row(short[k], *right)
    return [first] if wide else [first, second]


def _print_fitting(console, build: Callable[[bool], list]) -> None:
    """The wide tables when they fit the console, else the narrow ones."""
    from rich.measure import Measurement

    tables = build(True)
    unlimited = console.options.update(max_width=10**5)
    if any(Measurement.get(console, unlimited, t).maximum > console.width for t in tables):
        tables = build(False)
    for t in tables:
        console.print(t)


def _compare_table(summary: dict):
    t = _table("comparison (baseline: the first outdir)")
    t.add_column("mode", no_wrap=True)
    for col in ("baseline", "other", "baseline rate", "other rate"):
        t.add_column(col, justify="right")
    for col in ("delta", "CIs overlap", "baseline expected", "other expected"):
        t.add_column(col, justify="right", no_wrap=True)
    for key, c in summary["compare"].items():
        cells = _compare_cells(c)
        if c["overlap"] is False:
            cells[-1] = f"[bold]{cells[-1]}[/bold]"
        t.add_row(key, *cells)
    return t


def render(summary: dict, console) -> None:
    """Per outdir: a table of modes (n, successes, rate with 95 % CI, a count per failure
    reason, median wall time of successes; on a console too narrow for that, the reason counts
    move to a second table), and with a census the expected rates and the per-image table.
    Then the comparison, when there is one."""
    from rich.measure import Measurement

    if not summary["modes"] and not summary.get("images") and "expected" not in summary:
        console.print("[yellow]no records[/yellow]")
        return
    unlimited = console.options.update(max_width=10**5)
    for out in summary["outdirs"]:
        label = out["label"]
        rows = [m for m in summary["modes"].values() if m["outdir"] == label]
        images = [k for k, m in summary.get("images", {}).items() if m["outdir"] == label]
        expected = {k: e for k, e in summary.get("expected", {}).items() if e["outdir"] == label}
        if not rows and not images and not expected:
            console.print(f"[yellow]{out['path']}: no records[/yellow]")
            continue
        if rows:
            failures = _columns([r for r in reason_order(_seen(rows)) if r in _seen(rows)])
            tables = _tables(out, rows, failures, wide=True)
            if Measurement.get(console, unlimited, tables[0]).maximum > console.width:
                tables = _tables(out, rows, failures, wide=False)
            for table in tables:
                console.print(table)
        if expected:
            _print_fitting(console, partial(_expected_tables, label, expected))
        if images:
            _print_fitting(console, partial(_images_tables, label, summary, images))
    if summary.get("compare"):
        console.print(_compare_table(summary))


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
) -> int:
    """`harness report`: print tables (or the JSON summary with --json) and write the files.

    compare: per-mode deltas against the first outdir (needs two or more outdirs).
    modes / images / reasons: keep only those rows (see the module's docstring for the census).
    export_fom: also write the figures of merit of the kept rows as CSV to this path.
    """
    if not outdirs:
        raise HarnessError("report: give at least one outdir")
    paths = [Path(p) for p in outdirs]
    if compare and len(dict.fromkeys(paths)) < 2:
        raise HarnessError("report: --compare needs at least two outdirs")
    df = load(paths, fom=export_fom is not None)
    df = filter_rows(df, modes=modes, images=images, reasons=reasons)
    summary = summarize(df)
    if compare:
        summary["compare"] = compare_outdirs(summary)
    written = write(df, summary, Path(dest) if dest else paths[0])
    if export_fom is not None:
        written.append(export_figures(df, Path(export_fom)))
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()
    else:
        from rich.console import Console

        console = Console()
        render(summary, console)
        console.print(f"wrote {len(written)} files into {written[0].parent}")
    return 0
