"""The statistics of the report: counts and rates with Wilson's interval, the exact binomial range
of success counts a census predicts, medians.

Rates. A run counts toward a success rate unless its reason says otherwise (harness/data/
reasons.yaml, `rate: false`, e.g. `infra`: the infrastructure failed, not the image): `n` is the
number of runs that count, `runs` all of them, `excluded` the difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from harness.judge.reasons import SUCCESS, counts_in_rate
from harness.report.ordering import reason_order

Z95 = 1.959963984540054  # two-sided 95 % quantile of the standard normal
LEVEL = 0.95


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
    import numpy as np  # here, not above: the records' pass runs without it, at less memory

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


def counts(reasons: Mapping[str, int]) -> dict:
    """n (runs that count), success, runs, excluded, rate, ci95 and the reason counts (in the
    reasons' display order, zeros left out) of one group's reason counts."""
    ordered = {r: int(reasons[r]) for r in reason_order(reasons) if reasons.get(r, 0) > 0}
    runs = sum(ordered.values())
    n = sum(k for r, k in ordered.items() if counts_in_rate(r))
    ok = ordered.get(SUCCESS, 0)
    lo, hi = wilson(ok, n)
    return {
        "n": n,
        "success": ok,
        "runs": runs,
        "excluded": runs - n,
        "rate": ok / n if n else None,
        "ci95": [lo, hi],
        "reasons": ordered,
    }


def median(values: Sequence[float]) -> float | None:
    """The median, None without values."""
    import numpy as np

    return float(np.median(np.asarray(values, dtype=np.float64))) if len(values) else None


def number(value: object) -> float | None:
    """A duration or rate of a record as a float, else None: a missing figure, a string among
    them, or a value no clock or counter gives (negative, infinite, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None
