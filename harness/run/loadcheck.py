"""Cause, not symptom: can the image load what was bound into it?

When a job fails and the executor bound host files into the image (the host's MPI library in
the bind model, Flux's PMI library under Flux), the failure the job prints is often a symptom
(`PMI_Init ... Operation failed`, `MPI_Init` errors) of the bound library not loading in that
image: its C library is older, or a dependency is absent. This asks the image's own dynamic
loader, in the same image with the same binds, to resolve each bound library, and returns the
loader's own line when it cannot (`libjansson.so.4 => not found`,
`version 'GLIBC_2.34' not found`).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

LOADER_FAILURE = re.compile(r"=> not found|version [`'\"]?\S+['\"]? not found|cannot open shared")
TIMEOUT_S = 60.0


def bound_targets(binds: Sequence[str]) -> list[str]:
    """The in-container paths of bound shared libraries (`SRC:DEST[:opts]` specs)."""
    targets = []
    for spec in binds:
        parts = spec.split(":")
        dest = parts[1] if len(parts) > 1 else parts[0]
        if re.search(r"\.so(\.\d+)*$", dest):
            targets.append(dest)
    return targets


def loader_failure(runtime: str, sif: Path, binds: Sequence[str]) -> str | None:
    """The first line in which the image's loader fails to resolve a bound library, or None
    (everything loads, or the check itself could not run)."""
    targets = bound_targets(binds)
    if not targets:
        return None
    argv = [runtime, "exec"]
    for spec in binds:
        argv += ["--bind", spec]
    # `ldd` runs the image's own loader on each file; it is in every glibc userland.
    argv += [str(sif), "ldd", *targets]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None
    current = ""
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        if line.rstrip().endswith(":") and not line.startswith("\t"):
            current = line.strip().rstrip(":")  # ldd of several files names each first
            continue
        if LOADER_FAILURE.search(line):
            where = f" (loading {current})" if current else ""
            return line.strip() + where
    return None
