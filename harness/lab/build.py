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
the lab files and the source of the functions that finish and pack the image.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
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


class Log:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
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
    ) -> str:
        self.note("$ " + " ".join(argv))
        proc = subprocess.run(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else self._fh,
            stderr=self._fh if capture else subprocess.STDOUT,
            text=True,
            check=False,
        )
        self._fh.flush()
        if proc.returncode != 0:
            raise BuildError(
                f"{argv[0]} exited {proc.returncode} ({' '.join(argv[:6])} ...); see {self.path}"
            )
        return proc.stdout if capture else ""

    def close(self) -> None:
        self._fh.close()


def chroot(log: Log, rootfs: Path, argv: list[str], *, capture: bool = False) -> str:
    return log.run(["chroot", str(rootfs), *argv], env=CHROOT_ENV, capture=capture)


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


def recipe_lammps_from_source_mpich(log: Log, image: LabImage, rootfs: Path, mirror: str) -> None:
    """LAMMPS from Debian's lammps source package, built against MPICH, installed
    as /usr/bin/lmp; then the build tools are removed again."""
    sources = rootfs / "etc" / "apt" / "sources.list"
    sources.write_text(f"deb {mirror} {image.suite} main\ndeb-src {mirror} {image.suite} main\n")
    with ProcMount(log, rootfs):
        chroot(log, rootfs, ["apt-get", "update", "-q"])
        chroot(log, rootfs, ["env", "-C", "/usr/src", "apt-get", "source", "-q", "lammps"])
        srcdirs = [p for p in (rootfs / "usr" / "src").glob("lammps-*") if p.is_dir()]
        if len(srcdirs) != 1:
            raise BuildError(f"{image.tag}: expected one lammps source tree, found {srcdirs}")
        src = "/usr/src/" + srcdirs[0].name
        chroot(
            log,
            rootfs,
            [
                "cmake",
                "-S",
                f"{src}/cmake",
                "-B",
                "/usr/src/build",
                "-D",
                "BUILD_MPI=on",
                "-D",
                "BUILD_OMP=off",
                "-D",
                "CMAKE_BUILD_TYPE=Release",
                "-D",
                "BUILD_SHARED_LIBS=off",
            ],
        )
        chroot(log, rootfs, ["cmake", "--build", "/usr/src/build", f"-j{os.cpu_count() or 2}"])
        chroot(log, rootfs, ["install", "-m", "0755", "-s", "/usr/src/build/lmp", "/usr/bin/lmp"])
        # Remove the build tools: debootstrap marks everything manual, so mark
        # all but the base (Priority: required) auto, keep mpich, autoremove.
        listing = chroot(
            log, rootfs, ["dpkg-query", "-W", "-f", "${Package} ${Priority}\\n"], capture=True
        )
        keep = {"mpich"}
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
    shutil.rmtree(rootfs / "usr" / "src" / "build")
    shutil.rmtree(srcdirs[0])
    for leftover in (rootfs / "usr" / "src").glob("lammps_*"):
        leftover.unlink()


RECIPES = {"lammps-from-source-mpich": recipe_lammps_from_source_mpich}


def make_rootfs(
    log: Log, image: LabImage, dest: Path, mirror: str, parent_rootfs: Path | None
) -> None:
    if image.parent:
        assert parent_rootfs is not None
        log.run(["cp", "-a", "--reflink=auto", str(parent_rootfs), str(dest)])
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


def add_lab_files(matrix: Matrix, rootfs: Path) -> None:
    workdir = rootfs / matrix.workdir.lstrip("/")
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    for name, source in matrix.lab_files.items():
        shutil.copyfile(source, workdir / name)
        (workdir / name).chmod(0o644)


def build_sif(log: Log, rootfs: Path, sif: Path) -> None:
    tmp = sif.with_suffix(".sif.part")
    tmp.unlink(missing_ok=True)
    log.run(["apptainer", "build", "--force", str(tmp), str(rootfs)])
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
        if image.recipe in RECIPES:
            code.append(RECIPES[image.recipe])
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
                "code": _code(add_lab_files, build_sif),
            }
        )
        keys[image.tag] = {"rootfs": rootfs_key, "image": image_key}
    return keys


# --------------------------------------------------------------------------
# The build


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

    def build(self, image: LabImage, status: Any) -> dict[str, Any]:
        tag = image.tag
        keys = self.keys[tag]
        started = time.monotonic()
        st = self.state(tag)
        if self.up_to_date(tag):
            status("up to date")
            return self._result(image, st, 0.0, rebuilt=False)
        log = Log(self.cache / "logs" / f"{tag}.log")
        log.note(f"build {tag} image key {keys['image']}")
        stages: dict[str, float] = {}
        try:
            rootfs = self.rootfs(tag)
            if self.force or st.get("rootfs_key") != keys["rootfs"] or not rootfs.is_dir():
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
            status("apptainer build")
            t0 = time.monotonic()
            add_lab_files(self.matrix, rootfs)
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
            "sif": str(sif),
            "sif_bytes": sif.stat().st_size,
            "sif_sha256": st.get("sif_sha256"),
            "key": self.keys[image.tag]["image"],
            "rootfs_key": self.keys[image.tag]["rootfs"],
        }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_reports(matrix: Matrix, builder: Builder, results: dict[str, dict[str, Any]]) -> None:
    cache = builder.cache
    report = {
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cache": str(cache),
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


def run_build(matrix: Matrix, tags: list[str], *, jobs: int, force: bool, cache: Path) -> int:
    _check_tools()
    builder = Builder(matrix, cache, force=force)
    wanted = {matrix.by_tag(t).tag for t in tags} if tags else {i.tag for i in matrix.images}
    # Building an image needs its parent's rootfs: add parents.
    for image in reversed(matrix.images):
        if image.tag in wanted and image.parent:
            wanted.add(image.parent)
    todo = [i for i in matrix.images if i.tag in wanted]
    results: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    console.print(f"[bold]lab build[/]: {len(todo)} images, cache {cache}, mirror {builder.mirror}")
    total_start = time.monotonic()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.fields[tag]:<28}"),
        BarColumn(bar_width=10),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task_ids = {
            i.tag: progress.add_task("waiting", tag=i.tag, total=1, start=False) for i in todo
        }

        def work(image: LabImage) -> dict[str, Any]:
            tid = task_ids[image.tag]
            progress.start_task(tid)

            started = time.monotonic()

            def status(text: str) -> None:
                progress.update(tid, description=text)
                if not console.is_terminal:  # no live display: one line per step
                    console.print(f"{image.tag}: {text} ({time.monotonic() - started:.0f} s)")

            result = builder.build(image, status)
            progress.update(tid, completed=1)
            progress.stop_task(tid)
            return result

        # The slow ones (a recipe compiles) first, so that they overlap the rest.
        pending = sorted(todo, key=lambda i: i.recipe is None)
        running: dict[Future, LabImage] = {}
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            while pending or running:
                for image in list(pending):
                    if len(running) >= max(1, jobs):
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
                        progress.update(task_ids[image.tag], description=f"[red]failed[/]: {exc}")
    write_reports(matrix, builder, results)
    table = Table(title=f"lab images ({time.monotonic() - total_start:.0f} s)")
    for col in ("tag", "this run", "last build", "SIF MB", "key"):
        table.add_column(col)
    for image in todo:
        r = results.get(image.tag)
        if r:
            table.add_row(
                image.tag,
                f"{r['seconds']:.0f} s" if r["rebuilt"] else "cached",
                f"{r['last_build_seconds'] or 0:.0f} s",
                f"{r['sif_bytes'] / 1e6:.0f}",
                r["key"][:12],
            )
        else:
            table.add_row(image.tag, "[red]FAILED[/]", "", "", failed.get(image.tag, ""))
    console.print(table)
    console.print(f"report: {cache / 'build-report.json'}")
    for tag, why in failed.items():
        console.print(f"[red]{tag}[/]: {why}")
    return 1 if failed else 0


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
