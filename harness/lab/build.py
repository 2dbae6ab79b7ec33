"""Build the lab's container images (containers/lab/images.yaml) into SIFs.

    python -m harness.lab.build [--only TAG ...] [--jobs N] [--force] [--list]

Each image is a Debian rootfs made by debootstrap (variant minbase) from the
mirror of this machine's own apt sources, optionally changed by a recipe,
with the lab files (the LAMMPS input) put in the matrix's workdir, and then
turned into a SIF by `apptainer build X.sif ROOTFS`.

Everything goes to the cache, ${HARNESS_LAB_CACHE:-/var/cache/compat-harness/lab}:
    rootfs/TAG/         the image's root file system
    sif/TAG.sif         the image
    state/TAG.json      the keys the rootfs and the SIF were built with
    logs/TAG.log        every command's output
    build-report.json   tag, seconds, SIF size and key of each image
    lab-images.json     per image: SIF path, key and run settings

Two keys per image decide what is rebuilt: the rootfs key hashes the entry's
content fields, the source of the functions that make the rootfs, and the
parent's rootfs key (derived images); the image key hashes the rootfs key,
the lab files, the image's command (written as its runscript) and the source
of the functions that finish and pack the image.

Images are built side by side (--jobs, 2 by default), longest chain first: an
image's priority is its expected build time plus that of the longest chain of
images derived from it (each stage's time from its last build, else an
estimate).  The live status line of each image shows its stage, the command
running and that command's last output line (`[ 45%] Building CXX object ...`);
without a terminal: one line per stage and named step, and a line a minute
while a command runs long.
"""

from __future__ import annotations

import argparse
import ast
import fcntl
import hashlib
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from harness.errors import HarnessError
from harness.lab.matrix import LabImage, Matrix, cache_dir, debian_mirror, load_matrix

CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C",
    "HOME": "/root",
}

console = Console(stderr=True)


class BuildError(HarnessError):
    pass


# --------------------------------------------------------------------------
# Running commands (argv lists only) with their output in the image's log


# Hears a step: (step, None when it starts or its last output line, seconds running).
Reporter = Callable[[str, "str | None", float], None]


def step_label(argv: list[str]) -> str:
    """A short name for a command: the program and its sub-command (`apt-get install`,
    `cmake --build`), past `chroot ROOT` and `env -C DIR`."""
    words = list(argv)
    if words[:1] == ["chroot"]:
        words = words[2:]
    if words[:1] == ["env"]:
        words = words[1:]
        while words and (words[0].startswith("-") or "=" in words[0]):
            words = words[2:] if words[0] in ("-C", "-u") else words[1:]
    if not words:
        return "command"
    name = os.path.basename(words[0])
    sub = next((w for w in words[1:] if w == "--build" or not w.startswith("-")), "")
    return f"{name} {sub}" if re.match(r"^(--build|[a-z][a-z0-9.-]*)$", sub) else name


class Log:
    def __init__(self, path: Path, report: Reporter | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.report = report
        self._fh = path.open("a")
        self._lock = threading.Lock()

    def note(self, text: str) -> None:
        with self._lock:
            self._fh.write(f"### {time.strftime('%H:%M:%S')} {text}\n")
            self._fh.flush()

    def run(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        capture: bool = False,
        step: str | None = None,
    ) -> str:
        """Run argv with its output into the log (stdout returned instead with capture).
        The reporter hears the step (`step`, else a name made from argv) when it starts
        and then, every second, the last line the command printed."""
        self.note("$ " + " ".join(argv))
        if capture:
            proc = subprocess.run(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._fh,
                text=True,
                check=False,
            )
            self._fh.flush()
            returncode, output = proc.returncode, proc.stdout
        else:
            returncode, output = self._stream(argv, env, cwd, step or step_label(argv)), ""
        if returncode != 0:
            raise BuildError(
                f"{argv[0]} exited {returncode} ({' '.join(argv[:6])} ...); see {self.path}"
            )
        return output

    def _stream(
        self, argv: list[str], env: dict[str, str] | None, cwd: Path | None, label: str
    ) -> int:
        if self.report:
            self.report(label, None, 0.0)
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        last: list[str] = []

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:  # universal newlines: a \r progress update is a line
                with self._lock:
                    self._fh.write(line)
                if line.strip():
                    last[:] = [line.strip()]

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        started = time.monotonic()
        while True:
            try:
                proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if self.report and last:
                    self.report(label, last[0], time.monotonic() - started)
        reader.join()
        with self._lock:
            self._fh.flush()
        return proc.returncode

    def close(self) -> None:
        self._fh.close()


def chroot(
    log: Log, rootfs: Path, argv: list[str], *, capture: bool = False, step: str | None = None
) -> str:
    return log.run(["chroot", str(rootfs), *argv], env=CHROOT_ENV, capture=capture, step=step)


class ProcMount:
    """/proc mounted in the rootfs while a recipe runs there."""

    def __init__(self, log: Log, rootfs: Path):
        self.log, self.target = log, rootfs / "proc"

    def __enter__(self) -> ProcMount:
        self.target.mkdir(exist_ok=True)
        self.log.run(["mount", "-t", "proc", "proc", str(self.target)])
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["umount", "-l", str(self.target)], check=False)


# --------------------------------------------------------------------------
# Stage 1: the rootfs


def debootstrap(log: Log, image: LabImage, dest: Path, mirror: str) -> None:
    argv = ["debootstrap", "--variant=minbase", f"--arch={image.arch}"]
    if image.include:
        argv.append("--include=" + ",".join(image.include))
    if image.foreign:
        argv.append("--foreign")
    argv += [image.suite, str(dest), mirror]
    log.run(argv)


def unpack_foreign_debs(log: Log, image: LabImage, rootfs: Path) -> None:
    """After a first-stage (--foreign) debootstrap only the base is unpacked:
    unpack every downloaded .deb (the included packages and their
    dependencies) with dpkg-deb -x, and record them in the image's dpkg
    database as unpacked (not configured), with their own control fields."""
    archives = rootfs / "var" / "cache" / "apt" / "archives"
    debs = sorted(archives.glob("*.deb"))
    if not debs:
        raise BuildError(f"{image.tag}: no .deb files in {archives}")
    stanzas = []
    for deb in debs:
        log.run(["dpkg-deb", "-x", str(deb), str(rootfs)])
        control = log.run(["dpkg-deb", "-f", str(deb)], capture=True).strip("\n")
        lines = control.splitlines()
        lines.insert(1, "Status: install ok unpacked")
        stanzas.append("\n".join(lines) + "\n")
    status = rootfs / "var" / "lib" / "dpkg" / "status"
    existing = status.read_text() if status.exists() else ""
    if existing and not existing.endswith("\n\n"):
        existing = existing.rstrip("\n") + "\n\n"
    status.write_text(existing + "\n".join(stanzas))
    for deb in debs:
        deb.unlink()
    log.note(f"unpacked {len(debs)} packages with dpkg-deb -x")


def write_files(image: LabImage, rootfs: Path) -> None:
    for path, spec in image.files.items():
        target = rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(spec["content"])
        target.chmod(int(str(spec.get("mode", "0644")), 8))


def apt_install(log: Log, image: LabImage, rootfs: Path) -> None:
    """The entry's `install` packages, into the copy of its parent's rootfs: what
    debootstrap's --include gives a fresh rootfs (Depends, no Recommends), without fetching
    and unpacking the release's base system once more."""
    with ProcMount(log, rootfs):
        chroot(log, rootfs, ["apt-get", "update", "-q"])
        chroot(
            log,
            rootfs,
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *image.install],
            step="apt-get install",
        )
        chroot(log, rootfs, ["apt-get", "clean"])
    for lists in (rootfs / "var" / "lib" / "apt" / "lists").glob("*_*"):
        lists.unlink()


STYLE_MACRO = re.compile(r"^\s*(\w+Style)\(\s*([^,\s]+)\s*,", re.M)
INCLUDE = re.compile(r'#include\s+"([\w.]+)\.h"')


def prune_styles(src: Path, keep: dict[str, tuple[str, ...]]) -> int:
    """Remove from a LAMMPS source tree (its src/) the styles not in `keep` (style kind, as
    the header's macro names it -> style names, "*" for every one of that kind), except those
    a kept source includes: LAMMPS registers the styles whose files it finds, so the build
    compiles only what the lab's input uses. Returns how many styles were removed."""
    styles: dict[str, list[tuple[str, str]]] = {}
    for header in src.glob("*.h"):
        found = STYLE_MACRO.findall(header.read_text(errors="replace"))
        if found:
            styles[header.stem] = found

    def wanted(stem: str) -> bool:
        return any(
            "*" in keep.get(kind, ()) or name in keep.get(kind, ()) for kind, name in styles[stem]
        )

    kept = {p.stem for p in src.glob("*.cpp") if p.stem not in styles or wanted(p.stem)}
    todo = list(kept)
    while todo:  # and every style a kept file includes
        stem = todo.pop()
        for path in (src / f"{stem}.cpp", src / f"{stem}.h"):
            if path.is_file():
                for dep in INCLUDE.findall(path.read_text(errors="replace")):
                    if dep in styles and dep not in kept:
                        kept.add(dep)
                        todo.append(dep)
    removed = [stem for stem in styles if stem not in kept]
    for stem in removed:
        (src / f"{stem}.cpp").unlink(missing_ok=True)
        (src / f"{stem}.h").unlink()
    return len(removed)


def recipe_lammps_from_source(log: Log, image: LabImage, rootfs: Path, mirror: str) -> None:
    """LAMMPS from the release's lammps source package, built with the MPI of the image's
    `install` (its mpi.h and mpicxx) and the entry's `cmake` settings (packages, compiler
    flags such as a -march), with only the entry's `styles` when it names them (a third of
    the compile), installed as /usr/bin/lmp; then everything but the base and the entry's
    `keep` packages (the MPI's runtime) is removed again."""
    sources = rootfs / "etc" / "apt" / "sources.list"
    sources.write_text(f"deb {mirror} {image.suite} main\ndeb-src {mirror} {image.suite} main\n")
    with ProcMount(log, rootfs):
        chroot(log, rootfs, ["apt-get", "update", "-q"])
        chroot(log, rootfs, ["env", "-C", "/usr/src", "apt-get", "source", "-q", "lammps"])
        srcdirs = [p for p in (rootfs / "usr" / "src").glob("lammps-*") if p.is_dir()]
        if len(srcdirs) != 1:
            raise BuildError(f"{image.tag}: expected one lammps source tree, found {srcdirs}")
        src = "/usr/src/" + srcdirs[0].name
        if image.styles:
            removed = prune_styles(srcdirs[0] / "src", image.styles)
            log.note(f"removed the sources of {removed} styles the entry does not name")
        settings = [
            "BUILD_MPI=on",
            "BUILD_OMP=off",
            "CMAKE_BUILD_TYPE=Release",
            "BUILD_SHARED_LIBS=off",
            *image.cmake,
        ]
        configure = ["cmake", "-S", f"{src}/cmake", "-B", "/usr/src/build"]
        chroot(log, rootfs, [*configure, *(a for s in settings for a in ("-D", s))])
        chroot(log, rootfs, ["cmake", "--build", "/usr/src/build", f"-j{os.cpu_count() or 2}"])
        chroot(log, rootfs, ["install", "-m", "0755", "-s", "/usr/src/build/lmp", "/usr/bin/lmp"])
        # Remove the build tools: mark all but the base (Priority: required) auto, keep the
        # entry's runtime packages, autoremove.
        listing = chroot(
            log, rootfs, ["dpkg-query", "-W", "-f", "${Package} ${Priority}\\n"], capture=True
        )
        keep = set(image.keep)
        auto = []
        for line in listing.splitlines():
            name, _, priority = line.partition(" ")
            if priority != "required" and name not in keep:
                auto.append(name)
        chroot(log, rootfs, ["apt-mark", "auto", *auto])
        chroot(log, rootfs, ["apt-mark", "manual", *sorted(keep)])
        chroot(
            log,
            rootfs,
            [
                "apt-get",
                "-y",
                "-q",
                "--purge",
                "autoremove",
                "-o",
                "APT::AutoRemove::SuggestsImportant=false",
                "-o",
                "APT::AutoRemove::RecommendsImportant=false",
            ],
        )
        ldd = chroot(log, rootfs, ["ldd", "/usr/bin/lmp"], capture=True)
        log.note(ldd)
        if "not found" in ldd:
            raise BuildError(f"{image.tag}: /usr/bin/lmp misses libraries after cleanup: {ldd}")
        chroot(log, rootfs, ["apt-get", "clean"])
    sources.write_text(f"deb {mirror} {image.suite} main\n")
    shutil.rmtree(rootfs / "usr" / "src" / "build")
    shutil.rmtree(srcdirs[0])
    for leftover in (rootfs / "usr" / "src").glob("lammps_*"):
        leftover.unlink()
    for lists in (rootfs / "var" / "lib" / "apt" / "lists").glob("*_*"):
        lists.unlink()


def recipe_lammps_gpu_from_bullseye(log: Log, image: LabImage, rootfs: Path, mirror: str) -> None:
    """Debian 11's LAMMPS -- the only Debian LAMMPS with the GPU package (OpenCL) -- in a
    newer Debian rootfs, through apt: bullseye as a second source pinned low (100: nothing
    comes from it unless asked for or missing from the image's own release), then lammps,
    liblammps0, lammps-data and the entry's `recipe_packages` explicitly from bullseye.
    No recommends: no OpenCL driver (pocl, mesa) comes in, so the GPU package finds no
    device.  lmp must link libOpenCL (the GPU package) and miss no library."""
    apt = rootfs / "etc" / "apt"
    for sub in ("sources.list.d", "preferences.d"):
        (apt / sub).mkdir(parents=True, exist_ok=True)
    (apt / "sources.list.d" / "bullseye.list").write_text(f"deb {mirror} bullseye main\n")
    (apt / "preferences.d" / "bullseye").write_text(
        "Package: *\nPin: release n=bullseye\nPin-Priority: 100\n"
    )
    wanted = dict.fromkeys(["lammps", "liblammps0", "lammps-data", *image.recipe_packages])
    with ProcMount(log, rootfs):
        chroot(log, rootfs, ["apt-get", "update", "-q"], step="apt-get update (+ bullseye)")
        chroot(
            log,
            rootfs,
            [
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "--allow-downgrades",
                *(f"{name}/bullseye" for name in wanted),
            ],
            step="apt-get install (bullseye's LAMMPS)",
        )
        ldd = chroot(log, rootfs, ["ldd", "/usr/bin/lmp"], capture=True)
        log.note(ldd)
        if "not found" in ldd or "libOpenCL.so" not in ldd:
            raise BuildError(f"{image.tag}: /usr/bin/lmp is not bullseye's OpenCL LAMMPS: {ldd}")
        chroot(log, rootfs, ["apt-get", "clean"])
    for lists in (rootfs / "var" / "lib" / "apt" / "lists").glob("*_*"):
        lists.unlink()


RECIPES = {
    "lammps-from-source": recipe_lammps_from_source,
    "lammps-gpu-from-bullseye": recipe_lammps_gpu_from_bullseye,
}


def make_rootfs(
    log: Log, image: LabImage, dest: Path, mirror: str, parent_rootfs: Path | None
) -> None:
    if image.parent:
        assert parent_rootfs is not None
        log.run(["cp", "-a", "--reflink=auto", str(parent_rootfs), str(dest)])
        if image.install:
            apt_install(log, image, dest)
    else:
        debootstrap(log, image, dest, mirror)
        if image.foreign:
            unpack_foreign_debs(log, image, dest)
    if image.recipe:
        if image.recipe not in RECIPES:
            raise BuildError(f"{image.tag}: unknown recipe {image.recipe!r}")
        RECIPES[image.recipe](log, image, dest, mirror)
    write_files(image, dest)
    for deb in (dest / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()


# --------------------------------------------------------------------------
# Stage 2: the SIF


def finish_image(matrix: Matrix, image: LabImage, rootfs: Path) -> None:
    """The lab files in the workdir; the entry's command as the image's runscript (what
    `apptainer run` runs, and what its artifact's GPU field reads); and no OpenCL driver
    (ICD) in the image: with one (pocl) LAMMPS' GPU package finds a CPU "device" and fails
    otherwise than for want of a GPU."""
    workdir = rootfs / matrix.workdir.lstrip("/")
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    for name, source in matrix.lab_files.items():
        shutil.copyfile(source, workdir / name)
        (workdir / name).chmod(0o644)
    runscript = rootfs / ".singularity.d" / "runscript"
    runscript.parent.mkdir(exist_ok=True)
    runscript.write_text(
        "#!/bin/sh\n"
        "# The lab's command for this image (containers/lab/images.yaml), from its workdir.\n"
        f"cd {shlex.quote(matrix.workdir)} || exit 1\n"
        f'exec {shlex.join(image.command)} "$@"\n'
    )
    runscript.chmod(0o755)
    icds = sorted(p.name for p in (rootfs / "etc" / "OpenCL" / "vendors").glob("*"))
    if icds:
        raise BuildError(f"{image.tag}: an OpenCL driver is in the image: {icds}")


def build_sif(log: Log, rootfs: Path, sif: Path) -> None:
    """`apptainer build` with zstd (level 3) instead of mksquashfs' default gzip: on 2 cores
    a 600 MB rootfs packs in about 13 s instead of 60 s, for a 3 % larger SIF.  Apptainer
    runs it through the kernel's squashfs (zstd since Linux 4.14) or squashfuse."""
    tmp = sif.with_suffix(".sif.part")
    tmp.unlink(missing_ok=True)
    squashfs = "-comp zstd -Xcompression-level 3"
    log.run(["apptainer", "build", "--force", "--mksquashfs-args", squashfs, str(tmp), str(rootfs)])
    tmp.rename(sif)


# --------------------------------------------------------------------------
# Keys


def _code(*functions: Any) -> str:
    """The functions' code as syntax trees: formatting and comments do not count."""
    return "\n".join(ast.dump(ast.parse(textwrap.dedent(inspect.getsource(f)))) for f in functions)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def compute_keys(matrix: Matrix) -> dict[str, dict[str, str]]:
    keys: dict[str, dict[str, str]] = {}
    for image in matrix.images:
        code = [make_rootfs, write_files]
        if image.parent is None:
            code.append(debootstrap)
        if image.foreign:
            code.append(unpack_foreign_debs)
        if image.install:
            code.append(apt_install)
        if image.recipe in RECIPES:
            code.append(RECIPES[image.recipe])
        if image.styles:
            code.append(prune_styles)
        rootfs_key = _digest(
            {
                "entry": {k: v for k, v in image.image_fields().items()},
                "code": _code(*code),
                "parent": keys[image.parent]["rootfs"] if image.parent else None,
            }
        )
        lab_files = {
            name: hashlib.sha256(path.read_bytes()).hexdigest()
            for name, path in sorted(matrix.lab_files.items())
        }
        image_key = _digest(
            {
                "rootfs": rootfs_key,
                "workdir": matrix.workdir,
                "lab_files": lab_files,
                "command": list(image.command),
                "code": _code(finish_image, build_sif),
            }
        )
        keys[image.tag] = {"rootfs": rootfs_key, "image": image_key}
    return keys


# --------------------------------------------------------------------------
# The build


# Estimated seconds of each stage when no build has measured it yet (2 cores, a fast
# mirror): what this machine took.  Only the order of the builds depends on them.
ESTIMATES = {
    "debootstrap": 90.0,  # minbase + LAMMPS and MPI
    "debootstrap-minbase": 45.0,  # nothing included
    "foreign": 50.0,  # first stage + dpkg-deb -x
    "copy": 3.0,  # a derived rootfs
    "sif": 20.0,  # zstd
}
RECIPE_ESTIMATES = {"lammps-from-source": 150.0, "lammps-gpu-from-bullseye": 45.0}
INSTALL_ESTIMATE = 40.0  # apt-get install into a copied rootfs


class Builder:
    def __init__(self, matrix: Matrix, cache: Path, *, force: bool = False):
        self.matrix, self.cache, self.force = matrix, cache, force
        self.keys = compute_keys(matrix)
        self.mirror = debian_mirror()
        for sub in ("rootfs", "sif", "state", "logs"):
            (cache / sub).mkdir(parents=True, exist_ok=True)

    def rootfs(self, tag: str) -> Path:
        return self.cache / "rootfs" / tag

    def sif(self, tag: str) -> Path:
        return self.cache / "sif" / f"{tag}.sif"

    def state_file(self, tag: str) -> Path:
        return self.cache / "state" / f"{tag}.json"

    def state(self, tag: str) -> dict[str, Any]:
        try:
            return json.loads(self.state_file(tag).read_text())
        except (OSError, ValueError):
            return {}

    def save_state(self, tag: str, state: dict[str, Any]) -> None:
        tmp = self.state_file(tag).with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.rename(self.state_file(tag))

    def up_to_date(self, tag: str) -> bool:
        st = self.state(tag)
        return (
            not self.force
            and st.get("image_key") == self.keys[tag]["image"]
            and self.sif(tag).is_file()
        )

    def rootfs_stale(self, tag: str) -> bool:
        return (
            self.force
            or self.state(tag).get("rootfs_key") != self.keys[tag]["rootfs"]
            or not self.rootfs(tag).is_dir()
        )

    def estimate(self, image: LabImage) -> float:
        """Expected seconds to bring the image up to date (0 when it is)."""
        if self.up_to_date(image.tag):
            return 0.0
        st = self.state(image.tag)
        seconds = st.get("sif_seconds") or ESTIMATES["sif"]
        if self.rootfs_stale(image.tag):
            if st.get("rootfs_seconds"):
                seconds += st["rootfs_seconds"]
            else:
                if image.parent:
                    seconds += ESTIMATES["copy"] + (INSTALL_ESTIMATE if image.install else 0.0)
                elif image.foreign:
                    seconds += ESTIMATES["foreign"]
                else:
                    seconds += ESTIMATES["debootstrap" if image.include else "debootstrap-minbase"]
                seconds += RECIPE_ESTIMATES.get(image.recipe or "", 0.0)
        return seconds

    def build(self, image: LabImage, status: Callable[[str], None], report: Reporter) -> dict:
        tag = image.tag
        keys = self.keys[tag]
        started = time.monotonic()
        st = self.state(tag)
        if self.up_to_date(tag):
            status("up to date")
            return self._result(image, st, 0.0, rebuilt=False)
        log = Log(self.cache / "logs" / f"{tag}.log", report)
        log.note(f"build {tag} image key {keys['image']}")
        stages: dict[str, float] = {}
        try:
            rootfs = self.rootfs(tag)
            if self.rootfs_stale(tag):
                how = f"copy of {image.parent}" if image.parent else "debootstrap"
                if image.foreign:
                    how += " --foreign, dpkg-deb -x"
                if image.recipe:
                    how += f", then recipe {image.recipe}"
                status(f"rootfs ({how})")
                t0 = time.monotonic()
                st = {}
                self.save_state(tag, st)
                tmp = rootfs.with_name(tag + ".part")
                for stale in (rootfs, tmp):
                    if stale.exists():
                        log.run(["rm", "-rf", "--one-file-system", str(stale)])
                parent_rootfs = self.rootfs(image.parent) if image.parent else None
                make_rootfs(log, image, tmp, self.mirror, parent_rootfs)
                tmp.rename(rootfs)
                stages["rootfs"] = round(time.monotonic() - t0, 1)
                st = {"rootfs_key": keys["rootfs"], "rootfs_seconds": stages["rootfs"]}
                self.save_state(tag, st)
            status("SIF")
            t0 = time.monotonic()
            finish_image(self.matrix, image, rootfs)
            build_sif(log, rootfs, self.sif(tag))
            stages["sif"] = round(time.monotonic() - t0, 1)
            seconds = round(time.monotonic() - started, 1)
            st.update(
                {
                    "image_key": keys["image"],
                    "sif_seconds": stages["sif"],
                    "build_seconds": seconds,
                    "stages": stages,
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "sif_sha256": sha256_file(self.sif(tag)),
                }
            )
            self.save_state(tag, st)
            status("built")
            return self._result(image, st, seconds, rebuilt=True)
        finally:
            log.close()

    def _result(self, image: LabImage, st: dict[str, Any], seconds: float, *, rebuilt: bool):
        sif = self.sif(image.tag)
        return {
            "tag": image.tag,
            "seconds": seconds,
            "rebuilt": rebuilt,
            "last_build_seconds": st.get("build_seconds"),
            "stages": st.get("stages"),
            "rootfs_seconds": st.get("rootfs_seconds"),
            "sif_seconds": st.get("sif_seconds"),
            "sif": str(sif),
            "sif_bytes": sif.stat().st_size,
            "sif_sha256": st.get("sif_sha256"),
            "key": self.keys[image.tag]["image"],
            "rootfs_key": self.keys[image.tag]["rootfs"],
        }


def build_order(matrix: Matrix, builder: Builder, todo: list[LabImage]) -> list[LabImage]:
    """Longest chain first: an image's priority is its estimated time plus the largest
    priority among the images derived from it (they cannot start before it is done)."""
    wanted = {i.tag for i in todo}
    priority: dict[str, float] = {}
    for image in reversed(matrix.images):
        if image.tag not in wanted:
            continue
        children = [p for tag, p in priority.items() if matrix.by_tag(tag).parent == image.tag]
        priority[image.tag] = builder.estimate(image) + max(children, default=0.0)
    return sorted(todo, key=lambda i: -priority[i.tag])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_reports(
    matrix: Matrix, builder: Builder, results: dict[str, dict[str, Any]], seconds: float
) -> None:
    cache = builder.cache
    report = {
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cache": str(cache),
        "seconds": round(seconds, 1),
        "images": [results[i.tag] for i in matrix.images if i.tag in results],
    }
    (cache / "build-report.json").write_text(json.dumps(report, indent=2) + "\n")
    lab = {"registry": matrix.registry, "images": []}
    for image in matrix.images:
        sif = builder.sif(image.tag)
        if not sif.is_file():
            continue
        lab["images"].append(
            {
                "tag": image.tag,
                "sif": str(sif),
                "key": builder.keys[image.tag]["image"],
                "name": matrix.reference(image.tag),
                "artifact": matrix.artifact_reference(image.tag),
                **matrix.run_settings(image.tag),
            }
        )
    (cache / "lab-images.json").write_text(json.dumps(lab, indent=2) + "\n")


def _check_tools() -> None:
    missing = [t for t in ("debootstrap", "apptainer", "dpkg-deb", "chroot") if not shutil.which(t)]
    if missing:
        raise HarnessError(f"missing tools {missing}: run scripts/install-deps.sh")
    if os.geteuid() != 0:
        raise HarnessError("building the lab images needs root (debootstrap, chroot, mount)")


def build_lock(cache: Path) -> Any:
    """One build per cache at a time: two would delete each other's rootfs trees.  A
    second build waits for the first (and then finds most images up to date)."""
    cache.mkdir(parents=True, exist_ok=True)
    fh = (cache / "build.lock").open("a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        console.print(f"another lab build (pid {holder}) is using {cache}: waiting for it")
        fcntl.flock(fh, fcntl.LOCK_EX)
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def run_build(matrix: Matrix, tags: list[str], *, jobs: int, force: bool, cache: Path) -> int:
    _check_tools()
    with build_lock(cache):
        return _run_build(matrix, tags, jobs=jobs, force=force, cache=cache)


def _run_build(matrix: Matrix, tags: list[str], *, jobs: int, force: bool, cache: Path) -> int:
    builder = Builder(matrix, cache, force=force)
    todo = with_parents(matrix, tags)
    jobs = max(1, jobs)
    console.print(
        f"[bold]lab build[/]: {len(todo)} images, {jobs} at a time, cache {cache}, "
        f"mirror {builder.mirror}",
        soft_wrap=True,
    )
    total_start = time.monotonic()
    live = console.is_terminal
    columns = (
        SpinnerColumn(),
        TextColumn("{task.fields[tag]:<28}"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=console) as progress:
        task_ids = {
            i.tag: progress.add_task("waiting", tag=i.tag, total=1, start=False) for i in todo
        }

        def work(image: LabImage) -> dict[str, Any]:
            return _build_shown(builder, image, progress, task_ids[image.tag], live)

        pending = build_order(matrix, builder, todo)
        results, failed = _schedule(pending, work, jobs, progress, task_ids, live)
    total = time.monotonic() - total_start
    write_reports(matrix, builder, results, total)
    print_results(todo, results, failed, total, jobs, cache)
    return 1 if failed else 0


def with_parents(matrix: Matrix, tags: list[str]) -> list[LabImage]:
    """The images to build (all without tags), in matrix order, with the parents they need."""
    wanted = {matrix.by_tag(t).tag for t in tags} if tags else {i.tag for i in matrix.images}
    # Building an image needs its parent's rootfs: add parents.
    for image in reversed(matrix.images):
        if image.tag in wanted and image.parent:
            wanted.add(image.parent)
    return [i for i in matrix.images if i.tag in wanted]


def _build_shown(
    builder: Builder, image: LabImage, progress: Progress, tid: TaskID, live: bool
) -> dict[str, Any]:
    """Build one image with its stage and step on its progress line (one printed line per
    stage and step, and one a minute while a command runs long, without a terminal)."""
    progress.start_task(tid)
    started = time.monotonic()
    shown = {"stage": "", "step": "", "printed": 0.0}

    def say(text: str) -> None:  # without a live display: one line
        shown["printed"] = time.monotonic()
        line = f"{image.tag}: {text} ({time.monotonic() - started:.0f} s)"
        console.print(escape(line), soft_wrap=True)

    def status(text: str) -> None:
        shown["stage"], shown["step"] = text, ""
        progress.update(tid, description=text)
        if not live:
            say(text)

    def report(step: str, line: str | None, seconds: float) -> None:
        text = f"{shown['stage']} · {step}"
        if line:
            width = max(20, console.width - 45 - len(text))  # spinner, tag, time
            tail = line if len(line) <= width else line[: width - 1] + "…"
            text += f": {tail}"
        progress.update(tid, description=escape(text))
        if live:
            return
        if line is None and step != shown["step"]:
            shown["step"] = step
            say(f"  {step}")
        elif line and seconds >= 30 and time.monotonic() - shown["printed"] >= 60:
            say(f"  {step}: {line[:120]}")

    result = builder.build(image, status, report)
    progress.update(tid, completed=1, description=status_text(result))
    progress.stop_task(tid)
    return result


def _schedule(
    pending: list[LabImage],
    work: Callable[[LabImage], dict[str, Any]],
    jobs: int,
    progress: Progress,
    task_ids: dict[str, TaskID],
    live: bool,
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Run `work` on the images, `jobs` at a time in `pending`'s order, each once its parent
    is built (skipped when its parent failed): (results by tag, why each failed by tag)."""
    results: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    running: dict[Future, LabImage] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            for image in list(pending):
                if len(running) >= jobs:
                    break
                if image.parent in failed:
                    pending.remove(image)
                    failed[image.tag] = f"parent {image.parent} failed"
                    progress.update(task_ids[image.tag], description="[red]skipped[/]")
                    continue
                if image.parent and image.parent not in results:
                    continue
                pending.remove(image)
                running[pool.submit(work, image)] = image
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                image = running.pop(fut)
                try:
                    results[image.tag] = fut.result()
                except Exception as exc:  # noqa: BLE001 - reported per image
                    failed[image.tag] = str(exc)
                    if not live:
                        console.print(escape(f"{image.tag}: failed: {exc}"), soft_wrap=True)
                    progress.update(
                        task_ids[image.tag], description=f"[red]failed[/]: {escape(str(exc))}"
                    )
    return results, failed


def print_results(
    todo: list[LabImage],
    results: dict[str, dict[str, Any]],
    failed: dict[str, str],
    total: float,
    jobs: int,
    cache: Path,
) -> None:
    """The build's table (each image's times, size and key, or why it failed), then the
    report's path and each failure."""
    table = Table(title=f"lab images ({total:.0f} s, {jobs} at a time)")
    for col in ("tag", "this run", "last build", "rootfs s", "SIF s", "SIF MB", "key"):
        table.add_column(col)
    for image in todo:
        r = results.get(image.tag)
        if r:
            table.add_row(
                image.tag,
                f"{r['seconds']:.0f} s" if r["rebuilt"] else "cached",
                f"{r['last_build_seconds'] or 0:.0f} s",
                f"{r['rootfs_seconds'] or 0:.0f}",
                f"{r['sif_seconds'] or 0:.0f}",
                f"{r['sif_bytes'] / 1e6:.0f}",
                r["key"][:12],
            )
        else:
            table.add_row(image.tag, "[red]FAILED[/]", "", "", "", "", failed.get(image.tag, ""))
    # Without a terminal rich assumes 80 columns: give the table room instead of cutting tags.
    (console if console.is_terminal else Console(stderr=True, width=130)).print(table)
    console.print(f"report: {cache / 'build-report.json'}", soft_wrap=True)
    for tag, why in failed.items():
        console.print(f"[red]{tag}[/]: {why}")


def status_text(result: dict[str, Any]) -> str:
    if not result["rebuilt"]:
        return "up to date"
    stages = result.get("stages") or {}
    return "built: " + ", ".join(f"{k} {v:.0f} s" for k, v in stages.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness lab build", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TAG",
        help="build only this image (and its parent); repeatable",
    )
    parser.add_argument("--jobs", "-j", type=int, default=2, help="images built at once (2)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the keys match")
    parser.add_argument("--matrix", type=Path, default=None, help="matrix file")
    parser.add_argument("--cache", type=Path, default=None, help="cache directory")
    parser.add_argument("--list", action="store_true", help="list images, keys and state")
    args = parser.parse_args(argv)
    try:
        matrix = load_matrix(args.matrix)
        cache = args.cache or cache_dir()
        if args.list:
            keys = compute_keys(matrix)
            for image in matrix.images:
                try:
                    st = json.loads((cache / "state" / f"{image.tag}.json").read_text())
                except (OSError, ValueError):
                    st = {}
                fresh = (
                    st.get("image_key") == keys[image.tag]["image"]
                    and (cache / "sif" / f"{image.tag}.sif").is_file()
                )
                print(
                    f"{image.tag:30} {keys[image.tag]['image'][:12]} "
                    f"{'built' if fresh else 'to build'}"
                )
            return 0
        return run_build(matrix, args.only, jobs=args.jobs, force=args.force, cache=cache)
    except HarnessError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
