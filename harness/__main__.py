"""The `harness` command (and `python -m harness`): the command line, with Ctrl-C answered in one
line even while the command line is still importing its modules or building its parser, where
harness.cli's own handler is not yet in place."""

import sys


def main() -> int:
    try:
        from harness.cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        print("harness: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
