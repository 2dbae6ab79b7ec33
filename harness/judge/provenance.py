"""Whose line is it: the application's, or the infrastructure's around it?

A run's saved output mixes the application's lines with lines of the infrastructure that
started it: a Flux Operator MiniCluster's log holds the operator's wait script, environment
dumps, certificates, the `flux start ... flux submit ...` command line and Flux's broker and
module log lines around LAMMPS's output.  Those can carry failure words of their own (a helper
binary of the wrong architecture, a jobtap callback error) while the application ran fine, so
each line is tagged ``application`` or ``infrastructure`` (patterns: harness/data/
provenance.yaml):

* when the text holds a *submission line* (a wrapper echoing a ``flux start|submit|run|batch|
  alloc ...`` command, with or without the operator's "Submit Mode:" label), that line and
  everything before it are the infrastructure's;
* anywhere, lines of known infrastructure forms are the infrastructure's: Flux log lines
  (``broker.info[0]: ...``), Flux's own programs reporting about themselves (``flux: ...``,
  ``.../flux-broker: ...``), the operator's wait script and helpers, programs of the
  operator's Flux view, and Apptainer's INFO/WARNING/VERBOSE/DEBUG chatter;
* except, after the submission line, a loader's refusal (``version `GLIBC_2.34' not found
  (required by flux)``): a program of the stack that runs inside the image and cannot load
  there is the image's failure, whatever its name (``in_image`` patterns);
* every other line is the application's.

The classifier (classify.py) judges by the application's lines and lets infrastructure lines
decide only when the application's lines say nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

from harness.errors import HarnessError

__all__ = [
    "APPLICATION",
    "INFRASTRUCTURE",
    "LinePattern",
    "Provenance",
    "analyse",
    "application_start",
    "infrastructure_kind",
    "is_infrastructure",
    "line_patterns",
    "submission_line",
    "tag_lines",
]

APPLICATION = "application"
INFRASTRUCTURE = "infrastructure"

DATA = "data/provenance.yaml"


@dataclass(frozen=True)
class LinePattern:
    name: str
    why: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class _Patterns:
    submission_needle: str
    submission: re.Pattern[str]
    lines: tuple[LinePattern, ...]
    any_line: re.Pattern[str]  # the alternation of all `lines` (one search per line)
    in_image: re.Pattern[str]  # the alternation of `in_image`: the application's after all


def _compile(pattern: object, where: str) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise HarnessError(f"{DATA}: {where}: 'regex' must be a non-empty string")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise HarnessError(f"{DATA}: {where}: bad regex ({exc})") from None


def parse(data: object) -> _Patterns:
    """Check and compile the content of a provenance file (the loaded YAML)."""
    if not isinstance(data, dict):
        raise HarnessError(f"{DATA}: expected a mapping")
    sub = data.get("submission")
    if not isinstance(sub, dict) or not isinstance(sub.get("needle"), str) or not sub["needle"]:
        raise HarnessError(f"{DATA}: 'submission' needs a 'needle' and a 'regex'")
    submission = _compile(sub.get("regex"), "submission")
    lines = _line_patterns(data, "lines")
    in_image = _line_patterns(data, "in_image")
    return _Patterns(sub["needle"], submission, lines, _any(lines), _any(in_image))


def _line_patterns(data: dict, key: str) -> tuple[LinePattern, ...]:
    items = data.get(key, [])
    if not isinstance(items, list):
        raise HarnessError(f"{DATA}: '{key}' must be a list")
    out: list[LinePattern] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise HarnessError(f"{DATA}: {key}[{i}] needs a 'name' and a 'regex'")
        name = item["name"]
        why = " ".join(str(item.get("why", "")).split())
        out.append(LinePattern(name, why, _compile(item.get("regex"), f"{key}: {name}")))
    return tuple(out)


def _any(patterns: tuple[LinePattern, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p.regex.pattern})" for p in patterns) or r"(?!)")


@cache
def _patterns() -> _Patterns:
    text = resources.files("harness").joinpath(DATA).read_text(encoding="utf-8")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return parse(yaml.load(text, Loader=loader))


def line_patterns() -> tuple[LinePattern, ...]:
    """The patterns of lines that are the infrastructure's wherever they appear."""
    return _patterns().lines


def _line_at(text: str, i: int) -> tuple[int, int]:
    start = text.rfind("\n", 0, i) + 1
    end = text.find("\n", i)
    return start, len(text) if end < 0 else end


def submission_line(text: str) -> tuple[int, int] | None:
    """(start, end) offsets of the first line echoing the command that starts the application
    under Flux, or None.  Only lines holding the needle are tried."""
    pats = _patterns()
    needle = pats.submission_needle
    i = text.find(needle)
    while i >= 0:
        start, end = _line_at(text, i)
        line = text[start:end]
        if pats.submission.search(line):
            return start, end
        i = text.find(needle, end + 1) if end < len(text) else -1
    return None


def application_start(text: str) -> int:
    """Offset where the application's part of `text` begins: just after the submission line, or
    0 when there is none."""
    span = submission_line(text)
    if span is None:
        return 0
    return min(span[1] + 1, len(text))


def infrastructure_kind(line: str) -> str | None:
    """The name of the infrastructure line pattern `line` matches (wherever it appears), or
    None."""
    pats = _patterns()
    if not pats.any_line.search(line):
        return None
    for p in pats.lines:
        if p.regex.search(line):
            return p.name
    return None  # pragma: no cover (the alternation matched, so one of its parts does)


def is_infrastructure(line: str) -> bool:
    """Is `line` of a form that is the infrastructure's wherever it appears?"""
    return _patterns().any_line.search(line) is not None


@dataclass(frozen=True)
class Provenance:
    """The provenance of one text: `app_start` is where the application's part begins."""

    text: str
    app_start: int

    def source(self, start: int, line: str) -> str:
        """APPLICATION or INFRASTRUCTURE for `line`, which begins at offset `start`."""
        if start < self.app_start:
            return INFRASTRUCTURE
        if is_infrastructure(line) and not _patterns().in_image.search(line):
            return INFRASTRUCTURE
        return APPLICATION

    def lines(self) -> Iterator[tuple[str, int, str]]:
        """(source, start offset, line) for every line of the text, in order."""
        text = self.text
        pos = 0
        n = len(text)
        while pos < n:
            end = text.find("\n", pos)
            if end < 0:
                end = n
            line = text[pos:end]
            yield self.source(pos, line), pos, line
            pos = end + 1


def analyse(text: str) -> Provenance:
    return Provenance(text, application_start(text))


def tag_lines(text: str) -> list[tuple[str, str]]:
    """(source, line) for every line of `text`: source is "application" or "infrastructure"."""
    return [(src, line) for src, _, line in analyse(text).lines()]
