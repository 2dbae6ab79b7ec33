"""A SIF image's files, read from its squashfs partition without running the image (`apptainer
sif list` for the partition's offset, then `unsquashfs -o OFFSET -lls / -cat`); the libraries a
binary of the image needs; and the one way a program of the image is run (`apptainer exec`).
"""

from __future__ import annotations

import platform
import posixpath
import re
import shutil
import subprocess
from pathlib import Path

from harness.errors import HarnessError
from harness.select.elf import elf_info
from harness.system import normalise_arch

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
# Running a program of the image (only when its architecture is the host's)


def apptainer_exec(sif: Path, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    return _run(["apptainer", "exec", "--contain", str(sif), *argv], timeout=timeout)
