"""Several writers of one outdir at once, on the lab: four `harness run` of different modes and a
census, two of them killed (SIGKILL) and resumed, the registry stopped mid-way. Every iteration
is recorded exactly once and records.jsonl is valid line by line (`harness records check`)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from harness import records
from harness.run.executors.local import JOB_MARK
from tests.conftest import ROOT, cli, spawn
from tests.test_interrupts import marked_processes, quick_manifest

MODES = ("random", "basic", "platform", "platform-version")
ALL = (*MODES, "census")
ITERS = 6
REPEAT = 3  # census: each of the two images three times
# Marks this test's harnesses; their jobs inherit it (other tests may run jobs meanwhile).
RUN_TAG = ("HARNESS_TEST_RUN", uuid.uuid4().hex)
MARK = f"{JOB_MARK}=".encode()


def command(manifest: Path, outdir: Path, mode: str) -> list[str]:
    common = ["--manifests", str(manifest), "--outdir", str(outdir), "--seed", "5"]
    if mode == "census":
        return ["census", *common, "--repeat", str(REPEAT)]
    return ["run", *common, "--mode", mode, "--iters", str(ITERS)]


def start(manifest: Path, outdir: Path, mode: str, attempt: int) -> subprocess.Popen:
    env = dict(os.environ, **dict([RUN_TAG]))
    with (outdir.parent / f"{mode}.{attempt}.err").open("w") as err:  # the child keeps its copy
        return spawn(
            *command(manifest, outdir, mode), stdout=subprocess.DEVNULL, stderr=err, env=env
        )


def our_jobs() -> list[int]:
    """Live processes of jobs (the harness's job mark) started by this test's harnesses: those
    that inherited RUN_TAG (the launcher, the program) and the others of the same jobs."""
    environ = {}
    for pid in marked_processes():
        try:
            environ[pid] = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
    tag = "=".join(RUN_TAG).encode()
    marks = {e for env in environ.values() if tag in env for e in env if e.startswith(MARK)}
    return sorted(pid for pid, env in environ.items() if marks.intersection(env))


def recorded(outdir: Path) -> list[tuple[str, int, str]]:
    """(mode, iteration, reason) of every whole line, duplicates and all (no reader's check)."""
    path = records.records_path(outdir)
    lines = path.read_bytes().split(b"\n")[:-1] if path.exists() else []
    return [(r.mode, r.iteration, r.reason) for r in map(records.parse, lines)]


def wait_until_all_run(outdir: Path) -> None:
    """Until every run is past its start (its mode's lock taken) and some record is written."""
    deadline = time.time() + 120
    while time.time() < deadline:
        if all((outdir / f".lock-{m}").exists() for m in ALL) and recorded(outdir):
            return
        time.sleep(0.05)
    pytest.fail("the runs did not start in time")


def kill_one(procs: dict[str, subprocess.Popen], rng: random.Random) -> str:
    """SIGKILL a run that is still running (one that ends just before does not count)."""
    while running := [m for m, p in procs.items() if p.poll() is None]:
        mode = rng.choice(running)
        procs[mode].send_signal(signal.SIGKILL)
        if procs[mode].wait() == -signal.SIGKILL:
            return mode
    pytest.fail("every run ended before it could be killed")


def registry(action: str) -> None:
    subprocess.run(["bash", str(ROOT / "scripts/registry.sh"), action], check=True)


@pytest.mark.lab
def test_four_modes_and_a_census_at_once_killed_resumed_and_a_registry_outage(lab, tmp_path):
    manifest = quick_manifest(tmp_path)
    outdir = tmp_path / "out"
    rng = random.Random()
    expected = Counter({(m, i): 1 for m in MODES for i in range(ITERS)})
    expected.update({("census", i): 1 for i in range(2 * REPEAT)})
    procs = {m: start(manifest, outdir, m, 0) for m in ALL}
    try:
        wait_until_all_run(outdir)
        registry("stop")  # mid-way: whoever resolves an image now records infra
        try:
            first = kill_one(procs, rng)
            time.sleep(rng.uniform(0.5, 1.5))
        finally:
            registry("start")
        procs[first] = start(manifest, outdir, first, 1)
        time.sleep(rng.uniform(0.5, 2.0))
        second = kill_one(procs, rng)
        procs[second] = start(manifest, outdir, second, 2 if second == first else 1)
        for p in procs.values():
            p.wait(timeout=180)
    finally:
        registry("start")
        for p in procs.values():
            p.kill()
    # every mode again, all at once, redoing its infra records: rewrites of records.jsonl
    # beside the others' appends
    again = {m: start(manifest, outdir, m, 3) for m in ALL}
    for m, p in again.items():
        assert p.wait(timeout=180) == 0, (tmp_path / f"{m}.3.err").read_text()
    got = recorded(outdir)
    assert Counter((m, i) for m, i, _ in got) == expected  # each exactly once
    assert [r for r in got if r[2] == "infra"] == []
    assert len(list(records.read(outdir))) == len(got)
    done = cli("records", "check", str(outdir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(f": {len(got)} records, {len(ALL)} modes, ok")
    time.sleep(0.5)
    assert our_jobs() == []
