"""Create the compatibility artifact (a compspec CompatibilitySpec JSON) of a SIF image.

    harness artifact create IMAGE.sif [-o OUT.json] [--spec compspec/lab-spec.yaml] [--explain]
                            [--application NAME|FILE]

The artifact has the shape of compspec-go's `create artifact` output (see
/work/shared/anchors/lammps-matrix/specs/*.json): which attributes it holds
and which extractor field fills each is read from the creation spec
(compspec/lab-spec.yaml, compspec-go's `create` input format).

Every value comes from the image itself.  Files are read from the SIF's
squashfs partition without running the image (harness.select.sif_files):
os-release, debian_version, the ELF headers and DT_NEEDED entries of the application's program
(its `run: program` in harness/data/applications/NAME.yaml) and the
libraries it needs, the dpkg database, the image's runscript and the
wrapper scripts its command goes through.  Only two values may run a program
of the image (`apptainer exec`), and only when the image's architecture is
the host's: the MPI version (`mpirun --version`; else from the dpkg
database) and, when the command turns KOKKOS on, KOKKOS' backend (the
program's build summary, as the application's `gpu` section says; else from
the binary's strings).

custom.gpu.available says whether the image's application, as the image
runs it, uses a GPU: its program hard-links a GPU runtime, or its command
asks the application for a GPU (see harness.select.gpu_use).  The command is passed in
(`command=`, the lab's `command`) or read from the image's runscript.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import application
from harness.application import Application
from harness.errors import HarnessError
from harness.mpi import parse_version as parse_mpi_version
from harness.select.elf import elf_info, microarchitecture
from harness.select.gpu_use import gpu_available
from harness.select.sif_files import (
    ArtifactError,
    SifFiles,
    apptainer_exec,
    host_arch,
    library_closure,
)
from harness.system import parse_os_release

# Package data (compspec/lab-spec.yaml in the repository links to it): an installed harness
# has it too.
DEFAULT_SPEC = Path(__file__).resolve().parents[1] / "data" / "lab-spec.yaml"


MPI_LIBS = [
    (re.compile(r"^libmpich(cxx|fort)?\.so"), "mpich"),
    (re.compile(r"^libmpi\.so"), "OpenMPI"),
]
MPI_PACKAGES = {"OpenMPI": re.compile(r"^libopenmpi\d+$"), "mpich": re.compile(r"^libmpich\d+$")}


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


def extract(
    sif: Path,
    *,
    run: bool | None = None,
    command: list[str] | None = None,
    workdir: str | None = None,
    app: Application | None = None,
) -> Extraction:
    """All fields the lab's extractors know for this image (see compspec/lab-spec.yaml).
    command/workdir: how the image is run (default: its runscript), for the GPU field; app:
    what it runs (default: the default application)."""
    app = app or application.load()
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
    program = app.program if app.program and files.is_file(app.program) else None
    arch_binary = program or "/bin/sh"
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

    # library.mpi.* from what the program links to
    closure = library_closure(files, program, arch) if program else {}
    variant = next((v for name in closure for pattern, v in MPI_LIBS if pattern.match(name)), None)
    if program and variant:
        lib = next(n for n in closure for p, v in MPI_LIBS if v == variant and p.match(n))
        ex.set("library.mpi.variant", variant, f"{program} needs {lib} (DT_NEEDED closure)")
    elif not program and files.is_file("/usr/bin/mpirun"):
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
    gpu, how = gpu_available(sif, files, arch, can_run, app, command, workdir)
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
    app: Application | None = None,
) -> dict[str, Any]:
    """The CompatibilitySpec of the image (values read from the image; command/workdir:
    how the image is run, default its runscript; app: what it runs)."""
    fields = extract(Path(sif), command=command, workdir=workdir, app=app).fields
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
    parser.add_argument(
        "--application",
        default=application.DEFAULT,
        metavar="NAME|FILE",
        help="what the image runs: its program says the architecture and MPI, its command "
        f"whether a GPU is used ({', '.join(application.available())} or a YAML file; "
        f"default {application.DEFAULT})",
    )
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        app = application.load(args.application)
        ex = extract(_local(args.image, fetch), app=app)
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
