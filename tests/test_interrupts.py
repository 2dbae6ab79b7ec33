"""Faults of the harness itself on the lab: SIGKILL at random points, a full disk. Each ends with
exactly --iters records, the same image per iteration as an uninterrupted run of the same seed,
and no process of the run left."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from harness.run.executors.local import JOB_MARK
from tests.conftest import ROOT, cli, spawn

LAB_MANIFEST = ROOT / "containers" / "lab" / "manifests.yaml"
TAGS = ("openmpi-debian-12-amd64", "openmpi-debian-11-amd64")
ITERS = 6


def quick_manifest(tmp_path: Path) -> Path:
    """Two lab images running a short real command (a job of about a second)."""
    entries = yaml.safe_load(LAB_MANIFEST.read_text())["images"]
    chosen = [
        dict(e, command=["sleep", "0.3"]) for e in entries if e["name"].split(":")[-1] in TAGS
    ]
    assert len(chosen) == 2
    path = tmp_path / "quick.yaml"
    path.write_text(yaml.safe_dump({"images": chosen}))
    return path


def args_for(manifest: Path, outdir: Path) -> list[str]:
    return ["run", "--manifests", str(manifest), "--mode", "random", "--iters", str(ITERS),
            "--seed", "11", "--outdir", str(outdir)]  # fmt: skip


def images_of(outdir: Path) -> list[tuple[int, str]]:
    lines = (outdir / "records.jsonl").read_text().splitlines()
    return [(r["iteration"], r["image"]) for r in map(json.loads, lines)]


def marked_processes() -> list[int]:
    """Every live process carrying a job mark of the harness (any job, any run)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"{JOB_MARK}=".encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.lab
def test_sigkill_at_twenty_random_points(lab, tmp_path):
    manifest = quick_manifest(tmp_path)
    reference = tmp_path / "reference"
    assert cli(*args_for(manifest, reference)).returncode == 0
    outdir = tmp_path / "killed"
    rng = random.Random(2026)
    for _ in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", *args_for(manifest, outdir)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = cli(*args_for(manifest, outdir))
    assert done.returncode == 0, done.stderr
    assert images_of(outdir) == images_of(reference)
    time.sleep(0.5)
    assert marked_processes() == []


@pytest.mark.lab
def test_disk_full_stops_with_one_line_and_resumes(lab, tmp_path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    manifest = quick_manifest(tmp_path)
    reference = tmp_path / "reference"
    assert cli(*args_for(manifest, reference)).returncode == 0
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        free = shutil.disk_usage(small).free
        filler = small / "filler"
        filler.write_bytes(b"\0" * (free - 70 * 1024))  # room for a few iterations, not six
        outdir = small / "out"
        full = cli(*args_for(manifest, outdir))
        assert full.returncode == 2, full.stderr
        (line,) = full.stderr.strip().splitlines()
        assert line.startswith("harness: error: no space left on ") and "rerun" in line
        assert 0 < len(images_of(outdir)) < ITERS  # stopped mid-run, nothing half-recorded
        filler.unlink()
        again = cli(*args_for(manifest, outdir))
        assert again.returncode == 0, again.stderr
        assert images_of(outdir) == images_of(reference)
    finally:
        subprocess.run(["umount", str(small)], check=False)
    assert marked_processes() == []


@pytest.mark.lab
def test_a_registry_outage_mid_run_is_infra_and_redone(lab, tmp_path):
    """The registry goes away after the run has started: the iterations that needed a pull are
    the infrastructure's failures (infra, left out of the rate), not the image's, and a rerun
    once the registry is back redoes exactly them."""
    from harness.run.runner import pick

    manifest = quick_manifest(tmp_path)
    names = [e["name"] for e in yaml.safe_load(manifest.read_text())["images"]]
    # a seed that runs one image in iterations 0 and 1 (the registry stops during 1) and
    # needs the other, never pulled yet, later
    seed = next(
        s
        for s in range(1000)
        if [pick(names, s, "random", i) for i in (0, 1)] == [names[0]] * 2
        and names[1] in {pick(names, s, "random", i) for i in (2, 3)}
    )
    args = ["run", "--manifests", str(manifest), "--mode", "random", "--iters", "4"]
    args += ["--seed", str(seed), "--outdir", str(tmp_path / "out")]
    args += ["--sif-cache", str(tmp_path / "sifs")]
    proc = spawn(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = tmp_path / "out" / "records.jsonl"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (records.exists() and records.read_text()):
            time.sleep(0.05)
        subprocess.run(["bash", str(ROOT / "scripts/registry.sh"), "stop"], check=True)
        _, err = proc.communicate(timeout=300)
    finally:
        subprocess.run(["bash", str(ROOT / "scripts/registry.sh"), "start"], check=True)
    assert proc.returncode == 0, err
    recs = [json.loads(x) for x in records.read_text().splitlines()]
    infra = [r for r in recs if r["reason"] == "infra"]
    assert infra and all(r["image"] == names[1] for r in infra), recs
    assert all(r["fault"]["kind"] == "registry-unreachable" for r in infra)
    assert cli(*args).returncode == 0
    again = [json.loads(x) for x in records.read_text().splitlines()]
    assert [r["iteration"] for r in again] == [0, 1, 2, 3]
    assert not [r for r in again if r["reason"] == "infra"]


def test_ctrl_c_while_the_command_line_imports_is_one_line(tmp_path):
    """SIGINT raises KeyboardInterrupt wherever Python is: here, inside the import of a module
    the command line needs (a finder raises it, as the signal would), before harness.cli's own
    handler exists."""
    probe = (
        "import sys\n"
        "class CtrlC:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'harness.usage':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, CtrlC())\n"
        "from harness.__main__ import main\n"
        "sys.argv = ['harness', '--version']\n"
        "sys.exit(main())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == "harness: interrupted; rerun the same command to resume"
