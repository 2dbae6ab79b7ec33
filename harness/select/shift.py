"""How much faster one set of runs is than another: the Hodges–Lehmann shift of their times,
with its distribution-free (Moses) interval. The report measures a mode against its baseline
mode with it (modes.yaml `against`), and a census each image against the next slower one.

A median and its interval say how fast one set of runs is; whether one is faster than another
is a two-sample question. Two medians' intervals can touch while every run of one mode is
faster than most runs of the other: a mode that picks at random among three images runs the
fastest of them about a third of the time, and its median's interval reaches down to its
second-fastest run.

The shift is the median of the m·n differences y_j − x_i between the run times (y) and their
baseline's (x): negative when y is faster. Its interval is [D(k), D(mn+1−k)], order
statistics of those differences, where k − 1 is the largest count c with P(U <= c) <= (1 −
confidence) / 2 for the Mann–Whitney U of two samples of the same continuous distribution
(exact for m·n <= EXACT, the normal approximation above). It holds the true shift with at least
that confidence when the two distributions differ by a shift, whatever their shape; where they
differ in shape too (a random pick is a mixture of images), an interval clear of zero still
says that one mode's run times are stochastically lower. With too few runs for the confidence
asked (3 against 3 reaches 90 %), the interval is the whole range and `coverage` says what it
covers.

The k-th difference is found without forming the m·n differences: bisection on the value,
counting the differences at or below it with one sorted search, until few enough remain to
sort. Above THIN runs a side, each side is first reduced to THIN evenly spaced order statistics
of its times (its quantiles): a report ranks every census image against the next, and a census
of 20,000 runs an image would otherwise take seconds. The interval is then that of THIN runs a
side, wider than all the runs would give; `n` and `n_baseline` still count them all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

EXACT = 2500  # m·n up to which U's null distribution is counted exactly (50 against 50)
THIN = 1000  # runs a side above which the shift is taken from that many order statistics


@dataclass(frozen=True)
class Shift:
    """Mode minus baseline, in the measure's units (seconds): negative is faster."""

    n_baseline: int
    n: int
    estimate: float
    low: float
    high: float
    coverage: float  # the probability that [low, high] holds the shift

    @property
    def verdict(self) -> str:
        """`faster` / `slower` when the interval is clear of zero, else `not told apart`."""
        if self.high < 0:
            return "faster"
        if self.low > 0:
            return "slower"
        return "not told apart"

    def to_json(self) -> dict:
        return {
            "n_baseline": self.n_baseline,
            "n": self.n,
            "estimate": self.estimate,
            "ci": [self.low, self.high],
            "coverage": self.coverage,
            "verdict": self.verdict,
        }


def shift(baseline: Sequence[float], values: Sequence[float], confidence: float = 0.95) -> Shift:
    """The Hodges–Lehmann shift of `values` against `baseline` and its interval."""
    x, y = _thinned(baseline), _thinned(values)
    if not len(x) or not len(y):
        raise ValueError("a shift needs values on both sides")
    m, n = len(x), len(y)
    total = m * n
    k, coverage = _order(m, n, confidence)
    middle = [(total + 1) // 2] if total % 2 else [total // 2, total // 2 + 1]
    estimate = sum(_kth(x, y, i) for i in middle) / len(middle)
    low, high = _kth(x, y, k), _kth(x, y, total + 1 - k)
    return Shift(
        len(baseline), len(values), float(estimate), float(low), float(high), round(coverage, 4)
    )


def _thinned(values: Sequence[float]):
    """The values sorted, or THIN evenly spaced order statistics of them when there are more."""
    import numpy as np

    ordered = np.sort(np.asarray(values, dtype=np.float64))
    if len(ordered) <= THIN:
        return ordered
    return ordered[np.linspace(0, len(ordered) - 1, THIN).round().astype(np.int64)]


def _order(m: int, n: int, confidence: float) -> tuple[int, float]:
    """k (1-based) of the interval [D(k), D(mn+1-k)] and its coverage, 1 - 2 P(U <= k - 1):
    the largest k whose coverage is still >= confidence, else 1 (the whole range)."""
    alpha = (1.0 - confidence) / 2
    if m * n <= EXACT:
        cdf = _null_cdf(m, n)
        below = [c for c in range((m * n + 1) // 2) if cdf[c] <= alpha]
        k = below[-1] + 1 if below else 1
        return k, 1 - 2 * cdf[k - 1]
    mean, sd = m * n / 2, math.sqrt(m * n * (m + n + 1) / 12)
    z = -_normal_quantile(alpha)
    k = max(1, math.floor(mean - 0.5 - z * sd) + 1)
    return k, 1 - math.erfc(-(k - 0.5 - mean) / (sd * math.sqrt(2)))


def _null_cdf(m: int, n: int) -> list[float]:
    """P(U <= c) for c = 0..mn, U the Mann–Whitney count of two samples of sizes m and n from one
    continuous distribution: the coefficients of the Gaussian binomial [m+n choose m]_q =
    prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i), counted in integers, over C(m+n, m)."""
    m, n = sorted((m, n))
    top = m * n
    counts = [1] + [0] * top
    for i in range(1, m + 1):
        step = n + i
        for c in range(top, step - 1, -1):  # times (1 - q^step); higher terms fall off
            counts[c] -= counts[c - step]
        for c in range(i, top + 1):  # over (1 - q^i): a series, exact below the cut
            counts[c] += counts[c - i]
    whole = math.comb(m + n, m)
    cdf, running = [], 0
    for c in counts:
        running += c
        cdf.append(running / whole)
    return cdf


def _normal_quantile(p: float) -> float:
    """The standard normal quantile (statistics.NormalDist, kept local: one call per report)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)


def _kth(x, y, k: int) -> float:
    """The k-th smallest (1-based) of the differences y_j - x_i, x and y sorted."""
    import numpy as np

    def at_most(t: float) -> int:  # differences <= t: x_i >= y_j - t
        return len(x) * len(y) - int(np.searchsorted(x, y - t, side="left").sum())

    # just outside the smallest and largest difference: y_j - t is rounded at the scale of the
    # values, so a bound at a difference itself may count it on the wrong side
    slack = 4 * np.finfo(np.float64).eps * max(abs(x[0]), abs(x[-1]), abs(y[0]), abs(y[-1]), 1.0)
    lo, hi = float(y[0] - x[-1]) - slack, float(y[-1] - x[0]) + slack
    below, up_to = 0, len(x) * len(y)
    while up_to - below > len(x) + len(y):
        mid = (lo + hi) / 2
        if not lo < mid < hi:  # a tie wider than any float step: the k-th is that value
            return hi
        count = at_most(mid)
        if count >= k:
            hi, up_to = mid, count
        else:
            lo, below = mid, count
    # the differences in (lo, hi], few enough to sort: x_i in [y_j - hi, y_j - lo)
    start = np.searchsorted(x, y - hi, side="left")
    stop = np.searchsorted(x, y - lo, side="left")
    lengths = stop - start
    j = np.repeat(np.arange(len(y)), lengths)
    offsets = np.arange(len(j)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    inside = np.sort(y[j] - x[start[j] + offsets])
    return float(inside[min(max(k - below - 1, 0), len(inside) - 1)])
