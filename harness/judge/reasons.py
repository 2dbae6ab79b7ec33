"""The reasons as data: harness/data/reasons.yaml, loaded once.

Everything that knows about reasons reads this module: the classifier (signature rules, noise,
the meaning of typed faults), the report (order, colours, descriptions, which reasons count
toward a success rate) and predict.  Adding a reason is a change to reasons.yaml only.

    REASONS                  names in display order
    reason(name)             -> Reason(name, description, colour, rate)
    all_reasons()            -> the Reason of every name, in order
    counts_in_rate(name)     does a run with this reason count toward a mode's success rate?
    RULES, NEEDLES, NOISE    the compiled signature rules, their needles, the noise pattern
    rules_for(app)           -> (rules, needles): these rules, then the application's own
    fault_rule(kind)         -> FaultRule(kind, reason, detail)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from harness.application import Application
from harness.errors import HarnessError
from harness.judge.faults import KINDS
from harness.reason_names import MPI_SINGLETON, SUCCESS, TIMEOUT, UNKNOWN

__all__ = [
    "SUCCESS",
    "MPI_SINGLETON",
    "TIMEOUT",
    "UNKNOWN",
    "REASONS",
    "RULES",
    "NEEDLES",
    "NOISE",
    "Reason",
    "Rule",
    "FaultRule",
    "reason",
    "all_reasons",
    "counts_in_rate",
    "rules",
    "noise",
    "fault_rule",
    "rules_for",
]

DATA = "data/reasons.yaml"

# The reasons the classifier itself gives (completion, fallbacks, faults; the report's success
# rate): a reasons file must have them.  Every other reason comes from the file's rules and
# fault mapping alone; harness.reason_names spells every name for the code.
REQUIRED = (SUCCESS, MPI_SINGLETON, TIMEOUT, UNKNOWN)

STRENGTHS = ("strong", "weak")
FAULT_DETAILS = ("evidence", "signatures")

_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


@dataclass(frozen=True)
class Reason:
    name: str
    description: str
    colour: str  # "#rrggbb"
    rate: bool  # counts toward a mode's success rate


@dataclass(frozen=True)
class Rule:
    """One signature: `regex` (case-insensitive) names a line `reason`; it is tried only on
    lines holding one of `needles` (lower case)."""

    reason: str
    strength: str  # "strong" | "weak"
    needles: tuple[str, ...]
    regex: re.Pattern[str]

    @property
    def strong(self) -> bool:
        return self.strength == "strong"


@dataclass(frozen=True)
class FaultRule:
    """What a typed fault of `kind` means: `reason`, and how its detail is read: "evidence" (the
    detail is the evidence) or "signatures" (the rules name the detail when they can)."""

    kind: str
    reason: str
    detail: str


@dataclass(frozen=True)
class _Catalogue:
    reasons: tuple[Reason, ...]
    rules: tuple[Rule, ...]
    noise: re.Pattern[str]
    faults: dict[str, FaultRule]


def _fail(msg: str, where: str = DATA) -> HarnessError:
    return HarnessError(f"{where}: {msg}")


def _compile(pattern: object, where: str, source: str = DATA) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise _fail(f"{where}: 'regex' must be a non-empty string", source)
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise _fail(f"{where}: bad regex ({exc})", source) from None


def _parse_reasons(items: object) -> tuple[Reason, ...]:
    if not isinstance(items, list) or not items:
        raise _fail("'reasons' must be a non-empty list")
    out: list[Reason] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _fail(f"reasons[{i}] must be a mapping")
        name = item.get("name")
        desc = item.get("description")
        colour = item.get("colour")
        rate = item.get("rate")
        if not isinstance(name, str) or not name:
            raise _fail(f"reasons[{i}] needs a 'name'")
        if not isinstance(desc, str) or not desc.strip():
            raise _fail(f"reason {name!r} needs a 'description'")
        if not isinstance(colour, str) or not _COLOUR.fullmatch(colour):
            raise _fail(f"reason {name!r} needs a 'colour' like \"#2ca02c\"")
        if not isinstance(rate, bool):
            raise _fail(f"reason {name!r} needs 'rate: true|false'")
        out.append(Reason(name, " ".join(desc.split()), colour.lower(), rate))
    names = [r.name for r in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _fail(f"reasons listed twice: {', '.join(dupes)}")
    colours = [r.colour for r in out]
    shared = sorted({c for c in colours if colours.count(c) > 1})
    if shared:
        raise _fail(f"colours used by several reasons: {', '.join(shared)}")
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise _fail(f"the classifier needs the reasons {', '.join(missing)}")
    return tuple(out)


def _parse_rules(items: object, known: set[str], source: str = DATA) -> tuple[Rule, ...]:
    if not isinstance(items, list):
        raise _fail("'rules' must be a list", source)
    out: list[Rule] = []
    for i, item in enumerate(items):
        where = f"rules[{i}]"
        if not isinstance(item, dict):
            raise _fail(f"{where} must be a mapping", source)
        name = item.get("reason")
        if name not in known:
            raise _fail(f"{where}: unknown reason {name!r}", source)
        strength = item.get("strength", "strong")
        if strength not in STRENGTHS:
            raise _fail(f"{where}: strength must be one of {', '.join(STRENGTHS)}", source)
        needles = item.get("needles")
        if (
            not isinstance(needles, list)
            or not needles
            or not all(isinstance(n, str) and n and n == n.lower() for n in needles)
        ):
            raise _fail(
                f"{where}: 'needles' must be a non-empty list of lower-case strings", source
            )
        out.append(Rule(name, strength, tuple(needles), _compile(item.get("regex"), where, source)))
    return tuple(out)


def _parse_noise(items: object) -> re.Pattern[str]:
    if not isinstance(items, list):
        raise _fail("'noise' must be a list")
    patterns = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _fail(f"noise[{i}] must be a mapping")
        patterns.append(_compile(item.get("regex"), f"noise[{i}]").pattern)
    if not patterns:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def _parse_faults(items: object, known: set[str]) -> dict[str, FaultRule]:
    if not isinstance(items, dict):
        raise _fail("'faults' must be a mapping of fault kind -> {reason, detail}")
    out: dict[str, FaultRule] = {}
    for kind, body in items.items():
        if kind not in KINDS:
            raise _fail(f"faults: unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
        if not isinstance(body, dict) or body.get("reason") not in known:
            raise _fail(f"faults: {kind} needs a known 'reason'")
        detail = body.get("detail", "evidence")
        if detail not in FAULT_DETAILS:
            raise _fail(f"faults: {kind}: detail must be one of {', '.join(FAULT_DETAILS)}")
        out[kind] = FaultRule(kind, body["reason"], detail)
    missing = [k for k in KINDS if k not in out]
    if missing:
        raise _fail(f"faults: no meaning given for fault kinds {', '.join(missing)}")
    return out


def parse(data: object) -> _Catalogue:
    """Check and compile the content of a reasons file (the loaded YAML)."""
    if not isinstance(data, dict):
        raise _fail("expected a mapping")
    reasons = _parse_reasons(data.get("reasons"))
    known = {r.name for r in reasons}
    return _Catalogue(
        reasons=reasons,
        rules=_parse_rules(data.get("rules", []), known),
        noise=_parse_noise(data.get("noise", [])),
        faults=_parse_faults(data.get("faults", {}), known),
    )


@cache
def catalogue() -> _Catalogue:
    """The built-in reasons file, parsed once."""
    text = resources.files("harness").joinpath(DATA).read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return parse(yaml.load(text, Loader=loader))


def all_reasons() -> tuple[Reason, ...]:
    return catalogue().reasons


@cache
def _by_name() -> dict[str, Reason]:
    return {r.name: r for r in catalogue().reasons}


def reason(name: str) -> Reason:
    """The Reason called `name` (KeyError when there is none)."""
    try:
        return _by_name()[name]
    except KeyError:
        raise KeyError(f"unknown reason {name!r} (known: {', '.join(REASONS)})") from None


def counts_in_rate(name: str) -> bool:
    """Whether a run with reason `name` counts toward a mode's success rate.  A name this file
    does not know (an old record's) counts, as every run did before reasons had `rate`."""
    r = _by_name().get(name)
    return True if r is None else r.rate


def rules() -> tuple[Rule, ...]:
    return catalogue().rules


def noise() -> re.Pattern[str]:
    return catalogue().noise


def fault_rule(kind: str) -> FaultRule:
    """What a fault of `kind` means."""
    return catalogue().faults[kind]


REASONS: tuple[str, ...] = tuple(r.name for r in catalogue().reasons)
RULES: tuple[Rule, ...] = catalogue().rules
NEEDLES: tuple[str, ...] = tuple(sorted({n for r in RULES for n in r.needles}))
NOISE: re.Pattern[str] = catalogue().noise


# id(application) -> (it, its own rules parsed): kept with the application so that its id, the
# key, is never reused while the entry lives (the loader keeps each application once)
_OWN: dict[int, tuple[Application, tuple[Rule, ...]]] = {}


def rules_for(app: Application) -> tuple[tuple[Rule, ...], tuple[str, ...]]:
    """(rules, needles) for judging a run of `app`: the rules above, then the application's own
    (its file's `rules`, checked here: a reason they name must be one of REASONS)."""
    if not app.rules:
        return RULES, NEEDLES
    entry = _OWN.get(id(app))
    if entry is None:
        entry = app, _parse_rules(list(app.rules), set(REASONS), f"application {app.name}")
        _OWN[id(app)] = entry
    own = entry[1]
    extra = {n for r in own for n in r.needles} - set(NEEDLES)
    return RULES + own, NEEDLES + tuple(sorted(extra))
