"""Bad input ends in one line naming the cause, exit 2, no traceback, nothing half-written."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, cli
from tests.test_candidates import UBUNTU_JAMMY


def assert_one_line(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), proc.stderr
    assert fragment in lines[0]


@pytest.fixture
def run_args(tmp_path, anchors):
    host = tmp_path / "host.yaml"
    host.write_text(yaml.safe_dump(UBUNTU_JAMMY))
    return [
        "run",
        "--manifests",
        str(ROOT / "manifests.yaml"),
        "--host",
        str(host),
        "--cache",
        str(anchors / "compspec-cache"),
        "--iters",
        "1",
    ]


def needs_runtime() -> None:
    if shutil.which("apptainer") is None and shutil.which("singularity") is None:
        pytest.skip("apptainer is not installed: the run stops earlier, at the runtime check")
    if shutil.which("mpirun") is None:
        pytest.skip("mpirun is not installed: the run stops earlier, at the launcher check")


def test_missing_launcher(tmp_path, run_args):
    needs_runtime()
    out = tmp_path / "out"
    proc = cli(*run_args, "--mode", "basic", "--outdir", str(out), "--launcher", "no-such-mpirun")
    assert_one_line(proc, "MPI launcher 'no-such-mpirun' not found on PATH")
    assert not out.exists()


def test_missing_container_runtime(tmp_path, run_args):
    out = tmp_path / "out"
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}  # neither apptainer nor singularity
    proc = cli(*run_args, "--mode", "basic", "--outdir", str(out), env=env)
    assert_one_line(proc, "no container runtime: neither apptainer nor singularity is on PATH")
    assert not out.exists()


def test_unwritable_outdir(tmp_path):
    needs_runtime()
    sif = tmp_path / "local.sif"  # a local image: no registry, no artifact needed in `random`
    sif.write_text("")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"images": [{"name": str(sif)}]}))
    blocker = tmp_path / "file"
    blocker.write_text("")
    # Root may write anywhere: an outdir below a regular file is unwritable for everyone.
    out = blocker / "out"
    proc = cli(
        "run",
        "--manifests",
        str(manifest),
        "--mode",
        "random",
        "--iters",
        "1",
        "--outdir",
        str(out),
    )
    assert_one_line(proc, f"outdir {out}: Not a directory")


def test_bad_iters(tmp_path, run_args):
    proc = cli(*run_args, "--mode", "basic", "--outdir", str(tmp_path / "o"), "--iters", "0")
    assert_one_line(proc, "--iters must be at least 1")


def test_report_of_a_missing_outdir(tmp_path):
    assert_one_line(cli("report", str(tmp_path / "nothing")), "does not exist")


def test_classify_of_a_missing_path(tmp_path):
    assert_one_line(cli("classify", str(tmp_path / "nothing.log")), "no such file or directory")
