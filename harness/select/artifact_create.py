"""Create the compatibility artifact (a compspec CompatibilitySpec JSON) of a SIF image.

    harness artifact create IMAGE.sif [-o OUT.json] [--spec compspec/lab-spec.yaml] [--explain]

The artifact has the shape of compspec-go's `create artifact` output (see
/work/shared/anchors/lammps-matrix/specs/*.json): which attributes it holds
and which extractor field fills each is read from the creation spec
(compspec/lab-spec.yaml, compspec-go's `create` input format).

Every value comes from the image itself.  Files are read from the SIF's
squashfs partition without running the image (`apptainer sif list` for the
partition's offset, then `unsquashfs -o OFFSET -lls / -cat`): os-release,
debian_version, the ELF headers and DT_NEEDED entries of /usr/bin/lmp and the
libraries it needs, the dpkg database, the image's runscript and the
wrapper scripts its command goes through.  Only two values may run a program
of the image (`apptainer exec`), and only when the image's architecture is
the host's: the MPI version (`mpirun --version`; else from the dpkg
database) and, when the command turns KOKKOS on, KOKKOS' backend (`lmp -h`;
else from the binary's strings).

custom.gpu.available says whether the image's application, as the image
runs it, uses a GPU: its program hard-links a GPU runtime, or its command
asks LAMMPS for a GPU (see gpu_available).  The command is passed in
(`command=`, the lab's `command`) or read from the image's runscript.
"""

from __future__ import annotations

import argparse
import json
import platform
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError
from harness.mpi import parse_version as parse_mpi_version
from harness.select.elf import elf_info, microarchitecture
from harness.system import normalise_arch, parse_os_release

# Package data (compspec/lab-spec.yaml in the repository links to it): an installed harness
# has it too.
DEFAULT_SPEC = Path(__file__).resolve().parents[1] / "data" / "lab-spec.yaml"


LIB_DIRS = {
    "amd64": ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/lib64"],
    "arm64": ["/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib64", "/lib64"],
    "ppc64le": ["/usr/lib/powerpc64le-linux-gnu", "/lib/powerpc64le-linux-gnu", "/usr/lib64"],
}
COMMON_LIB_DIRS = ["/usr/local/lib", "/usr/lib", "/lib"]
# Libraries of the C/C++ runtime: never the MPI or the GPU runtime, skip reading them.
SYSTEM_LIBS = re.compile(
    r"^(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux.*|libz|libgomp)\.so"
)
MPI_LIBS = [
    (re.compile(r"^libmpich(cxx|fort)?\.so"), "mpich"),
    (re.compile(r"^libmpi\.so"), "OpenMPI"),
]
MPI_PACKAGES = {"OpenMPI": re.compile(r"^libopenmpi\d+$"), "mpich": re.compile(r"^libmpich\d+$")}

LS_LINE = re.compile(
    r"^(?P<mode>\S{10})\s+\S+\s+.*?\d{4}-\d\d-\d\d \d\d:\d\d squashfs-root(?P<path>/.*)?$"
)


class ArtifactError(HarnessError):
    pass


def _run(
    argv: list[str], *, timeout: float = 120, binary: bool = False
) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        text=not binary,
        check=False,
    )


# --------------------------------------------------------------------------
# Reading a SIF's root file system without running it


def host_arch() -> str:
    return normalise_arch(platform.machine())


def sif_partition(sif: Path) -> tuple[int, str]:
    """Offset and architecture of the SIF's squashfs system partition (`apptainer sif list`)."""
    proc = _run(["apptainer", "sif", "list", str(sif)])
    if proc.returncode != 0:
        raise ArtifactError(f"apptainer sif list {sif}: {proc.stderr.strip()}")
    for line in proc.stdout.splitlines():
        cols = [c.strip() for c in line.split("|")]
        if len(cols) >= 5 and cols[4].startswith("FS (Squashfs/*System"):
            start = int(cols[3].split("-")[0])
            arch = cols[4].rstrip(")").rsplit("/", 1)[-1]
            return start, arch
    raise ArtifactError(f"{sif}: no squashfs system partition in:\n{proc.stdout}")


class SifFiles:
    """Read-only view of the files in a SIF's squashfs root file system."""

    def __init__(self, sif: Path):
        self.sif = Path(sif)
        if not self.sif.is_file():
            raise ArtifactError(f"no such image file: {sif}")
        for tool in ("apptainer", "unsquashfs"):
            if not shutil.which(tool):
                raise ArtifactError(f"{tool} is missing: run scripts/install-deps.sh")
        self.offset, self.sif_arch = sif_partition(self.sif)
        self.entries = self._listing()

    def _listing(self) -> dict[str, tuple[str, str | None]]:
        proc = _run(
            ["unsquashfs", "-o", str(self.offset), "-lls", "-n", str(self.sif)], timeout=300
        )
        if proc.returncode != 0:
            raise ArtifactError(f"unsquashfs -lls {self.sif}: {proc.stderr.strip()}")
        entries: dict[str, tuple[str, str | None]] = {}
        for line in proc.stdout.splitlines():
            m = LS_LINE.match(line)
            if not m:
                continue
            kind, path = m["mode"][0], m["path"] or "/"
            target = None
            if kind == "l":
                path, _, target = path.partition(" -> ")
            entries[path] = (kind, target)
        if not entries:
            raise ArtifactError(f"{self.sif}: empty listing of its root file system")
        return entries

    def resolve(self, path: str, depth: int = 0) -> str | None:
        """The path with every symlink resolved inside the image, or None if absent."""
        if depth > 40:
            return None
        parts = [p for p in path.split("/") if p]
        current = "/"
        for i, part in enumerate(parts):
            candidate = posixpath.join(current, part)
            entry = self.entries.get(candidate)
            if entry is None:
                return None
            kind, target = entry
            if kind == "l":
                assert target is not None
                base = target if target.startswith("/") else posixpath.join(current, target)
                resolved = self.resolve(posixpath.normpath(base), depth + 1)
                if resolved is None:
                    return None
                rest = "/".join(parts[i + 1 :])
                return self.resolve(posixpath.join(resolved, rest), depth + 1) if rest else resolved
            current = candidate
        return current

    def is_file(self, path: str) -> bool:
        resolved = self.resolve(path)
        return resolved is not None and self.entries[resolved][0] == "-"

    def read_bytes(self, path: str) -> bytes:
        resolved = self.resolve(path)
        if resolved is None or self.entries[resolved][0] != "-":
            raise FileNotFoundError(path)
        proc = _run(
            ["unsquashfs", "-o", str(self.offset), "-cat", str(self.sif), resolved],
            timeout=300,
            binary=True,
        )
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip()
            raise ArtifactError(f"unsquashfs -cat {resolved}: {err}")
        return proc.stdout

    def read_text(self, path: str) -> str | None:
        try:
            return self.read_bytes(path).decode(errors="replace")
        except FileNotFoundError:
            return None


# --------------------------------------------------------------------------
# ELF


def library_closure(files: SifFiles, binary: str, arch: str) -> dict[str, str | None]:
    """DT_NEEDED closure of a binary in the image: library name -> path in the image
    (None when not found).  The C runtime's libraries are listed, not read."""
    data = files.read_bytes(binary)
    info = elf_info(data)
    if info is None:
        raise ArtifactError(f"{binary} in {files.sif} is not an ELF file")
    found: dict[str, str | None] = {}
    queue: list[tuple[str, list[str]]] = [(n, info.runpath) for n in info.needed]
    while queue:
        name, runpath = queue.pop(0)
        if name in found:
            continue
        path = None
        for d in [*runpath, *LIB_DIRS.get(arch, []), *COMMON_LIB_DIRS]:
            if d.startswith("/") and files.is_file(posixpath.join(d, name)):
                path = posixpath.join(d, name)
                break
        found[name] = path
        if path is None or SYSTEM_LIBS.match(name):
            continue
        lib = elf_info(files.read_bytes(path))
        if lib is not None:
            queue += [(n, lib.runpath) for n in lib.needed]
    return found


# --------------------------------------------------------------------------
# Extractors: the fields compspec/lab-spec.yaml may map


@dataclass
class Extraction:
    fields: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)

    def set(self, name: str, value: str | None, how: str) -> None:
        if value is not None and value != "":
            self.fields[name] = value
            self.provenance[name] = how


def dpkg_packages(text: str) -> dict[str, dict[str, str]]:
    """Installed (or unpacked) packages of a dpkg status file: name -> fields."""
    packages = {}
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        status = fields.get("Status", "")
        if "Package" in fields and (status.endswith(" installed") or status.endswith(" unpacked")):
            packages[fields["Package"]] = fields
    return packages


def upstream_version(debian_version: str) -> str:
    version = debian_version.split(":", 1)[-1]
    return version.rsplit("-", 1)[0] if "-" in version else version


def apptainer_exec(sif: Path, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return _run(["apptainer", "exec", "--contain", str(sif), *argv], timeout=timeout)


# --------------------------------------------------------------------------
# custom.gpu.available: does the image's application, as the image runs it, use a GPU?
#
# "yes" when the program the image runs -- its command, followed through wrapper scripts
# (`exec lmp -sf gpu "$@"`, `sh -c ...`) to the ELF binary -- hard-links a GPU compute
# runtime, or when that command asks LAMMPS for a GPU: the GPU package (`-sf gpu`,
# `-sf hybrid gpu omp`, `-pk gpu N`, or `package gpu`/`suffix gpu`/`*/gpu` styles in the
# input script it reads) or KOKKOS on GPUs (`-k on g N`, or `-k on`/`-sf kk` with a
# CUDA/HIP/SYCL KOKKOS).  A GPU-capable LAMMPS whose command never asks for a GPU runs on
# CPUs: "no".  The command is the caller's (the lab's `command`), else the image's
# runscript (the lab build writes the entry's command there; Apptainer writes an OCI
# image's ENTRYPOINT/CMD there), else /usr/bin/lmp.

# Runtimes that load or work only with a GPU driver present: CUDA and NVIDIA's driver
# libraries, ROCm/HIP, Intel Level Zero.  Not libOpenCL: the ICD loader loads and runs
# without any device (Debian 11's LAMMPS links it and runs on CPUs).
GPU_RUNTIMES = re.compile(
    r"^(libcuda|libcudart|libcublas\w*|libcufft\w*|libnvrtc|libnvidia-[\w-]+|libamdhip64"
    r"|libhip\w*|libhsa-runtime64|libze_loader)\.so"
)
IMAGE_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
SHELLS = {"sh", "bash", "dash", "ash", "ksh", "zsh"}
# Shell words that are not the program a wrapper hands over to.
SHELL_WORDS = {
    *("cd", "set", "export", "unset", "echo", "printf", ".", "source", ":", "true", "false"),
    *("test", "[", "[[", "if", "then", "else", "elif", "fi", "for", "while", "until", "do"),
    *("done", "case", "esac", "shift", "ulimit", "umask", "trap", "local", "return", "exit"),
    *("wait", "read", "eval", "{", "}"),
}
# A KOKKOS built for GPUs names its device execution space (plain or mangled).
GPU_KOKKOS = re.compile(
    rb"Kokkos::(?:Cuda|HIP|Experimental::(?:HIP|SYCL))\b|6Kokkos(?:4Cuda|3HIP|12Experimental4SYCL)"
)
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass
class CommandTrace:
    """A command followed through wrapper scripts to the program it runs."""

    argv: list[str]  # the arguments the program finally gets (argv[0] as named)
    program: str | None  # its path in the image when it is an ELF file
    via: list[str] = field(default_factory=list)  # the wrapper scripts passed through
    workdir: str | None = None  # a directory a wrapper changes to (`cd`)
    note: str = ""  # why the trace stopped before an ELF program


def image_which(files: SifFiles, name: str) -> str | None:
    if "/" in name:
        return name if files.is_file(name) else None
    return next((p for d in IMAGE_PATH if files.is_file(p := posixpath.join(d, name))), None)


def script_command(text: str, args: list[str]) -> tuple[list[str] | None, str | None]:
    """The command a shell script hands over to -- its `exec` line, else its last command
    line -- with "$@"/"$*" replaced by args, and the directory it changes to.  Apptainer's
    OCI runscript is read from its OCI_ENTRYPOINT/OCI_CMD values."""
    oci = dict(re.findall(r"^OCI_(ENTRYPOINT|CMD)='(.*)'\s*$", text, re.M))
    if oci:
        try:
            entry, cmd = shlex.split(oci.get("ENTRYPOINT", "")), shlex.split(oci.get("CMD", ""))
        except ValueError:
            return None, None
        return (entry + (args or cmd)) or None, None
    found, workdir = None, None
    for line in re.sub(r"\\\n", " ", text).splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if words[:1] == ["cd"] and len(words) > 1:
            workdir = words[1]
            continue
        is_exec = words[:1] == ["exec"]
        words = words[1:] if is_exec else words
        if words[:1] == ["env"]:
            words = words[1:]
        while words and (ENV_ASSIGNMENT.match(words[0]) or words[0] == "command"):
            words = words[1:]
        if not words or words[0] in SHELL_WORDS or "$" in words[0]:
            continue
        found = []
        for word in words:
            found += args if word in ("$@", "${@}", "$*", "${*}") else [word]
        if is_exec:
            break
    return found, workdir


def trace_command(files: SifFiles, argv: list[str], workdir: str | None = None) -> CommandTrace:
    """Follow argv through shell wrappers in the image to the ELF program it runs."""
    trace = CommandTrace(list(argv), None, workdir=workdir)
    for _ in range(10):
        while (
            len(trace.argv) > 2
            and posixpath.basename(trace.argv[0]) in SHELLS
            and trace.argv[1] == "-c"
        ):
            try:
                trace.argv = shlex.split(trace.argv[2])
            except ValueError:
                break
        if not trace.argv:
            trace.note = "an empty command"
            return trace
        path = image_which(files, trace.argv[0])
        if path is None:
            trace.note = f"{trace.argv[0]} is not in the image"
            return trace
        head = files.read_bytes(path)
        if head.startswith(b"\x7fELF"):
            trace.program = path
            return trace
        first = head.split(b"\n", 1)[0].decode(errors="replace")
        interpreter = first[2:].split() if first.startswith("#!") else []
        name = posixpath.basename(interpreter[0]) if interpreter else ""
        if name == "env" and len(interpreter) > 1:
            name = interpreter[1]
        trace.via.append(path)
        if name not in SHELLS:
            trace.note = f"{path} is not a shell script"
            return trace
        inner, cd = script_command(head.decode(errors="replace"), trace.argv[1:])
        if inner is None:
            trace.note = f"{path} runs no program"
            return trace
        trace.argv, trace.workdir = inner, cd or trace.workdir
    trace.note = "too many wrappers"
    return trace


def lammps_gpu_switches(args: list[str]) -> tuple[list[str], list[str]]:
    """LAMMPS command-line switches that ask for a GPU, and those that turn KOKKOS on
    without a GPU count (a GPU then depends on how KOKKOS was built)."""
    asks: list[str] = []
    kokkos: list[str] = []
    for i, arg in enumerate(args):
        rest = args[i + 1 :]
        if arg in ("-sf", "-suffix") and rest:
            styles = rest[1:3] if rest[0] == "hybrid" else rest[:1]
            shown = " ".join([arg, *rest[: len(styles) + (rest[0] == "hybrid")]])
            if "gpu" in styles:
                asks.append(shown)
            if "kk" in styles:
                kokkos.append(shown)
        elif arg in ("-pk", "-package") and rest[:1] == ["gpu"]:
            asks.append(" ".join([arg, *rest[:2]]))
        elif arg in ("-k", "-kokkos") and rest[:1] == ["on"]:
            pairs = []
            for key, value in zip(rest[1::2], rest[2::2], strict=False):
                if key.startswith("-"):
                    break
                pairs.append((key, value))
            options = dict(pairs)
            gpus = options.get("g", options.get("gpus"))
            if gpus is None or gpus.strip() == "0":  # a GPU KOKKOS still wants its device
                kokkos.append(f"{arg} on" + (f" g {gpus}" if gpus else ""))
            else:
                asks.append(f"{arg} on g {gpus}")
    return asks, kokkos


def input_gpu_commands(text: str) -> tuple[list[str], list[str]]:
    """Input-script commands that ask for the GPU package, and those that use KOKKOS."""
    asks: list[str] = []
    kokkos: list[str] = []
    for line in re.sub(r"&\s*\n", " ", text).splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        shown = " ".join(words[:4])
        package = words[0] == "package" and words[1:2] == ["gpu"]
        suffix = words[0] == "suffix" and "gpu" in words[1:3]
        if package or suffix or any(w.endswith("/gpu") for w in words[1:]):
            asks.append(shown)
        elif (words[0] == "suffix" and "kk" in words[1:3]) or any(
            w.endswith("/kk") for w in words[1:]
        ):
            kokkos.append(shown)
    return asks, kokkos


def input_file(args: list[str]) -> str | None:
    for flag, value in zip(args, args[1:], strict=False):
        if flag in ("-in", "-i"):
            return value
    return None


def gpu_available(
    sif: Path,
    files: SifFiles,
    arch: str,
    can_run: bool,
    command: list[str] | None = None,
    workdir: str | None = None,
) -> tuple[str, str]:
    """custom.gpu.available ("yes"/"no") of the image and how it was decided."""
    source = "command"
    if command is None:
        runscript = files.read_text("/.singularity.d/runscript")
        traced = script_command(runscript, []) if runscript else (None, None)
        command, workdir = traced[0], workdir or traced[1]
        source = "runscript"
    if not command:
        command, source = ["/usr/bin/lmp"], "default"
    trace = trace_command(files, command, workdir)
    shown = " ".join(command) + "".join(f" -> {p}" for p in trace.via)
    if trace.via:
        shown += " -> " + " ".join(trace.argv)
    if trace.program is None and not trace.via:
        return "no", f"{source} {shown}: {trace.note}"
    closure = library_closure(files, trace.program, arch) if trace.program else {}
    runtimes = [name for name in closure if GPU_RUNTIMES.match(name)]
    if runtimes:
        return "yes", f"{source} {shown}: {trace.program} needs {', '.join(runtimes)}"
    asks, kokkos = lammps_gpu_switches(trace.argv)
    script = input_file(trace.argv)
    if script and not script.startswith("/") and trace.workdir:
        script = posixpath.join(trace.workdir, script)
    text = files.read_text(script) if script and script.startswith("/") else None
    if text is not None:
        more_asks, more_kokkos = input_gpu_commands(text)
        asks += [f"{script}: {a}" for a in more_asks]
        kokkos += [f"{script}: {k}" for k in more_kokkos]
    if asks:
        return "yes", f"{source} {shown}: asks for a GPU ({'; '.join(asks)})"
    if kokkos and trace.program:
        backend = None
        if can_run:
            proc = apptainer_exec(sif, [trace.program, "-h"])
            m = re.search(r"^KOKKOS package API:(.*)$", proc.stdout, re.M)
            backend = m[1].split() if m else None
        if backend is None:
            blobs = [trace.program] + [
                p for n, p in closure.items() if p and re.match(r"^lib(lammps|kokkos)", n)
            ]
            found = any(GPU_KOKKOS.search(files.read_bytes(b)) for b in blobs)
            backend = ["CUDA"] if found else []
        on_gpu = [b for b in backend if b.upper() in ("CUDA", "HIP", "SYCL", "OPENMPTARGET")]
        if on_gpu:
            return "yes", f"{source} {shown}: KOKKOS ({'; '.join(kokkos)}) built for {on_gpu[0]}"
    program = trace.program or trace.note
    return "no", f"{source} {shown}: asks for no GPU and {program} needs no GPU runtime"


def extract(
    sif: Path,
    *,
    run: bool | None = None,
    command: list[str] | None = None,
    workdir: str | None = None,
) -> Extraction:
    """All fields the lab's extractors know for this image (see compspec/lab-spec.yaml).
    command/workdir: how the image is run (default: its runscript), for the GPU field."""
    files = SifFiles(sif)
    ex = Extraction()

    # system.os.*
    os_release = files.read_text("/etc/os-release") or files.read_text("/usr/lib/os-release")
    if os_release is None:
        raise ArtifactError(f"{sif}: no /etc/os-release in the image")
    osr = parse_os_release(os_release)
    ex.set("system.os.name", osr.get("PRETTY_NAME"), "/etc/os-release PRETTY_NAME")
    ex.set("system.os.vendor", osr.get("ID"), "/etc/os-release ID")
    ex.set("system.os.version", osr.get("VERSION_ID"), "/etc/os-release VERSION_ID")
    debian_version = files.read_text("/etc/debian_version") if osr.get("ID") == "debian" else None
    if debian_version and debian_version.strip():
        ex.set("system.os.release", debian_version.strip(), "/etc/debian_version")
    else:
        ex.set("system.os.release", osr.get("VERSION_ID"), "/etc/os-release VERSION_ID")

    # system.arch.name
    lmp = "/usr/bin/lmp" if files.is_file("/usr/bin/lmp") else None
    arch_binary = lmp or "/bin/sh"
    info = elf_info(files.read_bytes(arch_binary))
    if info is None:
        raise ArtifactError(f"{sif}: {arch_binary} is not an ELF file")
    arch = info.machine
    ex.set("system.arch.name", arch, f"ELF machine of {arch_binary}")
    how = "x86 ISA needed" if info.isa_needed else "no ISA level noted: the architecture's"
    ex.set("system.arch.microarchitecture", microarchitecture(info), f"{how} of {arch_binary}")
    can_run = (arch == host_arch()) if run is None else run

    status = files.read_text("/var/lib/dpkg/status") or ""
    packages = dpkg_packages(status)

    # library.mpi.* from what lmp links to
    closure = library_closure(files, lmp, arch) if lmp else {}
    variant = next((v for name in closure for pattern, v in MPI_LIBS if pattern.match(name)), None)
    if lmp and variant:
        lib = next(n for n in closure for p, v in MPI_LIBS if v == variant and p.match(n))
        ex.set("library.mpi.variant", variant, f"{lmp} needs {lib} (DT_NEEDED closure)")
    elif not lmp and files.is_file("/usr/bin/mpirun"):
        variant = "unknown"  # decided by mpirun --version below
    if variant:
        version = None
        if can_run and files.is_file("/usr/bin/mpirun"):
            proc = apptainer_exec(sif, ["mpirun", "--version"])
            parsed = None
            if proc.returncode == 0:
                parsed = parse_mpi_version(proc.stdout + proc.stderr)
            if parsed and (variant in ("unknown", parsed[0])):
                if variant == "unknown":
                    ex.set("library.mpi.variant", parsed[0], "mpirun --version in the image")
                variant, version = parsed
                ex.set("library.mpi.version", version, "mpirun --version in the image")
        if version is None and variant in MPI_PACKAGES:
            pkg = next((p for p in sorted(packages) if MPI_PACKAGES[variant].match(p)), None)
            if pkg:
                ex.set(
                    "library.mpi.version",
                    upstream_version(packages[pkg]["Version"]),
                    f"dpkg status: {pkg} {packages[pkg]['Version']}",
                )

    # custom.gpu.available: does the image's application, as the image runs it, use a GPU?
    gpu, how = gpu_available(sif, files, arch, can_run, command, workdir)
    ex.set("custom.gpu.available", gpu, how)
    return ex


# --------------------------------------------------------------------------
# The spec


def load_spec(path: Path | None = None) -> dict[str, Any]:
    path = Path(path) if path else DEFAULT_SPEC
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ArtifactError(f"cannot read the creation spec {path}: {exc}") from exc
    if not isinstance(spec, dict) or spec.get("kind") != "CompatibilitySpec":
        raise ArtifactError(f"{path}: not a CompatibilitySpec")
    for compat in spec.get("compatibilities") or []:
        if not isinstance(compat.get("attributes"), dict):
            raise ArtifactError(f"{path}: compatibility {compat.get('name')} has no attributes")
    return spec


def render(spec: dict[str, Any], fields: dict[str, str]) -> dict[str, Any]:
    """compspec-go's create: each attribute takes the value of the field it maps to."""
    compatibilities = []
    for compat in spec.get("compatibilities") or []:
        attributes = {
            attr: fields[source]
            for attr, source in sorted(compat["attributes"].items())
            if source in fields
        }
        compatibilities.append(
            {
                "name": compat["name"],
                "version": str(compat.get("version", "0.0.0")),
                "attributes": attributes,
            }
        )
    metadata = dict(spec.get("metadata") or {})
    if "schemas" in metadata:
        metadata["schemas"] = dict(sorted(metadata["schemas"].items()))
    return {
        "version": str(spec.get("version", "0.0.0")),
        "kind": "CompatibilitySpec",
        "metadata": metadata,
        "compatibilities": compatibilities,
    }


def create_artifact(
    sif: Path,
    spec_path: Path | None = None,
    *,
    command: list[str] | None = None,
    workdir: str | None = None,
) -> dict[str, Any]:
    """The CompatibilitySpec of the image (values read from the image; command/workdir:
    how the image is run, default its runscript)."""
    fields = extract(Path(sif), command=command, workdir=workdir).fields
    return render(load_spec(spec_path), fields)


def main(argv: list[str] | None = None, fetch: Callable[[str], Path] | None = None) -> int:
    """`harness artifact create`; `fetch` pulls an image reference to a local SIF (the run
    stage's SIF cache, passed in by the command line: selection never pulls images)."""
    parser = argparse.ArgumentParser(
        prog="harness artifact create", description="compatibility artifact of a SIF image"
    )
    parser.add_argument(
        "image",
        help="a SIF file, or an image reference to pull first (docker://..., oras://..., or "
        "registry/name:tag)",
    )
    parser.add_argument("-o", "--out", type=Path, help="write the JSON here (default stdout)")
    parser.add_argument("--spec", type=Path, default=None, help=f"creation spec ({DEFAULT_SPEC})")
    parser.add_argument(
        "--explain", action="store_true", help="print where each value came from (stderr)"
    )
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        ex = extract(_local(args.image, fetch))
        artifact = render(spec, ex.fields)
    except (HarnessError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(artifact, indent=2) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    if args.explain:
        for name, how in sorted(ex.provenance.items()):
            print(f"{name:22} = {ex.fields[name]!r:40} <- {how}", file=sys.stderr)
    return 0


def _local(image: str, fetch: Callable[[str], Path] | None) -> Path:
    if Path(image).is_file():
        return Path(image)
    if image.endswith(".sif") and ":" not in image.rsplit("/", 1)[-1]:
        raise ArtifactError(f"{image}: no such SIF file")
    if fetch is None:
        raise ArtifactError(f"{image}: not a SIF file (give a file, or use `harness artifact`)")
    return fetch(image)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
