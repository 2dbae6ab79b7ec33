"""Command-line parsers whose usage errors are one line, like every other error of the harness."""

from __future__ import annotations

import argparse


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports a usage error in one line naming the cause (the whole
    usage is one `--help` away) and exits 2; its sub-parsers are of the same kind."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _SubParsers)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"harness: error: {message} (see {self.prog} --help)\n")


class _SubParsers(argparse._SubParsersAction):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("parser_class", Parser)
        super().__init__(*args, **kwargs)


def count(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a count of runs, ranks, ...)."""
    value = int(text)  # argparse turns a ValueError into "invalid count value: ..."
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value
