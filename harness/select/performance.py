"""How fast each image runs here: medians with intervals from repeated runs, and the order a
performance-aware mode chooses in.

The measures are time-to-solution (`time_to_solution_s`: the job's run time, launch to exit, as
the executor measured it: what a user waits for once the image is on the node) and every
numeric figure of merit the application reports (harness/data/applications/*.yaml). Only
successful runs count: a failed run's time says nothing about speed.

Each image's median comes with a distribution-free interval: the order statistics x(j) and x(k)
of its n values that enclose the population median with probability at least `confidence`
(the binomial(n, 1/2) argument; no assumption about the shape of the distribution). With too
few runs for the confidence asked (n <= 5 for 95 %), the interval is the whole range and
`coverage` says what it really covers (75 % for 3 runs, 94 % for 5).

Whether one image is faster than the next is a two-sample question (harness/select/shift.py):
the shift of the next image's times against this one's, clear of zero or not; two medians'
intervals may overlap while every pair of runs says the same.

`ranking()` is what `descriptive-performance` chooses by (harness/data/modes.yaml): the images
a census on this host saw succeed, fastest median first, then those it never saw succeed; with
no census for this host, the highest microarchitecture level an image was built for first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from harness import application, records
from harness.errors import HarnessError
from harness.reason_names import SUCCESS
from harness.select.shift import Shift, shift

TIME_TO_SOLUTION = "time_to_solution_s"
# What a census must share with the run that uses its speeds: otherwise they measured another
# way of running the images.
SAME_RUN = ("executor", "launcher", "mpi_model", "np")


@dataclass(frozen=True)
class Spread:
    """A median and its interval, from n values."""

    n: int
    median: float
    low: float
    high: float
    coverage: float  # the probability that [low, high] holds the population median


@dataclass(frozen=True)
class Ranked:
    """An image in a ranking by speed, and how much slower the next image runs: the shift of
    its times against this one's (None for the slowest, and beside a single run)."""

    name: str
    spread: Spread
    to_next: Shift | None

    @property
    def clear_of_next(self) -> bool | None:
        """Whether the next image is slower for sure (the shift's interval above zero)."""
        return None if self.to_next is None else self.to_next.low > 0


def fastest_first(speeds: dict[str, Spread], times: dict[str, Sequence[float]]) -> list[Ranked]:
    """Images by their median time-to-solution (`speeds`, the spreads of their runs' `times`),
    lowest first (ties keep the given order), each with the next image's shift."""
    order = sorted(speeds, key=lambda name: speeds[name].median)
    ranked = []
    for i, name in enumerate(order):
        after = order[i + 1] if i + 1 < len(order) else None
        few = after is None or min(len(times[name]), len(times[after])) < 2
        ranked.append(Ranked(name, speeds[name], None if few else shift(times[name], times[after])))
    return ranked


def median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        raise ValueError("the median of no values")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@cache  # an image's measures share n; one binomial coefficient of 20,000 is milliseconds
def _interval(n: int, confidence: float) -> tuple[int, float]:
    """The j of the interval [x(j), x(n-1-j)] (0-based) and its coverage of the median,
    1 - 2 P(B <= j), B ~ binomial(n, 1/2): the largest j up to the middle whose coverage is
    still >= confidence, else 0. P(B <= j) * 2**n is counted exactly from the middle outwards
    (a few sqrt(n) terms for a usual confidence; counted from 0, a spread of 100,000 values
    took hours)."""
    total = 2**n
    top = max(0, (n - 2) // 2)  # the largest j with j < n - 1 - j
    term = math.comb(n, top)
    inside, c = 0, term  # inside: 2**n - 2 P(B <= top), the one or two middle terms
    for i in range(top + 1, n - top):
        c = c * (n - i + 1) // i
        inside += c
    j = top
    while j > 0 and 1 - 2 * ((total - inside) // 2 / total) < confidence:
        inside += 2 * term
        term = term * j // (n - j + 1)
        j -= 1
    coverage = 1 - 2 * ((total - inside) // 2 / total) if n > 1 else 0.0
    return j, coverage


def spread(values: Iterable[float], confidence: float = 0.95) -> Spread:
    """The median of `values` and the narrowest symmetric order-statistic interval that covers
    the population median with probability >= confidence (the whole range when n is too small
    for that, with its real coverage)."""
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        raise ValueError("a spread of no values")
    j, coverage = _interval(n, confidence)
    return Spread(n, median(ordered), ordered[j], ordered[n - 1 - j], round(coverage, 4))


def value(record: records.Record, measure: str) -> float | None:
    """The record's value of a measure: time-to-solution or a numeric figure of merit."""
    if measure == TIME_TO_SOLUTION:
        return record.timings.run_s
    got = record.figures.get(measure)
    return float(got) if isinstance(got, int | float) and not isinstance(got, bool) else None


def better_first(measure: str, app_name: str = application.DEFAULT) -> bool:
    """True when a higher value of the measure is better (a figure of merit its application
    says improves upward: `better: higher`), False for times and figures it does not know."""
    app = application.known(app_name)
    return app is not None and app.higher_is_better(measure)


def per_image(recs: Iterable[records.Record], measure: str) -> dict[str, list[float]]:
    """Image -> the measure's values in its successful records (images without one absent)."""
    values: dict[str, list[float]] = {}
    for rec in recs:
        if rec.reason == SUCCESS and rec.image is not None:
            v = value(rec, measure)
            if v is not None:
                values.setdefault(rec.image, []).append(v)
    return values


@dataclass(frozen=True)
class Census:
    """A census's view of speed: its host, how it ran, and each image's spread."""

    outdir: Path
    host: dict[str, str]
    run: dict[str, object]  # SAME_RUN fields of its records
    speeds: dict[str, Spread]  # image -> spread of the measure
    measure: str
    application: str = application.DEFAULT  # what the census ran (its records')
    values: dict[str, list[float]] = field(default_factory=dict)  # image -> the measure's values


def read_census(outdir: Path, measure: str = TIME_TO_SOLUTION) -> Census | None:
    """The census kept in an outdir (census.json and its records), or None when it has none."""
    path = Path(outdir) / records.CENSUS_FILE
    if not path.is_file():
        return None
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: not a census file ({exc})") from None
    recs = [r for r in records.read(Path(outdir)) if r.mode == records.CENSUS]
    if not recs or not isinstance(body, dict) or not isinstance(body.get("host"), dict):
        return None
    run = {k: getattr(recs[0], k) for k in SAME_RUN}
    values = per_image(recs, measure)
    speeds = {image: spread(vs) for image, vs in values.items()}
    return Census(Path(outdir), body["host"], run, speeds, measure, recs[0].application, values)


def census_fits(census: Census, host: dict[str, str], keys: Iterable[str], run: dict) -> str:
    """Why this census cannot rank images for this run ('' when it can): another host on the
    mode's keys, or another way of running the images."""
    for key in keys:
        if census.host.get(key) != host.get(key):
            return f"its host has {key}={census.host.get(key)}, this one {host.get(key)}"
    for key in SAME_RUN:
        if run.get(key) is not None and census.run.get(key) != run[key]:
            return f"it ran with {key} {census.run.get(key)}, this run with {run[key]}"
    return ""


def ranking(
    candidates: list[str], census: Census | None, levels: dict[str, str | None]
) -> list[str]:
    """The candidates in the order a performance-aware mode prefers them: with a census, those
    it saw succeed by their median (best first), then the rest; without one, by the
    microarchitecture level each was built for (`levels`: image -> archspec name), highest
    first. Ties keep the manifest's order."""
    if census is not None:
        high = better_first(census.measure, census.application)

        def key(name: str) -> tuple[int, float]:
            s = census.speeds.get(name)
            if s is None:
                return (1, 0.0)
            return (0, -s.median if high else s.median)

        return sorted(candidates, key=key)
    return sorted(candidates, key=lambda name: -level_depth(levels.get(name)))


def level_depth(name: str | None) -> int:
    """How far a microarchitecture is from its family's root in archspec's tree (x86_64 0,
    x86_64_v4 3, zen4 more): a higher level runs on fewer hosts and may run faster."""
    if not name:
        return -1
    import archspec.cpu

    target = archspec.cpu.TARGETS.get(name)
    return len(target.ancestors) if target is not None else -1
