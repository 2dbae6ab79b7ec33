"""What a lab build shows: the status of each image it built and the table of the results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.lab.matrix import LabImage

console = Console(stderr=True)


def status_text(result: dict[str, Any]) -> str:
    if not result["rebuilt"]:
        return "up to date"
    stages = result.get("stages") or {}
    return "built: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items())


def print_results(
    todo: list[LabImage],
    results: dict[str, dict[str, Any]],
    failed: dict[str, str],
    total: float,
    jobs: int,
    cache: Path,
) -> None:
    """The build's table (each image's times, size and key, or why it failed), then the
    report's path and each failure."""
    table = Table(title=f"lab images ({total:.0f} s, {jobs} at a time)")
    for col in ("tag", "this run", "last build", "rootfs s", "SIF s", "SIF MB", "key"):
        table.add_column(col)
    for image in todo:
        r = results.get(image.tag)
        if r:
            table.add_row(
                image.tag,
                f"{r['seconds']:.0f} s" if r["rebuilt"] else "cached",
                f"{r['last_build_seconds'] or 0:.0f} s",
                f"{r['rootfs_seconds'] or 0:.0f}",
                f"{r['sif_seconds'] or 0:.0f}",
                f"{r['sif_bytes'] / 1e6:.0f}",
                r["key"][:12],
            )
        else:
            table.add_row(image.tag, "[red]FAILED[/]", "", "", "", "", failed.get(image.tag, ""))
    # Without a terminal rich assumes 80 columns: give the table room instead of cutting tags.
    (console if console.is_terminal else Console(stderr=True, width=130)).print(table)
    console.print(f"report: {cache / 'build-report.json'}", soft_wrap=True)
    for tag, why in failed.items():
        console.print(f"[red]{tag}[/]: {why}")
