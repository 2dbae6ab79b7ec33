"""MPI naming in one place: implementation names and aliases, launcher detection, sonames.

Every stage that says which MPI something is (host detection, artifact creation, matching,
the executors' bind model) asks this module, so one spelling rule holds everywhere.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from harness.errors import HarnessError

# Spellings met in artifacts and launchers -> the canonical lower-case name.
ALIASES = {
    "open mpi": "openmpi",
    "ompi": "openmpi",
    "intelmpi": "intel-mpi",
    "impi": "intel-mpi",
}
# The MPI library an application links, by implementation (compspec-go's spelling).
SONAMES = {"OpenMPI": "libmpi.so.40", "mpich": "libmpich.so.12", "intel-mpi": "libmpi.so.12"}
# Open MPI refuses root unless told; the lab and CI run everything as root.
OPENMPI_ROOT_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def normalise(value: str) -> str:
    """Canonical form of an implementation name: case-insensitive, aliases folded."""
    value = value.strip().lower()
    return ALIASES.get(value, value)


def parse_version(output: str) -> tuple[str, str] | None:
    """(implementation, version) from an MPI launcher's `--version`, read the way compspec-go's
    library extractor reads it (and spelled as it spells them)."""
    for line in output.splitlines():
        line = line.strip()
        if "Open MPI" in line:
            return "OpenMPI", line.split(" ")[-1]
        if "Intel" in line:
            m = re.search(r"Version (\S+) ", line)
            return ("intel-mpi", m[1]) if m else None
        if "Version:" in line:
            return "mpich", line.split(" ")[-1]
    return None


def launcher_mpi(launcher: str) -> tuple[str, str]:
    """(implementation, version) of the host's MPI launcher."""
    path = shutil.which(launcher)
    if path is None:
        raise HarnessError(f"MPI launcher {launcher!r} not found on PATH")
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise HarnessError(
            f"MPI launcher {launcher!r}: `--version` did not answer in 30 s"
        ) from None
    found = parse_version(proc.stdout + proc.stderr)
    if found is None:
        raise HarnessError(
            f"MPI launcher {launcher!r}: cannot tell its implementation from --version"
        )
    return found


def host_library(soname: str) -> Path:
    """The host's file for a shared library soname, from the dynamic linker's cache."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        m = re.match(rf"\s*{re.escape(soname)}\s+\(([^)]*)\)\s+=>\s+(\S+)", line)
        # ldconfig lists every ABI it knows; take this machine's 64-bit one.
        if m and ("x86-64" in m.group(1) or "AArch64" in m.group(1)):
            return Path(m.group(2))
    raise HarnessError(f"bind model: the host has no {soname} to bind into the container")
