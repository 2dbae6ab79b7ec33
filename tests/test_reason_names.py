"""The reason-name constants are exactly the reasons of harness/data/reasons.yaml."""

from __future__ import annotations

from harness import reason_names
from harness.judge.reasons import REASONS


def constants() -> dict[str, str]:
    return {k: v for k, v in vars(reason_names).items() if k.isupper() and isinstance(v, str)}


def test_constants_are_the_data_reasons():
    names = constants().values()
    assert sorted(set(REASONS) - set(names)) == [], "reasons in the data without a constant"
    assert sorted(set(names) - set(REASONS)) == [], "constants naming no reason of the data"
    assert len(names) == len(REASONS), "two constants name the same reason"


def test_each_constant_is_named_after_its_reason():
    assert {k: v for k, v in constants().items() if k != v.upper().replace("-", "_")} == {}
