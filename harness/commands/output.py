"""What every command prints the same way: notes and warnings on stderr, short image names."""

from __future__ import annotations

import sys


def say(line: str | None) -> None:
    if line:
        print(line, file=sys.stderr, flush=True)


def warn_skipped(skipped: dict[str, str]) -> None:
    for why in skipped.values():
        print(f"harness: warning: skipped: {why}", file=sys.stderr)


def short_name(image: str) -> str:
    """An image's tag (or file name): what tells images of one repository apart."""
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else last
