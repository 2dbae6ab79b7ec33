"""Every lab image through `harness run`: the classification its known defect must produce.

These run real LAMMPS in real Apptainer containers started by the host's real MPI launcher,
pulled from the lab registry. They need the lab (`make lab`); CI requires it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from harness.run.executors.local import JOB_MARK, marked
from tests.conftest import ROOT, cli, spawn

LAB_MANIFEST = ROOT / "containers" / "lab" / "manifests.yaml"
PREFIX = "127.0.0.1/lab/lammps-matrix:"


def one_image_manifest(tmp_path: Path, tag: str) -> Path:
    entries = yaml.safe_load(LAB_MANIFEST.read_text())["images"]
    (entry,) = [e for e in entries if e["name"] == PREFIX + tag]
    path = tmp_path / f"{tag}.yaml"
    path.write_text(yaml.safe_dump({"images": [entry]}))
    return path


def run_once(tmp_path: Path, tag: str, *extra: str) -> dict:
    outdir = tmp_path / "out"
    proc = cli(
        "run",
        "--manifests",
        str(one_image_manifest(tmp_path, tag)),
        "--mode",
        "random",
        "--iters",
        "1",
        "--seed",
        "1",
        "--outdir",
        str(outdir),
        *extra,
    )
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(x) for x in (outdir / "records.jsonl").read_text().splitlines()]
    assert record["image"] == PREFIX + tag
    return record


HYBRID, BIND = ("--mpi-model", "hybrid"), ("--mpi-model", "bind")
CASES = [
    # tag, extra args, reason, a fragment of the evidence line from the real output;
    # bind (the default) binds the host's libmpi into the image, hybrid uses the image's own
    ("openmpi-debian-12-amd64", (), "success", "on 2 procs"),
    ("openmpi-debian-opt-12-amd64", (), "success", "on 2 procs"),
    ("openmpi-debian-v4-12-amd64", (), "success", "on 2 procs"),  # this CPU is x86-64-v4
    ("openmpi-debian-11-amd64", HYBRID, "success", "on 2 procs"),
    ("openmpi-debian-11-amd64", (), "os-abi", "GLIBC_2.34' not found"),
    ("openmpi-debian-13-amd64", HYBRID, "success", "on 2 procs"),
    ("openmpi-debian-13-amd64", BIND, "os-abi", "libopen-rte.so.40"),
    ("mpich-debian-12-amd64", (), "mpi-singleton", "on 1 procs"),
    ("mpich-debian-12-amd64", ("--launcher", "mpiexec.mpich"), "success", "on 2 procs"),
    ("openmpi-debian-gpu-11-amd64", HYBRID, "gpu", "accelerator device"),
    ("openmpi-debian-gpu-11-amd64", BIND, "os-abi", "GLIBC_2.34' not found"),
    ("openmpi-debian-gpu-12-amd64", (), "gpu", "accelerator device"),
    ("openmpi-debian-gpu-13-amd64", HYBRID, "gpu", "accelerator device"),
    # bullseye's Open MPI 4.1.0 in trixie under the host's 4.1.4 library: MPI fails to start,
    # with one of several lines (MPI_INIT failed, ompi_op_init, ORTE_ERROR_LOG)
    ("openmpi-debian-gpu-13-amd64", BIND, "mpi", ""),
    ("openmpi-debian-12-arm64", (), "arch", "architecture (arm64) could not run"),
    ("none-debian-12-amd64", (), "missing-binary", "executable file not found"),
]


@pytest.mark.lab
@pytest.mark.parametrize(("tag", "extra", "reason", "evidence"), CASES)
def test_lab_image_outcome(lab, tmp_path, tag, extra, reason, evidence):
    record = run_once(tmp_path, tag, *extra)
    assert (record["reason"], evidence in record["evidence"]) == (reason, True), record["evidence"]
    if reason == "success":
        figures = record["figures"]
        assert figures["procs"] == 2 and figures["loop_time_s"] > 0 and figures["atoms"] > 0
        assert record["exit_code"] == 0
    else:
        assert Path(record["stderr_path"]).is_file()


@pytest.mark.lab
def test_missing_tag_is_a_pull_failure(lab, tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"images": [{"name": PREFIX + "no-such-tag"}]}))
    proc = cli(
        "run",
        "--manifests",
        str(manifest),
        "--mode",
        "random",
        "--iters",
        "1",
        "--outdir",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "out" / "records.jsonl").read_text())
    assert record["reason"] == "pull" and "no-such-tag" in record["evidence"]


@pytest.mark.lab
def test_timeout(lab, tmp_path):
    record = run_once(tmp_path, "openmpi-debian-12-amd64", "--timeout", "1")
    assert record["reason"] == "timeout" and record["timed_out"]


@pytest.mark.lab
def test_kill_9_mid_iteration_then_resume(lab, tmp_path):
    """kill -9 while iteration 1 runs; the rerun completes 0..2 with no loss, no duplicate."""
    manifest = one_image_manifest(tmp_path, "openmpi-debian-12-amd64")
    outdir = tmp_path / "out"
    args = [
        "run",
        "--manifests",
        str(manifest),
        "--mode",
        "basic",
        "--iters",
        "3",
        "--seed",
        "5",
        "--outdir",
        str(outdir),
    ]
    proc = spawn(
        *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    records = outdir / "records.jsonl"
    journal = outdir / "logs" / "basic" / "iter-0001.job"  # the journal of iteration 1
    needle = job_processes_of(journal)
    os.killpg(proc.pid, signal.SIGKILL)  # the harness only: its job runs in a session of its own
    proc.wait()
    before = [json.loads(x)["iteration"] for x in records.read_text().splitlines()]
    assert before == [0]
    assert marked(needle)  # orphaned, still running
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert not marked(needle)  # the rerun killed what was left
    after = [json.loads(x) for x in records.read_text().splitlines()]
    assert [r["iteration"] for r in after] == [0, 1, 2]
    assert {r["seed"] for r in after} == {5}
    assert all(r["reason"] == "success" for r in after)


def job_processes_of(journal: Path, timeout: float = 300) -> bytes:
    """The mark of the job a journal names, once processes carrying it run."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        token = json.loads(journal.read_text()).get("name") if journal.exists() else ""
        if token and marked(needle := f"{JOB_MARK}={token}".encode()):
            return needle
        time.sleep(0.05)
    raise AssertionError(f"no job of {journal} ran within {timeout} s")


@pytest.mark.lab
def test_sigterm_stops_the_job_and_says_so(lab, tmp_path):
    """SIGTERM to the harness: one line, exit 143, no process of its job left 2 s later, no
    record of the interrupted iteration; a rerun completes the run."""
    manifest = one_image_manifest(tmp_path, "openmpi-debian-12-amd64")
    outdir = tmp_path / "out"
    args = ["run", "--manifests", str(manifest), "--mode", "random", "--iters", "2"]
    args += ["--seed", "2", "--outdir", str(outdir)]
    proc = spawn(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    needle = job_processes_of(outdir / "logs" / "random" / "iter-0000.job")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == [
        "harness: terminated; jobs in flight were stopped; rerun to resume"
    ]
    time.sleep(2)
    assert not marked(needle)
    assert not (outdir / "records.jsonl").exists() or not (outdir / "records.jsonl").read_text()
    assert cli(*args).returncode == 0
    assert len((outdir / "records.jsonl").read_text().splitlines()) == 2


@pytest.mark.lab
def test_descriptive_mpi_picks_only_images_that_run(lab, tmp_path):
    """The top of the gradient on the lab: every pick runs, for either host launcher."""
    for launcher in ("mpirun", "mpiexec.mpich"):
        outdir = tmp_path / launcher
        proc = cli(
            "run",
            "--manifests",
            str(LAB_MANIFEST),
            "--mode",
            "descriptive-mpi",
            "--iters",
            "3",
            "--seed",
            "3",
            "--launcher",
            launcher,
            "--outdir",
            str(outdir),
        )
        assert proc.returncode == 0, proc.stderr
        recs = [json.loads(x) for x in (outdir / "records.jsonl").read_text().splitlines()]
        assert [r["reason"] for r in recs] == ["success"] * 3
        wanted = "openmpi-" if launcher == "mpirun" else "mpich-"
        assert all(r["image"].startswith(PREFIX + wanted) for r in recs)


@pytest.mark.lab
def test_resume_refuses_another_experiment_and_a_second_writer(lab, tmp_path):
    """An outdir's mode resumes only as it was run, and by one harness at a time."""
    import fcntl

    manifest = one_image_manifest(tmp_path, "openmpi-debian-12-amd64")
    outdir = tmp_path / "out"
    args = ["run", "--manifests", str(manifest), "--mode", "basic", "--outdir", str(outdir)]
    assert cli(*args, "--iters", "1").returncode == 0
    other = cli(*args, "--iters", "2", "--np", "1")
    assert other.returncode == 2
    assert "already holds mode basic run with np 2" in other.stderr
    with (outdir / ".lock-basic").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        busy = cli(*args, "--iters", "2")
    assert busy.returncode == 2 and "another harness run is writing mode basic" in busy.stderr
    assert len((outdir / "records.jsonl").read_text().splitlines()) == 1


@pytest.mark.lab
def test_loader_check_names_what_a_bound_library_lacks_in_an_image(lab):
    """The image's own loader resolves a bound host library: bookworm loads the host's
    libmpi, bullseye lacks its glibc, MPICH's image lacks Open MPI's sibling libraries."""
    from harness.mpi import SONAMES, host_library
    from harness.run.loadcheck import bound_targets, loader_failure
    from harness.run.runtime import executable

    lib = host_library(SONAMES["OpenMPI"])
    binds = [f"{lib.resolve()}:{lib}"]
    assert bound_targets(binds) == [str(lib)]
    sifs = Path(os.environ.get("HARNESS_LAB_CACHE", "/var/cache/compat-harness/lab")) / "sif"
    runtime = executable()
    assert loader_failure(runtime, sifs / "openmpi-debian-12-amd64.sif", binds) is None
    glibc = loader_failure(runtime, sifs / "openmpi-debian-11-amd64.sif", binds)
    assert glibc is not None and "GLIBC_2.34' not found" in glibc, glibc
    missing = loader_failure(runtime, sifs / "mpich-debian-12-amd64.sif", binds)
    assert missing is not None and "libopen-rte.so.40 => not found" in missing, missing


@pytest.mark.lab
def test_census_gives_the_gradient_the_lab_is_built_for(lab, tmp_path):
    """On this host (Debian 12, Open MPI mpirun, no GPU, bind): every selection step removes a
    failure class, so the expected success rate rises strictly from mode to mode."""
    outdir = tmp_path / "census"
    proc = cli("census", "--manifests", str(LAB_MANIFEST), "--outdir", str(outdir), "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    report = cli("report", str(outdir), "--json")
    assert report.returncode == 0, report.stderr
    summary = json.loads(report.stdout)
    rate = {m: e["rate"] for m, e in summary["expected"].items()}
    assert (
        rate["random"] < rate["basic"] <= rate["platform"] < rate["platform-version"]
        < rate["descriptive-basic"] < rate["descriptive-mpi"] == 1.0
    ), rate  # fmt: skip
    reason = {k.rsplit(":", 1)[1]: max(v["reasons"], key=v["reasons"].get)
              for k, v in summary["images"].items()}  # fmt: skip
    sets = json.loads((outdir / "census.json").read_text())["modes"]
    failures = {
        mode: Counter(reason[c.rsplit(":", 1)[1]] for c in sets[mode]["candidates"])
        for mode in sets
    }
    for mode in ("basic", "platform"):
        (top, _), *_ = [kv for kv in failures[mode].most_common() if kv[0] != "success"]
        assert top == "os-abi", failures[mode]
    assert "gpu" in failures["platform-version"] and "gpu" not in failures["descriptive-basic"]


@pytest.mark.lab
def test_the_v4_build_needs_a_v4_host(lab, tmp_path):
    """The x86-64-v4 image's artifact carries the level its LAMMPS was built for (read from the
    program's "x86 ISA needed" note); an older CPU's host file leaves it out, and explain says
    which attribute did; with no census, descriptive-performance takes it first here."""
    haswell = ROOT / "examples" / "hosts" / "debian-12-amd64-haswell.yaml"
    args = ["--manifests", str(LAB_MANIFEST), "--mode", "descriptive-performance"]
    here = cli("candidates", *args, "--json")
    assert here.returncode == 0, here.stderr
    assert PREFIX + "openmpi-debian-v4-12-amd64" in json.loads(here.stdout)
    older = cli("candidates", *args, "--json", "--host", str(haswell))
    assert older.returncode == 0, older.stderr
    tags = {name.rsplit(":", 1)[1] for name in json.loads(older.stdout)}
    assert tags == {"openmpi-debian-12-amd64", "openmpi-debian-opt-12-amd64"}
    explain = cli("explain", *args, "--host", str(haswell), "--wide")
    out = " ".join(explain.stdout.split())
    assert "openmpi-debian-v4-12-amd64" in out and "out: io.archspec.cpu.microarchitecture" in out
    assert "x86_64_v4" in out and "haswell" in out
    run = cli(*["run", *args, "--iters", "2", "--seed", "1", "--outdir", str(tmp_path / "o")])
    assert run.returncode == 0, run.stderr
    assert "chooses by io.archspec.cpu.microarchitecture" in run.stderr
    recs = [json.loads(x) for x in (tmp_path / "o" / "records.jsonl").read_text().splitlines()]
    assert {(r["image"], r["reason"]) for r in recs} == {
        (PREFIX + "openmpi-debian-v4-12-amd64", "success")
    }


@pytest.mark.lab
def test_census_records_an_unpullable_image_and_goes_on(lab, tmp_path):
    manifest = tmp_path / "m.yaml"
    entries = yaml.safe_load(LAB_MANIFEST.read_text())["images"]
    (none,) = [e for e in entries if e["name"] == PREFIX + "none-debian-12-amd64"]
    missing = {"name": PREFIX + "no-such-tag", "artifact": PREFIX + "no-such-tag-compspec"}
    manifest.write_text(yaml.safe_dump({"images": [missing, none]}))
    outdir = tmp_path / "out"
    args = ["census", "--manifests", str(manifest), "--outdir", str(outdir)]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(x) for x in (outdir / "records.jsonl").read_text().splitlines()]
    assert {r["image"].rsplit(":", 1)[1]: r["reason"] for r in recs} == {
        "no-such-tag": "pull",
        "none-debian-12-amd64": "missing-binary",
    }


def test_prune_styles_keeps_the_named_styles_and_what_their_sources_include(tmp_path):
    """LAMMPS registers the styles whose files it finds: removing a style's files removes it
    from the build, except where a kept source includes its header."""
    from harness.lab.rootfs import prune_styles

    src = tmp_path / "src"
    src.mkdir()
    files = {
        "force.cpp": '#include "pair_hybrid.h"\n',  # core, not a style
        "pair_hybrid.h": "PairStyle(hybrid,PairHybrid);\n",
        "pair_lj_cut.h": "#ifdef PAIR_CLASS\nPairStyle(lj/cut,PairLJCut);\n#else\n",
        "pair_lj_cut.cpp": '#include "pair_lj_cut.h"\n#include "fix_store.h"\n',
        "fix_store.h": "FixStyle(STORE,FixStore);\n",
        "pair_morse.h": "PairStyle(morse,PairMorse);\n",
        "dump_atom.h": "DumpStyle(atom,DumpAtom);\n",
        "nbin_standard.h": "NBinStyle(NBinStandard,0);\n",
    }
    for name, text in files.items():
        (src / name).write_text(text)
        if name.endswith(".h") and name != "pair_lj_cut.h":
            (src / name.replace(".h", ".cpp")).write_text(f'#include "{name}"\n')
    removed = prune_styles(src, {"PairStyle": ("lj/cut",), "NBinStyle": ("*",)})
    assert removed == 2
    assert sorted(p.name for p in src.glob("*.cpp")) == [
        "fix_store.cpp",  # included by a kept style
        "force.cpp",
        "nbin_standard.cpp",  # "*"
        "pair_hybrid.cpp",  # included by a core source
        "pair_lj_cut.cpp",
    ]
    assert not (src / "pair_morse.h").exists() and not (src / "dump_atom.h").exists()
