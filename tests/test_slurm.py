"""`--executor slurm`: every iteration a Slurm job started by srun, followed with scontrol.

The first tests need nothing (the PMI rules, the `mpi` set comparison, the parsers and the
state table, on lines Slurm 22.05 printed on the lab, through the lifecycle's own verdict).
The others run real LAMMPS in real Apptainer containers under the lab's real single-node Slurm
(`bash scripts/slurm.sh start`): they skip with the reason where Slurm or the lab is not up,
and fail in CI (HARNESS_REQUIRE_LAB=1).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from harness import mpi
from harness.run.executors.core import Trace
from harness.run.executors.slurm_commands import (
    final_events,
    parse_exit,
    parse_job_line,
    parse_mpi_list,
    time_limit_minutes,
)
from harness.select import host as hostmod
from harness.select import matching
from tests.conftest import ROOT, cli, lab_missing, require, spawn

LAB_MANIFEST = ROOT / "containers" / "lab" / "manifests.yaml"
PREFIX = "127.0.0.1/lab/lammps-matrix:"

# Lines Slurm 22.05.8 printed on the lab (/tmp/slurm-notes.md, section 2).
COMPLETED = (
    "JobId=6 JobName=completed UserId=root(0) GroupId=root(0) MCS_label=N/A "
    "Priority=4294901754 Nice=0 Account=(null) QOS=(null) JobState=COMPLETED Reason=None "
    "Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 RunTime=00:00:00 "
    "TimeLimit=UNLIMITED TimeMin=N/A SubmitTime=2026-11-25T19:03:55 "
    "EligibleTime=2026-11-25T19:03:55 AccrueTime=2026-11-25T19:03:55 "
    "StartTime=2026-11-25T19:03:55 EndTime=2026-11-25T19:03:55 Deadline=N/A SuspendTime=None "
    "SecsPreSuspend=0 LastSchedEval=2026-11-25T19:03:55 Scheduler=Main Partition=debug "
    "AllocNode:Sid=localhost:13841 ReqNodeList=(null) ExcNodeList=(null) NodeList=localhost "
    "BatchHost=localhost NumNodes=1 NumCPUs=1 NumTasks=1 CPUs/Task=1 ReqB:S:C:T=0:0:*:* "
    "TRES=cpu=1,node=1,billing=1 Socks/Node=* NtasksPerN:B:S:C=0:0:*:* CoreSpec=* "
    "MinCPUsNode=1 MinMemoryNode=0 MinTmpDiskNode=0 Features=(null) DelayBoot=00:00:00 "
    "OverSubscribe=OK Contiguous=0 Licenses=(null) Network=(null) "
    "Command=/tmp/slurmx/states/completed.sh WorkDir=/tmp/slurmx/states "
    "StdErr=/tmp/slurmx/states/completed.err StdIn=/dev/null "
    "StdOut=/tmp/slurmx/states/completed.out Power="
)
MPI_LIST = (
    "MPI plugin types are...\n\tpmix\n\tnone\n\tcray_shasta\n\tpmi2\n"
    "specific pmix plugin versions available: pmix_v4\n"
)


def final(line: str, **changes: str) -> dict[str, str]:
    """The recorded line with the fields another final state had on the lab."""
    return {**parse_job_line(line), **changes}


def outcome(jobid: str, info: dict[str, str], asked: str | None, ran: bool):
    """(fault, timed out, exit code, signal) the lifecycle settles on for a job whose last
    `scontrol show job` line is `info`, when this harness cancelled it for `asked` (or not)."""
    trace = Trace(jobid, asked=asked)
    for event in final_events(jobid, info, ran):
        trace.add(event)
    trace.settle(interrupted=False)
    return trace.fault, trace.timed_out, trace.exit_code, trace.signal


# -- no Slurm needed ---------------------------------------------------------------------------
def test_scontrol_line_is_split_into_its_fields():
    info = parse_job_line(COMPLETED)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0"
    assert info["TRES"] == "cpu=1,node=1,billing=1"  # a value holding '='
    assert info["AllocNode:Sid"] == "localhost:13841" and info["CPUs/Task"] == "1"
    assert info["Power"] == "" and info["StdOut"] == "/tmp/slurmx/states/completed.out"
    spaced = parse_job_line("JobState=FAILED StdOut=/tmp/a b/c.out StdIn=/dev/null")
    assert spaced["StdOut"] == "/tmp/a b/c.out"
    assert parse_exit("17:0") == (17, 0) and parse_exit("0:15") == (0, 15)


def test_srun_mpi_list_and_time_limit():
    assert parse_mpi_list(MPI_LIST) == ["pmix", "none", "cray_shasta", "pmi2", "pmix_v4"]
    assert [time_limit_minutes(s) for s in (1, 60, 61, 300, 301.5)] == [1, 1, 2, 5, 6]


def test_the_job_state_decides_not_the_exit_code():
    """The lab's final states (notes, section 2): CANCELLED and TIMEOUT both end 0:15."""
    cancelled = final(COMPLETED, JobState="CANCELLED", ExitCode="0:15")
    fault, timed_out, code, sig = outcome("9", cancelled, None, True)
    assert fault.kind == "cancelled" and "JobState=CANCELLED" in fault.detail
    assert (timed_out, code, sig) == (False, 143, 15)
    # the same state after this harness's own timeout scancel: no fault, timed out
    assert outcome("9", cancelled, "timeout", True)[:2] == (None, True)
    timeout = final(COMPLETED, JobState="TIMEOUT", Reason="TimeLimit", ExitCode="143:0")
    assert outcome("81", timeout, None, True) == (None, True, 143, None)
    node = final(COMPLETED, JobState="NODE_FAIL", Reason="NodeDown", ExitCode="0:0")
    fault, timed_out, code, _ = outcome("94", node, None, True)
    assert (fault.kind, timed_out, code) == ("lost-instance", False, None)
    failed = final(COMPLETED, JobState="FAILED", Reason="NonZeroExitCode", ExitCode="17:0")
    assert outcome("52", failed, None, True) == (None, False, 17, None)
    pending = final(COMPLETED, JobState="CANCELLED", Reason="Resources", ExitCode="0:0")
    assert outcome("7", pending, "start-timeout", False) == (None, False, None, None)


def test_pmi_rules_choose_the_plugin_each_image_mpi_bootstraps_from():
    lab = ["pmix", "none", "cray_shasta", "pmi2", "pmix_v4"]
    assert mpi.choose_plugin("slurm", lab, "OpenMPI", "4.1.4")[0] == "pmix"
    assert mpi.choose_plugin("slurm", lab, "OpenMPI", "5.0.7")[0] == "pmix"
    assert mpi.choose_plugin("slurm", lab, "Open MPI", None)[0] == "pmix"
    assert mpi.choose_plugin("slurm", lab, "mpich", "4.0.2")[0] == "pmi2"
    assert mpi.choose_plugin("slurm", lab, "intel-mpi", "2021.10")[0] == "pmi2"
    assert mpi.choose_plugin("slurm", lab, None, None)[0] is None
    assert mpi.choose_plugin("slurm", ["pmi2", "none"], "OpenMPI", "4.1.4")[0] is None
    assert mpi.bootstrappable("slurm", lab) == ["OpenMPI", "mpich", "intel-mpi"]
    assert mpi.bootstrappable("slurm", ["pmi2"]) == ["mpich", "intel-mpi"]
    # Flux's simple PMI: Open MPI 4 (libpmi through FLUX_PMI_LIBRARY_PATH) and MPICH, not 5
    assert mpi.choose_plugin("flux", ["simple"], "OpenMPI", "4.1.4")[0] == "simple"
    assert mpi.choose_plugin("flux", ["simple"], "mpich", "4.0.2")[0] == "simple"
    assert mpi.choose_plugin("flux", ["simple"], "OpenMPI", "5.0.7")[0] is None
    assert mpi.choose_plugin("flux", ["simple", "pmix"], "OpenMPI", "5.0.7")[0] == "pmix"


def test_mpi_comparison_takes_a_host_set():
    assert matching.compare("mpi", "OpenMPI,mpich,intel-mpi", "openmpi")
    assert matching.compare("mpi", "OpenMPI,mpich", "MPICH")
    assert not matching.compare("mpi", "mpich,intel-mpi", "OpenMPI")
    assert matching.compare("mpi", "Open MPI", "OpenMPI")  # one name, aliases, as before
    assert not matching.compare("mpi", "OpenMPI", "mpich")
    assert not matching.compare("mpi", "OpenMPI", "")


def test_host_as_a_slurm_job_sees_it_round_trips_through_a_host_file(tmp_path):
    base = {hostmod.ARCH: "amd64", hostmod.MPI_IMPL: "OpenMPI", hostmod.MPI_VERSION: "4.1.4"}
    desc = hostmod.with_launcher_mpi(
        base,
        ["OpenMPI", "mpich"],
        {hostmod.SLURM_MPI_PLUGINS: "pmix,pmi2", hostmod.PMI: "pmi2,pmix"},
    )
    assert desc[hostmod.MPI_IMPL] == "OpenMPI,mpich" and hostmod.MPI_VERSION not in desc
    path = tmp_path / "host.json"
    path.write_text(hostmod.to_json(desc))
    assert hostmod.load(path) == desc


# -- under the lab's Slurm -----------------------------------------------------------------------
def slurm_missing() -> str | None:
    """Why Slurm jobs cannot run here, or None."""
    if why := lab_missing():
        return why
    for tool in ("srun", "scontrol", "scancel", "squeue"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-deps.sh installs Slurm)"
    status = subprocess.run(
        ["bash", str(ROOT / "scripts" / "slurm.sh"), "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if status.returncode != 0:
        return f"Slurm is not up (scripts/slurm.sh status exits {status.returncode}; start it)"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    """Skip where Slurm or the lab is absent, but fail in CI (HARNESS_REQUIRE_LAB=1)."""
    require("Slurm", slurm_missing())


def read_records(outdir: Path) -> list[dict]:
    return [json.loads(x) for x in (outdir / "records.jsonl").read_text().splitlines()]


def queued_jobs_of(outdir: Path) -> list[str]:
    """squeue lines of the jobs a run in `outdir` submitted (named after its attempts)."""
    names = {f"harness-{s.parent.name}-{s.stem}" for s in outdir.glob("logs/*/*.out")}
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i|%j|%T"], capture_output=True, text=True, check=True
    ).stdout
    return [line for line in out.splitlines() if line.split("|")[1] in names]


def job_ids(outdir: Path) -> set[str]:
    return {e["jobid"] for r in read_records(outdir) for e in r["events"] if e["name"] == "submit"}


def journaled_job(journal: Path, timeout: float = 120) -> str:
    """The job id a journal names, once the job runs."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        entry = json.loads(journal.read_text() or "{}") if journal.exists() else {}
        if entry.get("jobid"):
            state = subprocess.run(
                ["squeue", "-h", "-j", entry["jobid"], "-o", "%T"], capture_output=True, text=True
            ).stdout.strip()
            if state == "RUNNING":
                return entry["jobid"]
        time.sleep(0.2)
    raise AssertionError(f"no running job in {journal} within {timeout} s")


def lab_manifest(tmp_path: Path, tag: str, steps: int | None = None) -> Path:
    """One lab image; `steps` makes LAMMPS run longer (in.lj's `-var steps N`)."""
    entries = yaml.safe_load(LAB_MANIFEST.read_text())["images"]
    (entry,) = [e for e in entries if e["name"] == PREFIX + tag]
    if steps:
        entry["command"] = [*entry["command"], "-var", "steps", str(steps)]
    path = tmp_path / f"{tag}.yaml"
    path.write_text(yaml.safe_dump({"images": [entry]}))
    return path


# What each lab image does under `srun --mpi=PLUGIN` (the plugin data/pmi.yaml names), as
# measured (notes, section 1) and beside it what the host's mpirun gives (README's table,
# tests/test_lab.py). tag -> (reason, fragment of the evidence or None, plugin, JobState)
BIND = {
    "openmpi-debian-12-amd64": ("success", "on 2 procs", "pmix", "COMPLETED"),
    "openmpi-debian-opt-12-amd64": ("success", "on 2 procs", "pmix", "COMPLETED"),
    "openmpi-debian-v4-12-amd64": ("success", "on 2 procs", "pmix", "COMPLETED"),
    "openmpi-debian-11-amd64": ("os-abi", "GLIBC_2.34' not found", "pmix", "FAILED"),
    "openmpi-debian-13-amd64": ("os-abi", "libopen-rte.so.40", "pmix", "FAILED"),
    # mpirun: mpi-singleton (another MPI's launcher); srun --mpi=pmi2 starts MPICH's ranks
    "mpich-debian-12-amd64": ("success", "on 2 procs", "pmi2", "COMPLETED"),
    "openmpi-debian-gpu-11-amd64": ("os-abi", "GLIBC_2.34' not found", "pmix", "FAILED"),
    "openmpi-debian-gpu-12-amd64": ("gpu", "accelerator device", "pmix", "FAILED"),
    # MPI_INIT fails (ompi_op_init); the evidence today is the harmless PMIx gds line that
    # precedes it (reasons.yaml does not know it as noise yet): the stderr is checked instead
    "openmpi-debian-gpu-13-amd64": ("mpi", None, "pmix", "FAILED"),
    "openmpi-debian-12-arm64": ("arch", "architecture (arm64) could not run", None, None),
    "none-debian-12-amd64": ("missing-binary", "executable file not found", None, "FAILED"),
}
HYBRID = {
    **BIND,
    "openmpi-debian-11-amd64": ("success", "on 2 procs", "pmix", "COMPLETED"),
    # Open MPI 5 under srun: the ranks fall back to TCP and find no interface pair, exit 17
    # (under mpirun: success). No signature names that line yet: unknown, or mpi once one does
    "openmpi-debian-13-amd64": (("unknown", "mpi"), None, "pmix", "FAILED"),
    "openmpi-debian-gpu-11-amd64": ("gpu", "accelerator device", "pmix", "FAILED"),
    "openmpi-debian-gpu-13-amd64": ("gpu", "accelerator device", "pmix", "FAILED"),
}
STDERR = {
    ("bind", "openmpi-debian-gpu-13-amd64"): "ompi_op_init() failed",
    ("hybrid", "openmpi-debian-13-amd64"): "Unable to find reachable pairing",
}


@pytest.fixture(scope="module", params=["bind", "hybrid"])
def census(request, slurm, tmp_path_factory) -> tuple[str, dict[str, dict]]:
    """The lab census through `--executor slurm`, once per MPI model: image tag -> record."""
    model = request.param
    outdir = tmp_path_factory.mktemp(f"census-{model}")
    proc = cli(
        "census",
        "--manifests",
        str(LAB_MANIFEST),
        "--executor",
        "slurm",
        "--mpi-model",
        model,
        "--seed",
        "1",
        "--outdir",
        str(outdir),
    )
    assert proc.returncode == 0, proc.stderr
    recs = read_records(outdir)
    assert not queued_jobs_of(outdir)
    return model, {r["image"].removeprefix(PREFIX): r for r in recs}


@pytest.mark.lab
@pytest.mark.slurm
def test_census_under_slurm_gives_each_image_its_measured_outcome(census):
    model, by_tag = census
    expected = BIND if model == "bind" else HYBRID
    assert set(by_tag) == set(expected)
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "docs" / "record.schema.json").read_text())
    for tag, (reason, evidence, plugin, state) in expected.items():
        r = by_tag[tag]
        jsonschema.validate(r, schema)
        reasons = reason if isinstance(reason, tuple) else (reason,)
        assert r["reason"] in reasons, (tag, r["reason"], r["evidence"])
        assert evidence is None or evidence in r["evidence"], (tag, r["evidence"])
        assert (r["executor"], r["launcher"], r["mpi_model"]) == ("slurm", "srun", model)
        if fragment := STDERR.get((model, tag)):
            assert fragment in Path(r["stderr_path"]).read_text(), tag
        if state is None:  # the pull refused the image: no job
            assert r["argv"] == [] and r["fault"]["kind"] == "pull"
            continue
        assert r["argv"][0].endswith("srun") and r["fault"] is None
        mpi_flags = [a for a in r["argv"] if a.startswith("--mpi")]
        assert mpi_flags == ([f"--mpi={plugin}"] if plugin else []), (tag, mpi_flags)
        assert ("--bind" in r["argv"]) == (model == "bind")
        names = [e["name"] for e in r["events"]]
        assert names[:2] == ["pmi", "submit"] and names[-1] == "result" and "state" in names
        result = r["events"][-1]
        assert result["state"] == state and result["jobid"] == r["events"][1]["jobid"]
        assert r["timings"]["queue_s"] >= 0 and r["timings"]["run_s"] >= 0
        if r["reason"] == "success":
            assert r["exit_code"] == 0 and r["figures"]["procs"] == 2
        else:
            assert r["exit_code"] != 0
    if model == "hybrid":
        assert by_tag["openmpi-debian-13-amd64"]["exit_code"] == 17


@pytest.mark.lab
@pytest.mark.slurm
def test_host_under_slurm_keeps_the_images_its_plugins_can_start(slurm, tmp_path):
    """`harness host --executor slurm`: pmix and pmi2 bootstrap Open MPI and MPICH, so
    descriptive-mpi keeps both debian-12 images, and each runs on 2 procs."""
    proc = cli("host", "--executor", "slurm", "--json")
    assert proc.returncode == 0, proc.stderr
    desc = json.loads(proc.stdout)
    plugins = desc[hostmod.SLURM_MPI_PLUGINS].split(",")
    assert {"pmix", "pmi2"} <= set(plugins)
    assert {"OpenMPI", "mpich"} <= set(desc[hostmod.MPI_IMPL].split(","))
    (tmp_path / "host.json").write_text(proc.stdout)
    found = cli(
        "candidates",
        "--manifests",
        str(LAB_MANIFEST),
        "--mode",
        "descriptive-mpi",
        "--host",
        str(tmp_path / "host.json"),
        "--json",
    )
    assert found.returncode == 0, found.stderr
    assert sorted(json.loads(found.stdout)) == [
        PREFIX + "mpich-debian-12-amd64",
        PREFIX + "openmpi-debian-12-amd64",
        PREFIX + "openmpi-debian-opt-12-amd64",  # the same Open MPI 4 image, with OPT
        PREFIX + "openmpi-debian-v4-12-amd64",  # and built for x86-64-v4
    ]
    outdir = tmp_path / "out"
    run = cli(
        "run",
        "--manifests",
        str(LAB_MANIFEST),
        "--mode",
        "descriptive-mpi",
        "--iters",
        "3",
        "--seed",
        "4",
        "--executor",
        "slurm",
        "--outdir",
        str(outdir),
    )
    assert run.returncode == 0, run.stderr
    recs = read_records(outdir)
    assert [r["reason"] for r in recs] == ["success"] * 3
    assert {r["image"] for r in recs} <= set(json.loads(found.stdout))
    assert recs[0]["host"][hostmod.MPI_IMPL] == desc[hostmod.MPI_IMPL]


def harness_args(manifest: Path, outdir: Path, iters: int, *extra: str) -> list[str]:
    return [
        "run",
        "--manifests",
        str(manifest),
        "--mode",
        "random",
        "--iters",
        str(iters),
        "--seed",
        "1",
        "--executor",
        "slurm",
        "--outdir",
        str(outdir),
        *extra,
    ]


@pytest.mark.lab
@pytest.mark.slurm
def test_a_job_scancelled_by_someone_else_is_infra(slurm, tmp_path):
    outdir = tmp_path / "out"
    args = harness_args(lab_manifest(tmp_path, "openmpi-debian-12-amd64", 100000), outdir, 1)
    proc = spawn(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    jobid = journaled_job(outdir / "logs" / "random" / "iter-0000.slurm")
    time.sleep(1)
    subprocess.run(["scancel", jobid], check=True)  # another user, an admin
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    (r,) = read_records(outdir)
    assert r["reason"] == "infra" and r["source"] == "harness"
    assert r["fault"]["kind"] == "cancelled"
    assert f"job {jobid} cancelled by someone other" in r["fault"]["detail"]
    assert "JobState=CANCELLED" in r["evidence"] and not r["timed_out"]
    assert r["events"][-1]["state"] == "CANCELLED"
    assert "CANCELLED AT" in Path(r["stderr_path"]).read_text()  # slurmstepd's own line
    assert not (outdir / "logs" / "random" / "iter-0000.slurm").exists()


@pytest.mark.lab
@pytest.mark.slurm
def test_the_harness_enforces_its_timeout_before_slurms_time_limit(slurm, tmp_path):
    """--timeout 4: srun --time=1 (whole minutes; Slurm's TIMEOUT would come 60-90 s in),
    the harness scancels the job once it has run 4 s and records a timeout."""
    outdir = tmp_path / "out"
    manifest = lab_manifest(tmp_path, "mpich-debian-12-amd64", 100000)
    t0 = time.monotonic()
    proc = cli(*harness_args(manifest, outdir, 1, "--timeout", "4"))
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 50
    (r,) = read_records(outdir)
    assert r["timed_out"] and r["reason"] == "timeout" and r["fault"] is None
    submit = next(e for e in r["events"] if e["name"] == "submit")
    assert "--time=1" in submit["srun"] and submit["srun"] == r["argv"]
    assert [e["why"] for e in r["events"] if e["name"] == "cancel"] == ["timeout"]
    assert r["events"][-1]["state"] == "CANCELLED" and r["exit_code"] is not None


@pytest.mark.lab
@pytest.mark.slurm
def test_sigterm_leaves_no_job_in_squeue(slurm, tmp_path):
    outdir = tmp_path / "out"
    args = harness_args(lab_manifest(tmp_path, "openmpi-debian-12-amd64", 100000), outdir, 2)
    proc = spawn(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journaled_job(outdir / "logs" / "random" / "iter-0000.slurm")
    assert queued_jobs_of(outdir)
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    while queued_jobs_of(outdir) and time.monotonic() - t0 < 5:
        time.sleep(0.1)
    assert not queued_jobs_of(outdir), "a job of the run is still in squeue 5 s after SIGTERM"
    assert not (outdir / "records.jsonl").exists() or not (outdir / "records.jsonl").read_text()


@pytest.mark.lab
@pytest.mark.slurm
def test_kill_9_then_rerun_cancels_the_orphan_and_completes_the_run(slurm, tmp_path):
    outdir = tmp_path / "out"
    manifest = lab_manifest(tmp_path, "openmpi-debian-12-amd64", 800)
    args = harness_args(manifest, outdir, 2)
    proc = spawn(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    orphan = journaled_job(outdir / "logs" / "random" / "iter-0000.slurm")
    proc.kill()
    proc.wait()
    assert any(line.startswith(orphan + "|") for line in queued_jobs_of(outdir))  # left running
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    state = subprocess.run(
        ["scontrol", "show", "job", "-o", orphan], capture_output=True, text=True
    ).stdout
    assert "JobState=CANCELLED" in state  # the rerun scancelled it before submitting
    assert not queued_jobs_of(outdir)
    recs = read_records(outdir)
    assert [r["iteration"] for r in recs] == [0, 1]
    assert orphan not in job_ids(outdir) and len(job_ids(outdir)) == 2
    assert not list(outdir.glob("logs/random/*.slurm"))


@pytest.mark.lab
@pytest.mark.slurm
def test_more_ranks_than_the_partition_has_cpus_is_refused_before_the_run(slurm, tmp_path):
    """The request, not an image: one line, exit 2, nothing written, no job submitted."""
    outdir = tmp_path / "out"
    cpus = int(subprocess.run(["sinfo", "-h", "-o", "%C"], capture_output=True, text=True,
                              check=True).stdout.split()[0].split("/")[3])  # fmt: skip
    args = harness_args(lab_manifest(tmp_path, "openmpi-debian-12-amd64"), outdir, 1)
    proc = cli(*args, "--np", str(cpus + 1))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"harness: error: --np {cpus + 1}: the slurm executor has {cpus} slots here, so no "
        "image could run (lower --np)"
    ]
    assert not outdir.exists()
