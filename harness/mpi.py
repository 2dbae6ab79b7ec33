"""MPI naming in one place: implementation names and aliases, launcher detection, sonames.

Every stage that says which MPI something is (host detection, artifact creation, matching,
the executors' bind model) asks this module, so one spelling rule holds everywhere.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

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


def ldconfig() -> str:
    """ldconfig's path: it lives in /sbin, which many users' PATH leaves out."""
    found = shutil.which("ldconfig") or shutil.which("ldconfig", path="/usr/sbin:/sbin")
    if found is None:
        raise HarnessError("bind model: no ldconfig to find the host's libraries with")
    return found


def host_library(soname: str) -> Path:
    """The host's file for a shared library soname, from the dynamic linker's cache."""
    out = subprocess.run([ldconfig(), "-p"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        m = re.match(rf"\s*{re.escape(soname)}\s+\(([^)]*)\)\s+=>\s+(\S+)", line)
        # ldconfig lists every ABI it knows; take this machine's 64-bit one.
        if m and ("x86-64" in m.group(1) or "AArch64" in m.group(1)):
            return Path(m.group(2))
    raise HarnessError(f"bind model: the host has no {soname} to bind into the container")


# -- PMI: how a resource manager's launcher bootstraps an image's MPI (harness/data/pmi.yaml) --


@cache
def pmi_rules() -> dict:
    """harness/data/pmi.yaml, checked: interfaces, per-MPI bootstrap rules, launchers."""
    text = resources.files("harness").joinpath("data/pmi.yaml").read_text()
    data = yaml.safe_load(text)
    where = "harness/data/pmi.yaml"
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), dict | list) for k in ("interfaces", "mpi", "launchers")
    ):
        raise HarnessError(f"{where}: expected interfaces, mpi and launchers")
    known = set(data["interfaces"])
    for rule in data["mpi"]:
        unknown = set(rule.get("bootstraps") or []) - known
        if not rule.get("implementation") or unknown:
            raise HarnessError(f"{where}: bad mpi rule {rule!r} (unknown: {sorted(unknown)})")
    for name, launcher in data["launchers"].items():
        for plugin, serves in (launcher.get("plugins") or {}).items():
            if set(serves or []) - known:
                raise HarnessError(f"{where}: {name} plugin {plugin} serves unknown interfaces")
    return data


def _version_matches(prefix: str, version: str) -> bool:
    want, have = str(prefix).split("."), version.split(".")
    return have[: len(want)] == want


def bootstraps(implementation: str | None, version: str | None = None) -> list[str]:
    """The PMI interfaces an MPI bootstraps from under direct launch, in order of preference;
    empty for an unknown implementation (or none)."""
    if not implementation:
        return []
    impl = normalise(implementation)
    rules = [r for r in pmi_rules()["mpi"] if normalise(r["implementation"]) == impl]
    if version:
        for rule in rules:
            prefixes = rule.get("versions")
            if not prefixes or any(_version_matches(p, version) for p in prefixes):
                return list(rule["bootstraps"])
    if not rules:
        return []
    shared = [i for i in rules[0]["bootstraps"] if all(i in r["bootstraps"] for r in rules)]
    return shared


def launcher_plugins(launcher: str) -> dict[str, list[str]]:
    """A launcher's PMI choices (e.g. Slurm's --mpi plugins) -> the interfaces each serves, in
    the order of preference."""
    launchers = pmi_rules()["launchers"]
    if launcher not in launchers:
        raise HarnessError(f"harness/data/pmi.yaml knows no launcher {launcher!r}")
    return {str(k): list(v or []) for k, v in (launchers[launcher].get("plugins") or {}).items()}


def choose_plugin(
    launcher: str, available: list[str], implementation: str | None, version: str | None
) -> tuple[str | None, str]:
    """The plugin (of those `available`) that serves what the MPI bootstraps from, and why;
    None when none does (or the image has no known MPI)."""
    wants = bootstraps(implementation, version)
    if not wants:
        what = f"{implementation} {version or ''}".strip() if implementation else "no MPI"
        return None, f"image MPI: {what}; no PMI rule applies"
    plugins = launcher_plugins(launcher)
    for interface in wants:
        for plugin, serves in plugins.items():
            if plugin in available and interface in serves:
                return plugin, (
                    f"image MPI {implementation} {version or '(version unknown)'} bootstraps "
                    f"from {', '.join(wants)}; {launcher} plugin {plugin} serves {interface}"
                )
    return None, (
        f"image MPI {implementation} {version or '(version unknown)'} bootstraps from "
        f"{', '.join(wants)}; no {launcher} plugin of {', '.join(available)} serves it"
    )


def bootstrappable(launcher: str, available: list[str]) -> list[str]:
    """The MPI implementations (as pmi.yaml spells them) that some available plugin of the
    launcher can bootstrap, at least in one of their versions."""
    plugins = launcher_plugins(launcher)
    served = {i for p, serves in plugins.items() if p in available for i in serves}
    found: list[str] = []
    for rule in pmi_rules()["mpi"]:
        if served & set(rule["bootstraps"]) and rule["implementation"] not in found:
            found.append(rule["implementation"])
    return found
