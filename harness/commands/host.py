"""`harness host`: this machine in compspec attribute keys."""

from __future__ import annotations

import sys

from harness.commands.options import executor_view, launcher_arg, view_arg


def add_parser(sub) -> None:
    p = sub.add_parser("host", help="describe this machine in compspec attribute keys")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    launcher_arg(p)
    view_arg(p, "describe the host")
    p.set_defaults(main=main)


def main(args) -> int:
    from harness.select import host

    desc = host.detect(args.launcher)
    if args.executor in ("local", "auto") and host.MPI_IMPL not in desc:
        print(
            f"harness: warning: no MPI launcher {args.launcher!r} on PATH: the MPI keys are "
            "left out (give --launcher, or describe another machine in a host file)",
            file=sys.stderr,
        )
    desc = executor_view(args, desc)
    if args.json:
        print(host.to_json(desc))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("attribute", "value", title="this host")
        for key, value in sorted(desc.items()):
            table.add_row(key, value)
        Console().print(table)
    return 0
