"""harness.select.shift: the Hodges–Lehmann shift of one set of run times against another and
its distribution-free interval, checked against the textbook critical values of the
Mann–Whitney U, a count of every arrangement, and the sorted m·n differences themselves."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from harness.select.shift import EXACT, _kth, _null_cdf, _order, shift


@pytest.mark.parametrize(
    ("m", "n", "critical"),
    # two-sided 5 % critical values of U (reject when U <= critical), e.g. Siegel & Castellan
    [(5, 5, 2), (8, 10, 17), (10, 10, 23), (6, 9, 10), (20, 20, 127)],
)
def test_interval_order_from_the_critical_values_of_u(m, n, critical):
    k, coverage = _order(m, n, 0.95)
    assert k == critical + 1  # [D(k), D(mn+1-k)]: k - 1 differences lie below
    assert 0.95 <= coverage < 0.97


def test_null_distribution_equals_a_count_of_every_arrangement():
    for m, n in [(1, 1), (2, 5), (3, 4), (4, 4), (5, 3)]:
        counts = [0] * (m * n + 1)
        for xs in itertools.combinations(range(m + n), m):
            ys = [r for r in range(m + n) if r not in xs]
            counts[sum(y < x for x in xs for y in ys)] += 1
        assert _null_cdf(m, n) == pytest.approx(np.cumsum(counts) / math.comb(m + n, m))


def test_too_few_runs_give_the_whole_range_with_what_it_covers():
    s = shift([3.0, 1.0, 2.0], [1.5, 2.5, 0.5])
    assert (s.low, s.high) == (0.5 - 3.0, 2.5 - 1.0)  # D(1) and D(9)
    assert s.coverage == pytest.approx(1 - 2 / math.comb(6, 3))  # 90 %
    assert s.verdict == "not told apart"


def test_normal_approximation_agrees_with_the_exact_count_past_the_switch():
    m, n = math.isqrt(EXACT), math.isqrt(EXACT) + 1  # just past EXACT: the approximation
    cdf = _null_cdf(m, n)
    exact_k = max(c for c in range(m * n) if cdf[c] <= 0.025) + 1
    k, coverage = _order(m, n, 0.95)
    assert abs(k - exact_k) <= 1
    assert coverage == pytest.approx(1 - 2 * cdf[k - 1], abs=0.002)


def test_kth_difference_equals_the_sorted_differences():
    rng = random.Random(5)
    for _ in range(400):
        m, n = rng.randint(1, 30), rng.randint(1, 30)
        digits = rng.choice([0, 1, 3])  # 0 and 1: many ties
        scale = rng.choice([1e-3, 1.0, 1e4])
        x = np.sort([scale * round(rng.gauss(5, 1), digits) for _ in range(m)])
        y = np.sort([scale * round(rng.gauss(5.3, 1), digits) for _ in range(n)])
        d = np.sort(np.subtract.outer(y, x).ravel())
        for k in {1, m * n, rng.randint(1, m * n)}:
            assert _kth(x, y, k) == pytest.approx(d[k - 1], abs=1e-9 * scale)


def test_a_mode_that_picks_the_fastest_against_a_random_pick():
    """The shape of the demo: every run of the chooser on the fastest image; the random pick on
    that image 4 times in 10, on two slower ones otherwise. The medians' intervals touch; the
    shift tells them apart."""
    rng = random.Random(1)

    def runs(image_s: list[float]) -> list[float]:
        return [t * (1 + rng.uniform(-0.02, 0.02)) for t in image_s]

    chooser = runs([1.6] * 10)
    picked = runs([1.6] * 4 + [1.77] * 3 + [2.0] * 3)
    s = shift(picked, chooser)
    assert s.verdict == "faster" and s.high < 0
    assert s.estimate == pytest.approx(-0.17, abs=0.03)
    d = np.sort(np.subtract.outer(chooser, picked).ravel())
    assert (s.low, s.high) == (d[23], d[100 - 24])  # [D(24), D(77)]
    reverse = shift(chooser, picked)
    assert (reverse.low, reverse.high, reverse.verdict) == (-s.high, -s.low, "slower")


def test_the_same_distribution_is_not_told_apart_most_of_the_time():
    """Not a fixed outcome: the interval holds zero in at least 95 % of repeated samples from one
    distribution (checked here over 300, with room for chance)."""
    rng = np.random.default_rng(3)
    held = sum(
        shift(rng.lognormal(0.5, 0.1, 12), rng.lognormal(0.5, 0.1, 15)).verdict == "not told apart"
        for _ in range(300)
    )
    assert held >= 0.92 * 300


def test_large_samples_from_their_quantiles():
    """Above THIN runs a side the shift is taken from THIN order statistics of each side: about
    the whole samples' estimate, a wider interval; n still counts every run."""
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(3.0, 0.25, 3000), rng.lognormal(3.0, 0.25, 2500) + 0.5
    s = shift(a, b)
    assert (s.n_baseline, s.n) == (3000, 2500)
    x, y = np.sort(a), np.sort(b)
    k, _ = _order(3000, 2500, 0.95)
    whole = (_kth(x, y, k), _kth(x, y, 3000 * 2500 + 1 - k))
    middle = 3000 * 2500 // 2
    assert s.estimate == pytest.approx((_kth(x, y, middle) + _kth(x, y, middle + 1)) / 2, abs=0.05)
    assert s.low < whole[0] < whole[1] < s.high
    assert s.low < 0.5 < s.high and s.verdict == "slower"


def test_no_values_on_one_side_is_an_error():
    with pytest.raises(ValueError, match="both sides"):
        shift([], [1.0])
