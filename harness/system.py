"""Facts about an operating system image, read the same way for the host and for a container."""

from __future__ import annotations

import re

ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armv8": "arm64",
    "i686": "386",
}


def normalise_arch(value: str) -> str:
    value = value.strip().lower()
    return ARCH_ALIASES.get(value, value)


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value pairs of an os-release file, quotes removed."""
    values = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            values[m[1]] = m[2].strip().strip('"').strip("'")
    return values
