"""The `harness` command line. Bad input ends in one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from harness.commands import (
    artifact,
    candidates,
    classify,
    explain,
    host,
    lab,
    manifest,
    predict,
    prepull,
    records,
    report,
    run,
    status,
)
from harness.errors import HarnessError, Terminated
from harness.usage import Parser

# In the order `harness --help` lists them (run adds `census` after `run`).
COMMANDS = (
    host,
    candidates,
    explain,
    predict,
    run,
    status,
    prepull,
    classify,
    report,
    records,
    artifact,
    manifest,
    lab,
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("compat-harness")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """argparse's version action, the version looked up only when asked: importlib.metadata
    costs about 45 ms, on every command otherwise."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs):
        kwargs.setdefault("help", "show program's version number and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"harness {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="harness", description=__doc__)
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "rest"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.rest = extra + args.rest  # options before the first positional, e.g. --help
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.main(args)
    except Terminated:
        print("harness: terminated; jobs in flight were stopped; rerun to resume", file=sys.stderr)
        return 143
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `harness ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("harness: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
