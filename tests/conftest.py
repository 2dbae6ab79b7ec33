"""Shared test helpers: where the reference anchors are, and whether the lab is up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `harness ARGS...` as a user would, from the checkout."""
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )


def shared_dir() -> Path | None:
    """../shared beside the checkout (CI lays it there), or $HARNESS_SHARED."""
    for candidate in (os.environ.get("HARNESS_SHARED"), ROOT.parent / "shared"):
        if candidate and (Path(candidate) / "anchors").is_dir():
            return Path(candidate)
    return None


@pytest.fixture
def anchors() -> Path:
    """The reference experiment's files; CI (HARNESS_REQUIRE_LAB=1) has them, so it fails."""
    shared = shared_dir()
    if shared is None:
        if os.environ.get("HARNESS_REQUIRE_LAB") == "1":
            pytest.fail("the reference anchors are required here but ../shared is missing")
        pytest.skip("reference anchors not found: no ../shared beside the checkout")
    return shared / "anchors" / "lammps-matrix"


def lab_missing() -> str | None:
    """Why the lab cannot run here, or None when apptainer, MPI and the registry are up."""
    for tool in ("apptainer", "singularity", "mpirun"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/lab-up.sh installs it)"
    import requests

    try:
        requests.get("https://127.0.0.1/v2/", timeout=5)
    except requests.RequestException as exc:
        return f"lab registry on https://127.0.0.1 is not up ({type(exc).__name__})"
    return None


@pytest.fixture
def lab() -> None:
    """Skip where the lab is absent, but fail in CI, which sets HARNESS_REQUIRE_LAB=1."""
    require("the lab", lab_missing())


def require(what: str, why: str | None) -> None:
    """Skip with `why` where something is absent, but fail in CI (HARNESS_REQUIRE_LAB=1)."""
    if why is None:
        return
    if os.environ.get("HARNESS_REQUIRE_LAB") == "1":
        pytest.fail(f"{what} is required here but {why}")
    pytest.skip(why)


@pytest.fixture
def replay(monkeypatch):
    """Register the replay executor (tests/replay.py) as `--executor replay`."""
    from harness.run import executors

    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.setitem(executors.REGISTRY, "replay", "tests.replay:ReplayExecutor")
    return "replay"


def spawn(*args: str, **kw) -> subprocess.Popen:
    """Start `harness ARGS...` in the background from the checkout (text pipes by default)."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-m", "harness.cli", *args], cwd=ROOT, text=True, **kw)
