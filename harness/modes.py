"""Selection modes as data: each names the attribute keys an image must agree with the host on."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from harness.errors import HarnessError


@dataclass(frozen=True)
class Mode:
    name: str
    keys: tuple[str, ...]
    description: str = ""


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
        if not isinstance(body, dict) or not isinstance(body.get("keys"), list):
            raise HarnessError(f"{where}: mode {name!r} needs a 'keys' list")
        for key in body["keys"]:
            if key not in known:
                raise HarnessError(
                    f"{where}: mode {name!r} uses unknown attribute key {key!r} "
                    f"(known: {', '.join(sorted(known))})"
                )
        modes[str(name)] = Mode(str(name), tuple(body["keys"]), str(body.get("description", "")))
    return modes


@cache
def builtin() -> dict[str, Mode]:
    text = resources.files("harness").joinpath("data/modes.yaml").read_text()
    return _parse(yaml.safe_load(text), "built-in modes")


def load(mode_file: str | Path | None = None) -> dict[str, Mode]:
    """The built-in modes, plus (and overridden by) those of a user's mode file."""
    modes = dict(builtin())
    if mode_file is not None:
        path = Path(mode_file)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise HarnessError(f"mode file {path}: {exc.strerror}") from None
        except yaml.YAMLError:
            raise HarnessError(f"mode file {path}: not valid YAML") from None
        modes.update(_parse(data, f"mode file {path}"))
    return modes


def resolve(name: str, mode_file: str | Path | None = None) -> Mode:
    modes = load(mode_file)
    if name not in modes:
        raise HarnessError(f"unknown mode {name!r} (known: {', '.join(modes)})")
    return modes[name]
