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
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from harness.errors import HarnessError
from harness.lab.build_display import console, print_results, status_text
from harness.lab.build_keys import compute_keys
from harness.lab.build_log import Log, Reporter
from harness.lab.matrix import LabImage, Matrix, cache_dir, debian_mirror, load_matrix
from harness.lab.rootfs import make_rootfs
from harness.lab.sif import build_sif, finish_image

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
