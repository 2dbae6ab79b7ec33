"""Several outdirs side by side: each mode's rate in every other outdir against the first."""

from __future__ import annotations

from harness.errors import HarnessError
from harness.report.model import Comparison, Summary


def expected_rates(summary: Summary) -> dict[tuple[str, str], float]:
    """(outdir, mode) -> the expected rate a census gives it, where it gives one."""
    return {
        (e.outdir, e.mode): e.rate for e in (summary.expected or {}).values() if e.rate is not None
    }


def compare_outdirs(summary: Summary) -> dict[str, Comparison]:
    """Per mode, the success rate of every other outdir against the first (the baseline):
    delta = other - baseline, and whether their Wilson 95 % intervals overlap. Keyed by mode
    with two outdirs, by "other:mode" with more; null where a side has no counted run."""
    labels = [o.label for o in summary.outdirs]
    if len(labels) < 2:
        raise HarnessError("report: --compare needs at least two outdirs")
    by = {(m.outdir, m.mode): m for m in summary.modes.values()}
    expected = expected_rates(summary)
    base = labels[0]
    out: dict[str, Comparison] = {}
    for other in labels[1:]:
        names = {mode for (o, mode) in [*by, *expected] if o in (base, other)}
        for mode in summary.order.sort(names):
            a, b = by.get((base, mode)), by.get((other, mode))
            ra = a.rate if a else None
            rb = b.rate if b else None
            both = ra is not None and rb is not None
            overlap = None
            if both:
                (alo, ahi), (blo, bhi) = a.ci95, b.ci95
                overlap = alo <= bhi and blo <= ahi
            out[mode if len(labels) == 2 else f"{other}:{mode}"] = Comparison(
                mode=mode,
                baseline_outdir=base,
                other_outdir=other,
                baseline=ra,
                other=rb,
                delta=rb - ra if both else None,
                overlap=overlap,
                baseline_n=a.n if a else 0,
                other_n=b.n if b else 0,
                baseline_ci95=a.ci95 if a else None,
                other_ci95=b.ci95 if b else None,
                # a census's exact expectation, where the outdir holds one (e.g. a hybrid
                # census beside a bind one): comparable even without sampled runs
                baseline_expected=expected.get((base, mode)),
                other_expected=expected.get((other, mode)),
            )
    return out
