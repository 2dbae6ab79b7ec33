"""Selection modes as data: each names the attribute keys an image must agree with the host on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.files import json_escapes, read_input, syntax_error

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Choice:
    """How a mode chooses among its candidates instead of at random: by the census's `measure`
    on this host (harness.select.performance), else by the image's `fallback` attribute (a
    microarchitecture: the highest level first)."""

    measure: str
    fallback: str | None = None


@dataclass(frozen=True)
class Mode:
    name: str
    keys: tuple[str, ...]
    description: str = ""
    choose: Choice | None = None  # None: a seeded random pick among the candidates
    against: str | None = None  # the mode whose run times the report measures this one's against


def _choice(body: object, where: str, known: dict[str, str]) -> Choice | None:
    if body is None:
        return None
    measure = body.get("measure") if isinstance(body, dict) else None
    if not isinstance(measure, str) or not NAME.match(measure):
        raise HarnessError(f"{where}: choose needs a 'measure' (e.g. time_to_solution_s)")
    fallback = body.get("fallback")
    if fallback is not None and known.get(fallback) != "microarch":
        raise HarnessError(f"{where}: choose's fallback must be a microarchitecture key")
    return Choice(measure, fallback)


@cache
def comparators() -> dict[str, str]:
    """Known attribute key -> comparison kind (harness/data/attributes.yaml)."""
    text = resources.files("harness").joinpath("data/attributes.yaml").read_text()
    return dict(yaml.safe_load(text)["attributes"])


def _parse(data: object, where: str) -> dict[str, Mode]:
    if not isinstance(data, dict) or not isinstance(data.get("modes"), dict):
        raise HarnessError(f"{where}: expected a mapping with a 'modes' mapping")
    known = comparators()
    modes: dict[str, Mode] = {}
    for name, body in data["modes"].items():
        if not isinstance(name, str) or not NAME.match(name):
            raise HarnessError(
                f"{where}: mode name {name!r} must be letters, digits, '.', '_' or '-' "
                "(it names files in the outdir)"
            )
        if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
            raise HarnessError(f"{where}: mode {name!r} needs a 'keys' list")
        for key in body["keys"]:
            if not isinstance(key, str):
                raise HarnessError(
                    f"{where}: mode {name!r} lists a key that is not a string: {key!r}"
                )
            if key not in known:
                raise HarnessError(
                    f"{where}: mode {name!r} uses unknown attribute key {key!r} "
                    f"(known: {', '.join(sorted(known))})"
                )
        against = body.get("against")
        if against is not None and (not isinstance(against, str) or against == name):
            raise HarnessError(f"{where}: mode {name!r}: 'against' must name another mode")
        modes[str(name)] = Mode(
            str(name),
            tuple(body["keys"]),
            str(body.get("description", "")),
            _choice(body.get("choose"), f"{where}: mode {name!r}", known),
            against,
        )
    return modes


def _check_against(modes: dict[str, Mode], where: str) -> dict[str, Mode]:
    for mode in modes.values():
        if mode.against is not None and mode.against not in modes:
            raise HarnessError(
                f"{where}: mode {mode.name!r} is measured against {mode.against!r}, "
                f"which is not a mode (known: {', '.join(modes)})"
            )
    return modes


@cache
def builtin() -> dict[str, Mode]:
    text = resources.files("harness").joinpath("data/modes.yaml").read_text()
    return _check_against(_parse(yaml.safe_load(text), "built-in modes"), "built-in modes")


def load(mode_file: str | Path | None = None) -> dict[str, Mode]:
    """The built-in modes, plus (and overridden by) those of a user's mode file."""
    modes = dict(builtin())
    if mode_file is not None:
        path = Path(mode_file)
        try:
            data = yaml.safe_load(json_escapes(read_input(path, "mode file"), "mode file", path))
        except yaml.YAMLError as exc:
            raise syntax_error(exc, "mode file", path) from None
        modes.update(_parse(data, f"mode file {path}"))
        _check_against(modes, f"mode file {path}")
    return modes


def order(mode_file: str | Path | None = None) -> list[str]:
    """Mode names in the gradient's order: the built-in ones as modes.yaml lists them, then a
    mode file's own in its order."""
    return list(load(mode_file))


def rank(name: str, mode_file: str | Path | None = None) -> tuple[int, str]:
    """Sort key for display: known modes in gradient order, others after, alphabetically."""
    known = order(mode_file)
    return (known.index(name), "") if name in known else (len(known), name)


def resolve(name: str, mode_file: str | Path | None = None) -> Mode:
    modes = load(mode_file)
    if name not in modes:
        raise HarnessError(f"unknown mode {name!r} (known: {', '.join(modes)})")
    return modes[name]
