"""What a Flux job of the harness is made of: a jobspec every flux-core from 0.55 accepts, and
the host files that make MPI work under Flux inside an image (Flux's PMI library and the
libraries beside it), with the shell's PMI choices.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.mpi import OPENMPI_ROOT_ENV
from harness.run.executors.flux_api import bindings, builtin

# Directories never bound whole into a container: they hold the image's own C library.
SYSTEM_LIB_DIRS = {
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
}
TMPDIR = "{{tmpdir}}"  # the shell's template for the job's temporary directory


def jobspec_for(
    command: Sequence[str],
    *,
    num_tasks: int,
    cores_per_task: int = 1,
    num_nodes: int | None = None,
    duration: float | None = None,
    environment: Mapping[str, str],
    cwd: str,
    name: str,
    stdout: str | None = None,
    stderr: str | None = None,
):
    """A JobspecV1 that every flux-core from 0.55 on accepts.

    flux-core 0.55.0's `JobspecV1.from_command` takes only the resource shape (command,
    num_tasks, cores_per_task, gpus_per_task, num_nodes, exclusive: src/bindings/python/flux/
    job/Jobspec.py at tag v0.55.0); later releases also take duration, environment, cwd, name,
    output, error ... as keywords. Both have the setters and `setattr` used here, so the same
    code builds the same jobspec on either, whatever the installed bindings' version."""
    flux = bindings()
    js = flux.job.JobspecV1.from_command(
        list(command), num_tasks=num_tasks, cores_per_task=cores_per_task, num_nodes=num_nodes
    )
    if duration:
        js.duration = float(duration)
    js.environment = dict(environment)  # explicit: 0.55 starts a job with an empty one
    js.cwd = cwd
    js.setattr("system.job.name", name)
    if stdout is not None:
        js.stdout = stdout
    if stderr is not None:
        js.stderr = stderr
    return js


def job_environment(pmi: Path | None, extra: Mapping) -> dict[str, str]:
    """A job's whole environment, given explicitly (older flux-core starts a job with an empty
    one): this process's, Open MPI's root settings, FLUX_PMI_LIBRARY_PATH when Flux's PMI
    library is bound (flux-core 0.55's job shell does not export it, later ones do: a job
    submitted from outside `flux start`, a `kubectl exec` shell, would leave Open MPI without
    the library it loads for PMI), then the image's own settings."""
    env = {**os.environ, **OPENMPI_ROOT_ENV}
    if pmi is not None:
        env["FLUX_PMI_LIBRARY_PATH"] = str(pmi)
    return {**env, **{str(k): str(v) for k, v in extra.items()}}


def pmi_library_path() -> Path | None:
    """Flux's PMI-1 library (what the shell exports as FLUX_PMI_LIBRARY_PATH)."""
    if path := os.environ.get("FLUX_PMI_LIBRARY_PATH"):
        return Path(path)
    path = builtin("pmi_library_path")
    return Path(path) if path else None


def pmi_binds(pmi: Path) -> list[str]:
    """Apptainer --bind specs that make `pmi` and the libraries it needs loadable in an image.

    A flux-core install keeps libpmi.so in LIB/flux/ and its siblings (libflux-taskmap,
    libflux-idset) in LIB/: bind LIB read-only at the same path, and the library itself by
    name (a bind inside that bind, so that the spec names the file the image's MPI loads: the
    loader check of a failed job resolves it in the image). An install in a system directory is
    bound file by file (never over the image's own /usr/lib).
    """
    pmi = Path(pmi)
    lib = pmi.parent.parent if pmi.parent.name == "flux" else pmi.parent
    if str(lib) not in SYSTEM_LIB_DIRS and str(pmi.parent) not in SYSTEM_LIB_DIRS:
        return [f"{lib}:{lib}:ro", f"{pmi}:{pmi}:ro"]
    files = [pmi.resolve()]
    out = subprocess.run(["ldd", str(pmi)], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        parts = line.split("=>")
        if len(parts) == 2 and "libflux-" in parts[0]:
            target = parts[1].split("(")[0].strip()
            if target and target != "not found":
                files.append(Path(target))
    # the real file at each name the loader looks up; order kept, duplicates dropped
    return list(dict.fromkeys(f"{f.resolve()}:{f}:ro" for f in [pmi, *files[1:]]))


def shell_pmi_plugins(pluginpath: str | None) -> list[str]:
    """The Flux shell's PMI choices (`-o pmi=NAME`) a job of the instance can use: `simple`
    (built into the shell: the PMI-1 wire protocol and libpmi.so) always, `pmix` when the
    flux-pmix shell plugin is on the shell's plugin path (it installs DIR/pmix/pmix.so)."""
    plugins = ["simple"]
    for entry in (pluginpath or "").split(":"):
        where = Path(entry) if entry else None
        if where and (any(where.glob("pmix*.so")) or any(where.glob("pmix/*.so"))):
            plugins.append("pmix")
            break
    return plugins
