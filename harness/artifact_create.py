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
libraries it needs, the dpkg database.  Only two values prefer running a
program of the image (`apptainer exec`), and only when the image's
architecture is the host's: the MPI version (`mpirun --version`) and the
LAMMPS packages (`lmp -h`); when that is not possible or fails, they come
from the dpkg database and the ELF dependencies.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import posixpath
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from harness.errors import HarnessError
from harness.host import parse_mpi_version
from harness.matching import normalise_arch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = REPO_ROOT / "compspec" / "lab-spec.yaml"

# ELF e_machine -> the architecture names compspec uses (Go/OCI style).
ELF_MACHINES = {
    "EM_X86_64": "amd64",
    "EM_AARCH64": "arm64",
    "EM_386": "386",
    "EM_PPC64": "ppc64le",
    "EM_ARM": "arm",
    "EM_RISCV": "riscv64",
    "EM_S390": "s390x",
}

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
GPU_LIBS = re.compile(r"^(libOpenCL|libcuda|libcudart|libamdhip64|libhip)\.so")
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


@dataclass
class ElfInfo:
    machine: str
    needed: list[str]
    runpath: list[str]


def elf_info(data: bytes) -> ElfInfo | None:
    try:
        elf = ELFFile(io.BytesIO(data))
    except ELFError:
        return None
    needed, runpath = [], []
    for section in elf.iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                if tag.entry.d_tag == "DT_NEEDED":
                    needed.append(tag.needed)
                elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                    value = tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath
                    runpath += value.split(":")
    return ElfInfo(ELF_MACHINES.get(elf["e_machine"], str(elf["e_machine"])), needed, runpath)


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


def parse_os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Z_]+)=(.*)$", line.strip())
        if m:
            values[m[1]] = m[2].strip().strip('"').strip("'")
    return values


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


def installed_lammps_packages(help_text: str) -> list[str] | None:
    """The package list of `lmp -h` ("Installed packages:" up to the next blank line)."""
    lines = help_text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("Installed packages"):
            packages: list[str] = []
            for following in lines[i + 1 :]:
                if not following.strip():
                    if packages:
                        break
                    continue
                packages += following.split()
            return packages
    return None


def apptainer_exec(sif: Path, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return _run(["apptainer", "exec", "--contain", str(sif), *argv], timeout=timeout)


def extract(sif: Path, *, run: bool | None = None) -> Extraction:
    """All fields the lab's extractors know for this image (see compspec/lab-spec.yaml)."""
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

    # custom.gpu.available: does the image's LAMMPS have the GPU package?
    gpu = "no"
    how = "no /usr/bin/lmp in the image" if not lmp else ""
    if lmp:
        listed = None
        if can_run:
            proc = apptainer_exec(sif, ["lmp", "-h"])
            listed = installed_lammps_packages(proc.stdout) if proc.returncode == 0 else None
        if listed is not None:
            gpu = "yes" if "GPU" in listed else "no"
            how = "lmp -h Installed packages" + (" lists GPU" if gpu == "yes" else " has no GPU")
        else:
            gpu_libs = [n for n in closure if GPU_LIBS.match(n)]
            gpu = "yes" if gpu_libs else "no"
            how = f"{lmp} needs " + (", ".join(gpu_libs) if gpu_libs else "no GPU runtime")
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


def create_artifact(sif: Path, spec_path: Path | None = None) -> dict[str, Any]:
    """The CompatibilitySpec of the image (values read from the image)."""
    return render(load_spec(spec_path), extract(Path(sif)).fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="harness artifact create", description="compatibility artifact of a SIF image"
    )
    parser.add_argument("image", type=Path, help="the SIF file")
    parser.add_argument("-o", "--out", type=Path, help="write the JSON here (default stdout)")
    parser.add_argument("--spec", type=Path, default=None, help=f"creation spec ({DEFAULT_SPEC})")
    parser.add_argument(
        "--explain", action="store_true", help="print where each value came from (stderr)"
    )
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        ex = extract(args.image)
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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
