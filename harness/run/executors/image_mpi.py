"""The MPI an image's command runs with, read from its SIF without running it, and the PMI
plugin of srun that starts it (harness/data/pmi.yaml, through harness.mpi).

The program the command runs is followed through wrapper scripts (as the artifact's GPU field
is), the MPI library is found in that program's DT_NEEDED closure, and its version is the
version of the dpkg package that holds it: the same reading as `harness artifact create`.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from harness import application, mpi
from harness.errors import HarnessError
from harness.run.executors.base import Job

_MPI_CACHE: dict[tuple, tuple[str | None, str | None, str]] = {}
_MPI_LOCK = threading.Lock()


def srun_plugin(plugins: list[str], job: Job) -> tuple[str | None, dict]:
    """The `srun --mpi` plugin of `plugins` that starts the job's image's MPI (None: the
    cluster's default), and what decided it: the record's `pmi` entry."""
    impl, version, how = image_mpi(job.sif, job.command, job.workdir)
    plugin, why = mpi.choose_plugin("slurm", plugins, impl, version)
    return plugin, {
        "name": "pmi",
        "plugin": plugin,
        "mpi": impl,
        "mpi_version": version,
        "found": how,
        "why": why if plugin else why + ": srun without --mpi (the cluster's MpiDefault)",
    }


def image_mpi(
    sif: Path, command: Sequence[str], workdir: str | None
) -> tuple[str | None, str | None, str]:
    """(implementation, version, how) of the MPI the image's command runs with: its program
    (followed through wrapper scripts as the artifact's GPU field is), the MPI library in that
    program's DT_NEEDED closure, the version of the package that holds it. Read from the SIF
    without running it; cached per file (path, size, mtime) and command."""
    sif = Path(sif)
    try:
        st = sif.stat()
    except OSError as exc:
        return None, None, f"{sif}: {exc.strerror}"
    key = (str(sif.resolve()), st.st_size, st.st_mtime_ns, tuple(command), workdir)
    with _MPI_LOCK:
        if key in _MPI_CACHE:
            return _MPI_CACHE[key]
    found = _read_image_mpi(sif, list(command), workdir)
    with _MPI_LOCK:
        _MPI_CACHE[key] = found
    return found


def _read_image_mpi(
    sif: Path, command: list[str], workdir: str | None
) -> tuple[str | None, str | None, str]:
    # read-only use of the artifact's readers
    from harness.select import artifact_create as ac
    from harness.select import gpu_use, sif_files
    from harness.select.elf import elf_info

    try:
        files = sif_files.SifFiles(sif)
        trace = gpu_use.trace_command(files, command, workdir) if command else None
        program = trace.program if trace else None
        fallback = application.load().program  # a Job does not say its application
        if program is None and fallback and files.is_file(fallback):
            program = fallback
        if program is None:
            why = trace.note if trace else "no command"
            return None, None, f"no program to inspect ({why})"
        info = elf_info(files.read_bytes(program))
        if info is None:
            return None, None, f"{program} is not an ELF file"
        closure = sif_files.library_closure(files, program, info.machine)
        for name, path in closure.items():
            for pattern, variant in ac.MPI_LIBS:
                if pattern.match(name):
                    version, pkg = _package_version(files, ac, variant, path)
                    how = f"{program} needs {name}" + (f" ({pkg})" if pkg else "")
                    return variant, version, how
        return None, None, f"{program} links no MPI library"
    except (HarnessError, OSError, subprocess.TimeoutExpired) as exc:
        return None, None, f"cannot read {sif}: {exc}"


def _package_version(files, ac, variant: str, path: str | None) -> tuple[str | None, str]:
    """The upstream version of the dpkg package that holds `path` (else of the first package
    named like the variant's, e.g. libopenmpi40), and that package's name and version."""
    packages = ac.dpkg_packages(files.read_text("/var/lib/dpkg/status") or "")
    pattern = ac.MPI_PACKAGES.get(variant)
    names = sorted(p for p in packages if pattern and pattern.match(p))
    if path and len(names) > 1:  # e.g. bullseye's libopenmpi3 beside trixie's libopenmpi40
        wanted = {path, files.resolve(path) or path}
        for name in names:
            lists = [
                e
                for e in files.entries
                if e in (f"/var/lib/dpkg/info/{name}.list",)
                or (e.startswith(f"/var/lib/dpkg/info/{name}:") and e.endswith(".list"))
            ]
            if any(wanted & set((files.read_text(x) or "").splitlines()) for x in lists):
                names = [name]
                break
    if not names:
        return None, ""
    fields = packages[names[0]]
    return ac.upstream_version(fields["Version"]), f"dpkg {names[0]} {fields['Version']}"
