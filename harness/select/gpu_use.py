"""custom.gpu.available: does the image's application, as the image runs it, use a GPU?"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from harness.application import Application, GpuAsks
from harness.select.sif_files import SifFiles, apptainer_exec, library_closure

# "yes" when the program the image runs -- its command, followed through wrapper scripts
# (`exec PROGRAM -switch "$@"`, `sh -c ...`) to the ELF binary -- hard-links a GPU compute
# runtime, or when that command asks the application for a GPU, as its data says
# (harness/data/applications/NAME.yaml `gpu`: the switches and input-script commands naming
# GPU styles or packages, a device switch with a GPU count, or KOKKOS styles with a KOKKOS
# built for CUDA/HIP/SYCL).  A GPU-capable program whose command never asks for a GPU runs on
# CPUs: "no".  The command is the caller's (the lab's `command`), else the image's runscript
# (the lab build writes the entry's command there; Apptainer writes an OCI image's
# ENTRYPOINT/CMD there), else the application's program (its `run: program`).

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


def command_gpu_switches(args: list[str], asks_for: GpuAsks) -> tuple[list[str], list[str]]:
    """Command-line switches that ask for a GPU, and those that turn KOKKOS on without a GPU
    count (a GPU then depends on how KOKKOS was built)."""
    asks: list[str] = []
    kokkos: list[str] = []
    for i, arg in enumerate(args):
        rest = args[i + 1 :]
        if arg in asks_for.suffix_switches and rest:
            hybrid = rest[0] == asks_for.hybrid
            styles = rest[1:3] if hybrid else rest[:1]
            shown = " ".join([arg, *rest[: len(styles) + hybrid]])
            if any(s in asks_for.gpu_styles for s in styles):
                asks.append(shown)
            if any(s in asks_for.kokkos_styles for s in styles):
                kokkos.append(shown)
        elif arg in asks_for.package_switches and rest[:1] and rest[0] in asks_for.gpu_styles:
            asks.append(" ".join([arg, *rest[:2]]))
        elif arg in asks_for.device_switches and rest[:1] == [asks_for.device_on]:
            pairs = []
            for key, value in zip(rest[1::2], rest[2::2], strict=False):
                if key.startswith("-"):
                    break
                pairs.append((key, value))
            options = dict(pairs)
            gpus = next((options[k] for k in asks_for.device_counts if k in options), None)
            on = f"{arg} {asks_for.device_on}"
            if gpus is None or gpus.strip() == "0":  # a GPU KOKKOS still wants its device
                kokkos.append(on + (f" {asks_for.device_counts[0]} {gpus}" if gpus else ""))
            else:
                asks.append(f"{on} {asks_for.device_counts[0]} {gpus}")
    return asks, kokkos


def input_gpu_commands(text: str, asks_for: GpuAsks) -> tuple[list[str], list[str]]:
    """Input-script commands that ask for a GPU style or package, and those that use KOKKOS."""
    asks: list[str] = []
    kokkos: list[str] = []
    gpu, kk = asks_for.gpu_styles, asks_for.kokkos_styles
    for line in re.sub(r"&\s*\n", " ", text).splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        shown = " ".join(words[:4])
        named = words[1:3] if words[0] in asks_for.input_commands else []
        if any(w in gpu for w in named) or any(_styled(w, gpu) for w in words[1:]):
            asks.append(shown)
        elif any(w in kk for w in named) or any(_styled(w, kk) for w in words[1:]):
            kokkos.append(shown)
    return asks, kokkos


def _styled(word: str, suffixes: tuple[str, ...]) -> bool:
    """A style accelerated by one of the suffixes (`lj/cut/gpu`)."""
    return "/" in word and word.rsplit("/", 1)[1] in suffixes


def input_file(args: list[str], asks_for: GpuAsks) -> str | None:
    for flag, value in zip(args, args[1:], strict=False):
        if flag in asks_for.input_switches:
            return value
    return None


def gpu_available(
    sif: Path,
    files: SifFiles,
    arch: str,
    can_run: bool,
    app: Application,
    command: list[str] | None = None,
    workdir: str | None = None,
) -> tuple[str, str]:
    """custom.gpu.available ("yes"/"no") of the image running `app`, and how it was decided."""
    source = "command"
    if command is None:
        runscript = files.read_text("/.singularity.d/runscript")
        traced = script_command(runscript, []) if runscript else (None, None)
        command, workdir = traced[0], workdir or traced[1]
        source = "runscript"
    if not command and app.program:
        command, source = [app.program], f"{app.name}'s program"
    if not command:
        return "no", f"{app.name} names no program and the image no command"
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
    asks, kokkos = command_gpu_switches(trace.argv, app.gpu)
    script = input_file(trace.argv, app.gpu)
    if script and not script.startswith("/") and trace.workdir:
        script = posixpath.join(trace.workdir, script)
    text = files.read_text(script) if script and script.startswith("/") else None
    if text is not None:
        more_asks, more_kokkos = input_gpu_commands(text, app.gpu)
        asks += [f"{script}: {a}" for a in more_asks]
        kokkos += [f"{script}: {k}" for k in more_kokkos]
    if asks:
        return "yes", f"{source} {shown}: asks for a GPU ({'; '.join(asks)})"
    if kokkos and trace.program:
        backend = None
        helps, line = app.gpu.kokkos_help, app.gpu.kokkos_help_line
        if can_run and helps and line is not None:
            proc = apptainer_exec(sif, [trace.program, *helps])
            m = line.search(proc.stdout)
            backend = m[1].split() if m else None
        if backend is None:
            libs = app.gpu.kokkos_libraries
            blobs = [trace.program] + [
                p for n, p in closure.items() if p and libs is not None and libs.match(n)
            ]
            found = any(GPU_KOKKOS.search(files.read_bytes(b)) for b in blobs)
            backend = ["CUDA"] if found else []
        on_gpu = [b for b in backend if b.upper() in ("CUDA", "HIP", "SYCL", "OPENMPTARGET")]
        if on_gpu:
            return "yes", f"{source} {shown}: KOKKOS ({'; '.join(kokkos)}) built for {on_gpu[0]}"
    program = trace.program or trace.note
    return "no", f"{source} {shown}: asks for no GPU and {program} needs no GPU runtime"
