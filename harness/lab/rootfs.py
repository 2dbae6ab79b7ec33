"""Stage 1 of a lab image: its root file system, by debootstrap (or a copy of its parent's), then
the entry's packages, its recipe and the lab files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from harness.lab.build_log import BuildError, Log, chroot
from harness.lab.matrix import LabImage


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
