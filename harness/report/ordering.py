"""The order things are shown in: modes as the user gave them, reasons as the reasons data lists
them, images by the OS version in their tag.

Modes are never sorted by name: a user lists them on purpose (a gradient of ever smarter
selection). The order is the `--mode` filters as given; without them harness/data/modes.yaml's,
then a `--mode-file`'s own in its order, then the modes a census.json names (the mode file the
census ran with), then any other mode in the order its first record appears.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.judge.reasons import REASONS, reason
from harness.select import modes as mode_data

# Colours for reasons harness/data/reasons.yaml does not know (an old record's).
EXTRA_COLOURS = ("#393b79", "#843c39", "#7b4173", "#637939", "#3182bd", "#e6550d")


@dataclass(frozen=True)
class ModeOrder:
    """Display order of modes; `key` sorts a mode by its place in `names`."""

    names: tuple[str, ...]

    @classmethod
    def build(
        cls,
        given: Sequence[str] | None = None,
        mode_file: str | Path | None = None,
        later: Iterable[str] = (),
    ) -> ModeOrder:
        """`given` (the --mode filters) when there are any, else the modes files' order; then
        `later` (census.json's modes, then modes in the order their records appear)."""
        first = list(given) if given else mode_data.order(mode_file)
        return cls(tuple(dict.fromkeys([*first, *later])))

    def key(self, mode: str) -> int:
        """The mode's place; a mode the order does not know goes last (a stable sort keeps
        those in the order they came in)."""
        try:
            return self.names.index(mode)
        except ValueError:
            return len(self.names)

    def sort(self, modes: Iterable[str]) -> list[str]:
        return sorted(modes, key=self.key)


# --------------------------------------------------------------------------- reasons


def reason_order(reasons: Iterable[str]) -> list[str]:
    """REASONS in their order (harness/data/reasons.yaml), then unknown ones alphabetically."""
    present = set(reasons)
    return list(REASONS) + sorted(present - set(REASONS))


def reason_help(name: str) -> str | None:
    try:
        return reason(name).description
    except KeyError:
        return None


def reason_colour(name: str, extra: list[str] | None = None) -> str:
    """The reason's colour from the reasons data; a fallback colour for an unknown reason."""
    try:
        return reason(name).colour
    except KeyError:
        extra = extra or [name]
        i = extra.index(name) if name in extra else 0
        return EXTRA_COLOURS[i % len(EXTRA_COLOURS)]


# --------------------------------------------------------------------------- images


_ARCH = {"amd64", "arm64", "x86_64", "aarch64", "ppc64le", "s390x", "riscv64", "i386", "386"}
_OS_NAMES = (
    "ubuntu",
    "debian",
    "rockylinux",
    "rocky",
    "almalinux",
    "alma",
    "centos",
    "alpine",
    "fedora",
    "rhel",
    "ubi",
    "sles",
    "opensuse",
    "leap",
    "amazonlinux",
    "oraclelinux",
)
_BARE_VERSION = re.compile(r"\d+(?:\.\d+)*")
_OS_VERSION = re.compile(rf"(?:{'|'.join(_OS_NAMES)})(\d+(?:\.\d+)*)", re.IGNORECASE)


def image_tag(name: str) -> str:
    """The tag of an image reference (`registry/repo:tag` -> `tag`), else its last component."""
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else last


def image_os_version(name: str) -> tuple[tuple[int, ...], str] | None:
    """(OS version, the rest of the tag) parsed from an image's tag, or None.

    The version is the first dash- or underscore-separated token that is a bare number
    (`openmpi-debian-gpu-12-amd64` -> 12, `ubuntu-22.04` -> 22.04), else the first token that
    is an OS name glued to its version (`rocky8`, `ubuntu22.04`); architectures never count.
    """
    tokens = [t for t in re.split(r"[-_]", image_tag(name)) if t]
    found = None
    for i, tok in enumerate(tokens):
        if tok.lower() not in _ARCH and _BARE_VERSION.fullmatch(tok):
            found = (i, tok)
            break
    if found is None:
        for i, tok in enumerate(tokens):
            m = _OS_VERSION.fullmatch(tok)
            if m:
                found = (i, m[1])
                break
    if found is None:
        return None
    i, version = found
    rest = "-".join(tokens[:i] + tokens[i + 1 :])
    return tuple(int(x) for x in version.split(".")), rest


def image_sort_key(name: str) -> tuple:
    """Images ordered by OS version, then the rest of the tag (the variant); images without a
    version in their tag after those, by name."""
    parsed = image_os_version(name)
    if parsed is None:
        return (1, (), "", name)
    return (0, parsed[0], parsed[1], name)


def image_matches(name: str, wanted: Iterable[str]) -> bool:
    """An image filter names an image by its full reference or by its tag."""
    return name in wanted or image_tag(name) in wanted
