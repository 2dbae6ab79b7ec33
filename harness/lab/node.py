"""The MiniCluster node image's userland, as an Apptainer image built here.

containers/node/Dockerfile builds the real node image (Ubuntu jammy, Apptainer, Open MPI, a
Python 3.11 venv with the harness in /opt/harness, the Flux view profile), and no Docker engine
is reachable here. So that what docs/minicluster.md has a user type inside a pod can still be
run here, in CI (tests/test_node_rehearsal.py), this builds the closest userland the registries
here give:

- Debian bookworm (glibc 2.36, Python 3.11, Open MPI 4.1.4: jammy has 2.35 and Open MPI 4.1.2),
  debootstrap minbase, with `openmpi-bin`, `python3-venv`, and the shared libraries a Flux
  view carries (ZeroMQ, Jansson, hwloc, ...): a flux-core install bound in as the view runs;
- /opt/harness, a venv with the project's dependencies from PyPI (pyproject.toml) and the Flux
  bindings' own (cffi, ply); the harness itself is installed into it at use, from the checkout
  under test (`apptainer exec --writable-tmpfs`), so the image need not be rebuilt per commit;
- the profile script of the real image (containers/node/flux-view-profile.sh), at the same
  paths, and the same directories (/results, /srv/compat-harness, /src/compat-harness);
- `apptainer` and `singularity` as links to the host's Apptainer prefix, bound in at use.
compspec-go is left out: the Go module proxy here refuses it.

    python -m harness.lab.node [--force]     -> $HARNESS_LAB_CACHE/node/node.sif
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tomllib
from pathlib import Path

from harness.errors import HarnessError
from harness.lab.build_keys import _code, _digest
from harness.lab.build_log import CHROOT_ENV, Log
from harness.lab.matrix import LabImage, cache_dir, debian_mirror
from harness.lab.rootfs import debootstrap
from harness.lab.sif import build_sif

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "containers" / "node" / "flux-view-profile.sh"
PROFILE_IN_IMAGE = "/etc/profile.d/compat-harness-flux.sh"
VENV = "/opt/harness"
APPTAINER_PREFIX = "/opt/compat-harness/apptainer"  # scripts/install-deps.sh
FLUX_VIEW_LIBS = (
    "libzmq5", "libjansson4", "libhwloc15", "liblz4-1", "libarchive13", "libsqlite3-0",
    "libuuid1", "libpython3.11", "python3-cffi-backend", "python3-yaml", "python3-ply",
)  # fmt: skip
USERLAND = LabImage(
    tag="node-userland",
    suite="bookworm",
    arch="amd64",
    include=("python3", "python3-venv", "openmpi-bin", "ca-certificates", "procps")
    + FLUX_VIEW_LIBS,
)
BINDINGS_DEPS = ("cffi>=1.15", "ply>=3.11")  # what the view's Flux bindings import


def node_dir() -> Path:
    return cache_dir() / "node"


def sif_path() -> Path:
    return node_dir() / "node.sif"


def requirements() -> list[str]:
    """The project's runtime dependencies (pyproject.toml) and the Flux bindings' own."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *BINDINGS_DEPS]


def key() -> str:
    return _digest(
        {
            "userland": USERLAND.include,
            "suite": USERLAND.suite,
            "requirements": requirements(),
            "profile": PROFILE.read_text(),
            "code": _code(make_rootfs),
        }
    )


def make_rootfs(log: Log, rootfs: Path, wheels: Path) -> None:
    debootstrap(log, USERLAND, rootfs, debian_mirror())
    shutil.copytree(wheels, rootfs / "tmp" / "wheels")
    chroot = ["chroot", str(rootfs)]
    log.run([*chroot, "python3", "-m", "venv", VENV], env=CHROOT_ENV)
    log.run(
        [*chroot, f"{VENV}/bin/pip", "install", "--no-index", "--find-links", "/tmp/wheels",
         "--disable-pip-version-check", "--quiet", *requirements()],
        env=CHROOT_ENV,
    )  # fmt: skip
    shutil.rmtree(rootfs / "tmp" / "wheels")
    profile = rootfs / PROFILE_IN_IMAGE.lstrip("/")
    profile.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROFILE, profile)
    with (rootfs / "etc" / "bash.bashrc").open("a") as fh:
        fh.write(f". {PROFILE_IN_IMAGE}\n")
    for directory in ("results", "srv/compat-harness", "src/compat-harness"):
        (rootfs / directory).mkdir(parents=True, exist_ok=True)
    local_bin = rootfs / "usr" / "local" / "bin"
    for name in ("apptainer", "singularity"):  # the host's Apptainer, bound in at use
        (local_bin / name).unlink(missing_ok=True)
        (local_bin / name).symlink_to(f"{APPTAINER_PREFIX}/usr/bin/apptainer")
    (local_bin / "harness").symlink_to(f"{VENV}/bin/harness")


def build(force: bool = False) -> Path:
    """The node userland SIF, built unless one of the same key exists."""
    where, sif = node_dir(), sif_path()
    stamp = where / "key"
    wanted = key()
    if not force and sif.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return sif
    if shutil.which("debootstrap") is None or shutil.which("apptainer") is None:
        raise HarnessError("node image: debootstrap and apptainer are needed (make lab)")
    where.mkdir(parents=True, exist_ok=True)
    log = Log(where / "build.log")
    rootfs, wheels = where / "rootfs", where / "wheels"
    for tree in (rootfs, wheels):
        shutil.rmtree(tree, ignore_errors=True)
    log.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels),
             *requirements()])  # fmt: skip
    make_rootfs(log, rootfs, wheels)
    build_sif(log, rootfs, sif)
    shutil.rmtree(rootfs)
    stamp.write_text(wanted)
    return sif


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.lab.node", description=__doc__)
    p.add_argument("--force", action="store_true", help="rebuild even if it is up to date")
    args = p.parse_args(argv)
    try:
        print(build(args.force))
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
