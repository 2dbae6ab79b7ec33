"""This machine described in compspec's attribute keys, or a description read from a file."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.matching import normalise_arch
from harness.modes import comparators

ARCH = "io.archspec.cpu.target"
GPU = "org.supercontainers.hardware.gpu.available"
MPI_IMPL = "org.supercontainers.mpi.implementation"
MPI_VERSION = "org.supercontainers.mpi.version"

# Devices a GPU driver creates: NVIDIA, AMD ROCm. Their presence is what a container can use.
GPU_DEVICES = ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd")


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def launcher_mpi(launcher: str) -> tuple[str, str]:
    """(implementation, version) of an MPI launcher, spelled as compspec-go spells them."""
    path = shutil.which(launcher)
    if path is None:
        raise HarnessError(f"MPI launcher {launcher!r} not found on PATH")
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    text = proc.stdout + proc.stderr
    if m := re.search(r"\(Open MPI\)\s+(\S+)", text):
        return "OpenMPI", m.group(1)
    if "HYDRA" in text and (m := re.search(r"Version:\s+(\S+)", text)):
        return "mpich", m.group(1)
    if m := re.search(r"Intel\(R\) MPI Library.*?Version\s+(\S+)", text):
        return "intel-mpi", m.group(1).rstrip(",")
    raise HarnessError(f"MPI launcher {launcher!r}: cannot tell its implementation from --version")


def glibc_version() -> str:
    name, version = platform.libc_ver()
    return version if name == "glibc" else ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def detect(launcher: str) -> dict[str, str]:
    osr = os_release()
    impl, version = launcher_mpi(launcher)
    return {
        ARCH: normalise_arch(platform.machine()),
        "io.archspec.cpu.model": cpu_model(),
        "org.supercontainers.os.vendor": osr.get("ID", ""),
        "org.supercontainers.os.version": osr.get("VERSION_ID", ""),
        "org.supercontainers.os.name": osr.get("PRETTY_NAME", ""),
        GPU: "yes" if any(os.path.exists(d) for d in GPU_DEVICES) else "no",
        MPI_IMPL: impl,
        MPI_VERSION: version,
        "org.supercontainers.libc.version": glibc_version(),
        "org.supercontainers.kernel.version": platform.release(),
    }


def load(path: str | Path) -> dict[str, str]:
    """A host description file (JSON or YAML, flat mapping of known attribute keys)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
    except OSError as exc:
        raise HarnessError(f"host file {path}: {exc.strerror}") from None
    except yaml.YAMLError:
        raise HarnessError(f"host file {path}: neither JSON nor YAML") from None
    if not isinstance(data, dict):
        raise HarnessError(f"host file {path}: expected a flat mapping of attribute keys")
    unknown = sorted(str(k) for k in data if k not in comparators())
    if unknown:
        raise HarnessError(f"host file {path}: unknown host key(s): {', '.join(unknown)}")
    bad = sorted(str(k) for k, v in data.items() if isinstance(v, dict | list))
    if bad:
        raise HarnessError(f"host file {path}: value of {', '.join(bad)} must be a scalar")
    host = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in data.items()}
    if isinstance(data.get(GPU), bool):
        host[GPU] = "yes" if data[GPU] else "no"
    return host


def resolve(host_file: str | Path | None, launcher: str) -> dict[str, str]:
    return load(host_file) if host_file else detect(launcher)


def to_json(host: dict[str, str]) -> str:
    return json.dumps(host, indent=2, sort_keys=True)
