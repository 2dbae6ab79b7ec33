"""This machine described in compspec's attribute keys, or a description read from a file."""

from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.files import json_escapes, read_input, syntax_error
from harness.mpi import launcher_mpi
from harness.select.modes import comparators
from harness.system import normalise_arch, parse_os_release

ARCH = "io.archspec.cpu.target"
# archspec's name of the CPU's microarchitecture (x86_64_v4, zen3, haswell, neoverse_v1...);
# an image's is the level its program was built for (matching: archspec's order)
MICROARCH = "io.archspec.cpu.microarchitecture"
VENDOR = "org.supercontainers.os.vendor"
VERSION = "org.supercontainers.os.version"
GPU = "org.supercontainers.hardware.gpu.available"
MPI_IMPL = "org.supercontainers.mpi.implementation"
MPI_VERSION = "org.supercontainers.mpi.version"
LIBC = "org.supercontainers.libc.version"
# Keys that describe a host but are never compared (no mode can name them): what a scheduler's
# launcher offers. A host description and a host file may hold them.
SLURM_MPI_PLUGINS = "org.slurm.mpi.plugins"  # `srun --mpi=list`, comma-separated
PMI = "org.supercontainers.mpi.pmi"  # the PMI interfaces the launcher serves (data/pmi.yaml)
DESCRIPTIVE = (SLURM_MPI_PLUGINS, PMI)

# Devices a GPU driver creates: NVIDIA, AMD ROCm. Their presence is what a container can use,
# once the runtime is told to pass the driver in (Apptainer: --nv, --rocm).
GPU_RUNTIME_FLAGS = {"/dev/nvidiactl": "--nv", "/dev/nvidia0": "--nv", "/dev/kfd": "--rocm"}
GPU_DEVICES = tuple(GPU_RUNTIME_FLAGS)


def gpu_runtime_flags(exists=os.path.exists) -> list[str]:
    """The runtime flags that give a container this host's GPU driver (none without a GPU)."""
    return list(dict.fromkeys(f for d, f in GPU_RUNTIME_FLAGS.items() if exists(d)))


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    return parse_os_release(path.read_text())


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


def microarchitecture() -> str:
    """This CPU's microarchitecture as archspec (the library Spack uses) names it from
    /proc/cpuinfo: a named one (zen3, icelake) or, for a CPU it cannot name (a virtual CPU that
    reports only "AMD EPYC"), the generic level of its features (x86_64_v4)."""
    import archspec.cpu

    return archspec.cpu.host().name


def detect(launcher: str) -> dict[str, str]:
    """This machine; without the MPI launcher, the MPI keys are left out (a mode that needs
    them then says so)."""
    osr = os_release()
    mpi = launcher_mpi(launcher) if shutil.which(launcher) else None
    host = {
        ARCH: normalise_arch(platform.machine()),
        MICROARCH: microarchitecture(),
        "io.archspec.cpu.model": cpu_model(),
        VENDOR: osr.get("ID", ""),
        VERSION: osr.get("VERSION_ID", ""),
        "org.supercontainers.os.name": osr.get("PRETTY_NAME", ""),
        GPU: "yes" if any(os.path.exists(d) for d in GPU_DEVICES) else "no",
        LIBC: glibc_version(),
        "org.supercontainers.kernel.version": platform.release(),
    }
    if mpi:
        host[MPI_IMPL], host[MPI_VERSION] = mpi
    return host


def load(path: str | Path) -> dict[str, str]:
    """A host description file (JSON or YAML, flat mapping of known attribute keys)."""
    path = Path(path)
    text = read_input(path, "host file")
    try:
        # Every scalar as written: an unquoted version 22.10 must not become the float 22.1.
        data = yaml.load(json_escapes(text, "host file", path), Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:  # YAML is a superset of JSON
        raise syntax_error(exc, "host file", path, "is neither JSON nor YAML") from None
    if not isinstance(data, dict):
        raise HarnessError(f"host file {path}: expected a flat mapping of attribute keys")
    unknown = sorted(str(k) for k in data if k not in comparators() and k not in DESCRIPTIVE)
    if unknown:
        raise HarnessError(f"host file {path}: unknown host key(s): {', '.join(unknown)}")
    bad = sorted(str(k) for k, v in data.items() if isinstance(v, dict | list))
    if bad:
        raise HarnessError(f"host file {path}: value of {', '.join(bad)} must be a scalar")
    return {str(k): str(v) for k, v in data.items()}


def resolve(host_file: str | Path | None, launcher: str) -> dict[str, str]:
    return load(host_file) if host_file else detect(launcher)


def with_launcher_mpi(
    host: dict[str, str], implementations: list[str], described: dict[str, str]
) -> dict[str, str]:
    """The host as a scheduler's job sees it: its MPI is the set of implementations the
    scheduler's launcher can bootstrap (comma-separated; the matcher's `mpi` comparison takes
    a set), with `described` (DESCRIPTIVE keys: the launcher's PMI plugins and interfaces)
    beside it. There is no single MPI version then: the MPI launcher's version is dropped."""
    unknown = sorted(set(described) - set(DESCRIPTIVE))
    if unknown:
        raise HarnessError(f"not descriptive host keys: {', '.join(unknown)}")
    desc = {k: v for k, v in host.items() if k != MPI_VERSION}
    desc[MPI_IMPL] = ",".join(implementations)
    desc.update(described)
    return desc


def to_json(host: dict[str, str]) -> str:
    return json.dumps(host, indent=2, sort_keys=True)
