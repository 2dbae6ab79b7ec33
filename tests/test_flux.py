"""The Flux executor, detach/status and prepull against a real Flux instance.

Every test that needs Flux starts a real one (`flux start --test-size=2`, two brokers on this
machine) and submits real jobs through the Python bindings. Where flux-core is not installed
(no package registry has it) those tests skip with the reason; HARNESS_REQUIRE_FLUX=1 turns the
skip into a failure. Tests that run LAMMPS also need the lab (its SIF images).

Interrupts, kill -9 and operator cancels are tested through `harness run` as a user runs it (a
subprocess), against `flux jobs`' view of the instance: no job of the run may outlive it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import records
from harness.errors import HarnessError
from harness.judge.classify import classify
from harness.judge.faults import Fault
from harness.run.executors.base import Job
from tests.conftest import ROOT, cli, spawn

LAB_SIF = Path("/var/cache/compat-harness/lab/sif")
BOOKWORM = "openmpi-debian-12-amd64"
LAB_MANIFEST = ROOT / "containers" / "lab" / "manifests.yaml"
PREFIX = "127.0.0.1/lab/lammps-matrix:"


def _need_flux() -> str:
    flux = shutil.which("flux")
    if flux is None:
        why = (
            "flux-core is not installed (no package registry has it; build it from source "
            "and put its bin/ on PATH)"
        )
        if os.environ.get("HARNESS_REQUIRE_FLUX") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return flux


def _flux_pythonpath(flux: str) -> str | None:
    out = subprocess.run([flux, "env"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("export PYTHONPATH="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


@pytest.fixture(scope="session")
def flux_instance():
    """FLUX_URI of a `flux start --test-size=2` instance running for the whole session."""
    flux = _need_flux()
    pypath = _flux_pythonpath(flux)
    for entry in reversed((pypath or "").split(":")):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)
    os.environ["PYTHONPATH"] = ":".join(p for p in (pypath, os.environ.get("PYTHONPATH")) if p)
    from harness.run.executors.flux_api import bindings

    try:
        bindings()
    except HarnessError as exc:
        pytest.skip(str(exc))
    # The instance lives as long as `cat` reads its stdin: closing it shuts the instance down.
    proc = subprocess.Popen(
        [flux, "start", "--test-size=2", "sh", "-c", 'echo "$FLUX_URI"; exec cat'],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    uri = proc.stdout.readline().strip()
    if not uri:
        proc.kill()
        pytest.fail("flux start printed no FLUX_URI")
    before = os.environ.get("FLUX_URI")
    os.environ["FLUX_URI"] = uri
    yield uri
    if before is None:
        os.environ.pop("FLUX_URI", None)
    else:
        os.environ["FLUX_URI"] = before
    proc.stdin.close()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def executor(flux_instance):
    from harness.run.executors.flux import FluxExecutor

    ex = FluxExecutor()
    ex.preflight()
    return ex


class OwnInstance:
    """A `flux start --test-size=1` instance of one test, which the test may kill."""

    def __init__(self, flux: str):
        self.flux = flux
        self.proc = subprocess.Popen(
            [flux, "start", "--test-size=1", "sh", "-c", 'echo "$FLUX_URI"; exec cat'],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: kill() takes the brokers with it
        )
        self.uri = self.proc.stdout.readline().strip()
        if not self.uri:
            self.kill()
            pytest.fail("flux start printed no FLUX_URI")

    def flux_cmd(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "FLUX_URI": self.uri}
        return subprocess.run(
            [self.flux, *args], env=env, capture_output=True, text=True, check=True, timeout=60
        )

    def kill(self) -> None:
        """kill -9 the whole instance (flux start and its brokers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def own_instance(flux_instance):
    """A separate instance (its own FLUX_URI), stopped or killed by the test at will."""
    instances = []

    def start() -> OwnInstance:
        instances.append(OwnInstance(_need_flux()))
        return instances[-1]

    yield start
    for inst in instances:
        inst.close()


@pytest.fixture(scope="session")
def tiny_sif(tmp_path_factory) -> Path:
    """A SIF of the host's `sleep`, `true` and `sh` (with their C library): the lab's images are
    not needed to follow a job that never starts, an instance that dies or an interrupted run."""
    apptainer = shutil.which("apptainer")
    if apptainer is None or shutil.which("mksquashfs") is None:
        pytest.skip("apptainer (with mksquashfs) is not installed")
    root = tmp_path_factory.mktemp("tiny") / "root"
    files = [Path(shutil.which(name)) for name in ("sleep", "true", "sh")]
    libs = []
    for f in files:
        ldd = subprocess.run(["ldd", str(f)], capture_output=True, text=True).stdout
        libs += [Path(w) for line in ldd.splitlines() for w in line.split() if w.startswith("/")]
    for f in files:
        (root / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / "bin" / f.name)
    for lib in libs:
        (root / lib.relative_to("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, root / lib.relative_to("/"))
    sif = root.parent / "tiny.sif"
    subprocess.run([apptainer, "build", "-F", str(sif), str(root)], capture_output=True, check=True)
    return sif


@pytest.fixture(scope="session")
def bookworm_sif(tmp_path_factory) -> Path:
    """The lab's bookworm SIF: from the lab cache, else pulled from the lab registry."""
    local = LAB_SIF / f"{BOOKWORM}.sif"
    if local.is_file():
        return local
    from tests.conftest import lab_missing

    why = lab_missing()
    if why is None:
        from harness.run.runtime import ImageCache

        pulled = ImageCache(tmp_path_factory.mktemp("sif")).pull(
            f"127.0.0.1/lab/lammps-matrix:{BOOKWORM}"
        )
        if pulled.path is not None:
            return pulled.path
        why = pulled.error
    if os.environ.get("HARNESS_REQUIRE_LAB") == "1":
        pytest.fail(f"the lab is required here but {why}")
    pytest.skip(why)


def _job(tmp_path: Path, sif: Path, command, np=1, timeout=120.0, workdir=None, name="j"):
    return Job(
        sif,
        tuple(command),
        np,
        workdir,
        "hybrid",
        timeout,
        tmp_path / f"{name}.out",
        tmp_path / f"{name}.err",
    )


def _text(job: Job) -> str:
    return job.stdout.read_text() + "\n" + job.stderr.read_text()


def _stamp(result, name: str) -> float:
    (ts,) = [e["timestamp"] for e in result.events if e["name"] == name]
    return ts


# --- without Flux ---------------------------------------------------------------------------
def test_missing_bindings_say_how_to_install():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(
        [sys.executable, "-c", "import flux"], env=env, cwd=ROOT, capture_output=True
    )
    if probe.returncode == 0:
        pytest.skip("the Flux bindings are installed in this interpreter itself")
    code = (
        "from harness.run.executors.flux import FluxExecutor\n"
        "from harness.errors import HarnessError\n"
        "try:\n    FluxExecutor().preflight()\n"
        "except HarnessError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.count("\n") == 1, out
    assert "Flux Python bindings are not importable" in out
    assert "pip install flux-python" in out


def test_status_from_records(tmp_path):
    from harness.run.status import status, status_rows

    for i, reason in enumerate(["success", "os-abi", "success"]):
        records.append(
            tmp_path,
            records.Record(
                iteration=i,
                mode="platform",
                seed=7,
                host={},
                candidates=["a"],
                image="a",
                artifact=None,
                artifact_digest=None,
                image_digest=None,
                executor="flux",
                launcher="flux",
                mpi_model="hybrid",
                np=2,
                argv=[],
                exit_code=0,
                signal=None,
                timed_out=False,
                pulled=False,
                timings=records.Timings(),
                stdout_path=None,
                stderr_path=None,
                figures={},
                reason=reason,
                evidence="",
                started_at=f"2026-01-01T00:00:0{i}+00:00",
            ),
        )
    (tmp_path / "flux-detached.json").write_text(
        '{"jobid": "f1", "mode": "platform", "iters": 30, "argv": ["run"]}\n'
    )
    (row,) = status_rows(tmp_path)
    assert (row.mode, row.done, row.target, row.job) == ("platform", 3, 30, "f1")
    assert dict(row.reasons) == {"success": 2, "os-abi": 1}
    table = status(tmp_path).splitlines()
    assert table[0].split()[:3] == ["mode", "done", "of"]
    assert table[1].split()[:3] == ["platform", "3", "30"]
    assert "2026-01-01T00:00:02+00:00" in table[1]


def test_prepull_shows_apptainers_fatal_line():
    from harness.run.prepull import PullResult, error_line, format_report

    error = (
        "INFO:    Converting OCI blobs to SIF format\n"
        "WARNING: 'nodev' mount option set on /tmp\n"
        "FATAL:   While making image from oci registry: manifest unknown\n"
    )
    assert error_line(error) == "FATAL:   While making image from oci registry: manifest unknown"
    assert error_line("ERROR: no such tag\nmore") == "ERROR: no such tag"
    assert error_line("\nsomething else\nsecond") == "something else"  # no FATAL: the first
    assert error_line("") == ""
    row = PullResult("n0", 0, "img", False, False, 0.1, None, error)
    (line,) = format_report([row]).splitlines()[1:]
    assert line.endswith("FATAL:   While making image from oci registry: manifest unknown")


# An eventlog as `flux job eventlog -f json` prints it (flux-core 0.88, the lab): a job an
# operator cancelled while it ran, and a wait status of each kind.
EVENTLOG = [
    '{"timestamp":1765044000.10,"name":"submit","context":{"userid":0,"urgency":16,"flags":0}}',
    '{"timestamp":1765044000.11,"name":"validate"}',
    '{"timestamp":1765044000.12,"name":"depend"}',
    '{"timestamp":1765044000.13,"name":"priority","context":{"priority":16}}',
    '{"timestamp":1765044000.25,"name":"alloc"}',
    '{"timestamp":1765044000.31,"name":"start"}',
    '{"timestamp":1765044003.40,"name":"exception","context":{"type":"cancel","severity":0,'
    '"userid":0,"note":"node needed"}}',
    '{"timestamp":1765044003.52,"name":"finish","context":{"status":15}}',
    '{"timestamp":1765044003.60,"name":"release","context":{"ranks":"all","final":true}}',
    '{"timestamp":1765044003.61,"name":"free"}',
    '{"timestamp":1765044003.62,"name":"clean"}',
]


def test_the_eventlog_is_the_lifecycles_whole_story():
    """flux_events translates each entry; the lifecycle's verdict on it is an operator's cancel
    (fault cancelled), the signal as 128+n, queue time to alloc, run time start to finish."""
    from harness.run.executors import core, flux_events

    trace, state = core.Trace("f2bJ"), "NEW"
    for line in EVENTLOG:
        entry = json.loads(line)
        name, context = entry["name"], entry.get("context", {})
        trace.add(flux_events.translate("f2bJ", name, entry["timestamp"], context))
        state = flux_events.state_after(state, name, context)
    trace.add(core.Event(core.ENDED))
    trace.settle(interrupted=False)
    assert [e["name"] for e in trace.events][:2] == ["submit", "validate"]
    assert trace.events[0]["jobid"] == "f2bJ" and state == "INACTIVE"
    assert (trace.exit_code, trace.signal, trace.timed_out) == (143, 15, False)
    assert trace.fault == Fault(
        "cancelled", "flux: job f2bJ cancelled by user 0, not by this harness: node needed"
    )
    assert trace.timings(end=0.0) == pytest.approx((0.15, 3.21))
    own = core.Trace("f2bJ", asked="timeout")  # the same end after this harness's own cancel
    for line in EVENTLOG:
        entry = json.loads(line)
        own.add(flux_events.translate("f2bJ", entry["name"], 0.0, entry.get("context", {})))
    own.settle(interrupted=False)
    assert (own.fault, own.timed_out) == (None, True)


@pytest.mark.parametrize(
    ("context", "kind"),
    [
        ({"type": "timeout", "severity": 0, "note": "resource allocation expired"}, "timeout"),
        ({"type": "exec", "severity": 0, "note": "task 0: start failed"}, "ending"),
        ({"type": "exec", "severity": 1, "note": "lost one of two shells"}, "note"),
    ],
)
def test_exceptions_other_than_a_cancel(context, kind):
    from harness.run.executors import flux_events

    assert flux_events.translate("f1", "exception", 1.0, context).kind == kind
    assert flux_events.wait_status(256) == (1, None) and flux_events.wait_status(9) == (137, 9)
    assert flux_events.waiting("SCHED") == "state SCHED: waiting for resources, or held"


def test_shell_pmi_plugins_find_flux_pmix(tmp_path):
    """simple always; pmix when the flux-pmix shell plugin (DIR/pmix/pmix.so) is on the path."""
    from harness.run.executors.flux_jobspec import shell_pmi_plugins

    plain, with_pmix = tmp_path / "plain", tmp_path / "pmix-installed"
    plain.mkdir()
    (with_pmix / "pmix").mkdir(parents=True)
    (with_pmix / "pmix" / "pmix.so").write_bytes(b"")
    assert shell_pmi_plugins(None) == ["simple"]
    assert shell_pmi_plugins(str(plain)) == ["simple"]
    assert shell_pmi_plugins(f"{plain}:{with_pmix}") == ["simple", "pmix"]


# --- under a real Flux instance -----------------------------------------------------------------
def test_preflight_dead_instance_is_one_line(flux_instance, monkeypatch, tmp_path):
    from harness.run.executors.flux import FluxExecutor

    monkeypatch.setenv("FLUX_URI", f"local://{tmp_path}/no-broker")
    with pytest.raises(HarnessError) as info:
        FluxExecutor().preflight()
    assert "\n" not in str(info.value)
    assert f"Flux instance at local://{tmp_path}/no-broker is not reachable" in str(info.value)


def test_preflight_no_uri_no_system_instance(flux_instance, monkeypatch):
    from harness.run.executors.flux import FluxExecutor

    if Path("/run/flux/local").exists():
        pytest.skip("this machine runs a Flux system instance")
    monkeypatch.delenv("FLUX_URI")
    with pytest.raises(HarnessError, match="no Flux instance reachable"):
        FluxExecutor().preflight()


def test_lammps_on_two_ranks(executor, bookworm_sif, tmp_path):
    job = _job(
        tmp_path, bookworm_sif, ["lmp", "-in", "in.lj"], np=2, workdir="/opt/lab", timeout=300
    )
    result = executor.run(job)
    verdict = classify(_text(job), exit_code=result.exit_code, ranks=2, timed_out=result.timed_out)
    assert (result.exit_code, verdict.reason) == (0, "success"), verdict.evidence
    assert "on 2 procs" in verdict.evidence
    names = [e["name"] for e in result.events]
    for name in ("submit", "alloc", "start", "finish", "clean"):
        assert name in names
    assert result.queue_s == pytest.approx(_stamp(result, "alloc") - _stamp(result, "submit"))
    assert result.run_s == pytest.approx(_stamp(result, "finish") - _stamp(result, "start"))
    assert result.run_s > 0
    assert result.argv[1] == "exec" and str(bookworm_sif) in result.argv


def test_exit_code_from_finish_event(executor, bookworm_sif, tmp_path):
    result = executor.run(_job(tmp_path, bookworm_sif, ["sh", "-c", "exit 3"]))
    assert result.exit_code == 3
    assert not result.timed_out
    (final,) = [e for e in result.events if e["name"] == "result"]
    assert (final["result"], final["returncode"]) == ("FAILED", 3)


def test_timeout_is_an_exception(executor, bookworm_sif, tmp_path):
    job = _job(tmp_path, bookworm_sif, ["sleep", "120"], timeout=2)
    result = executor.run(job)
    assert result.timed_out
    (exc,) = [e for e in result.events if e["name"] == "exception"]
    assert exc["context"]["type"] == "timeout" and exc["context"]["severity"] == 0
    assert result.run_s < 60
    assert "type=timeout severity=0" in job.stderr.read_text()
    verdict = classify(_text(job), exit_code=result.exit_code, ranks=1, timed_out=True)
    assert verdict.reason == "timeout"


def test_environment_is_passed(executor, bookworm_sif, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_FLUX_PROBE", "probe-4711")
    job = _job(tmp_path, bookworm_sif, ["sh", "-c", 'echo "probe=$HARNESS_FLUX_PROBE"'])
    result = executor.run(job)
    assert result.exit_code == 0
    assert "probe=probe-4711" in job.stdout.read_text()


def test_missing_binary(executor, bookworm_sif, tmp_path):
    job = _job(tmp_path, bookworm_sif, ["no-such-program-here"])
    result = executor.run(job)
    assert result.exit_code != 0
    verdict = classify(_text(job), exit_code=result.exit_code, ranks=1, timed_out=False)
    assert verdict.reason == "missing-binary", verdict


def test_kvs_output_mode(flux_instance, bookworm_sif, tmp_path):
    from harness.run.executors.flux import FluxExecutor

    ex = FluxExecutor(output="kvs")
    ex.preflight()
    job = _job(tmp_path, bookworm_sif, ["sh", "-c", "echo to-out; echo to-err >&2"], np=2)
    result = ex.run(job)
    assert result.exit_code == 0
    assert job.stdout.read_text().splitlines() == ["to-out", "to-out"]
    assert "to-err" in job.stderr.read_text()


def test_threads_get_their_own_handle(executor, bookworm_sif, tmp_path):
    results, handles = {}, {}

    def work(i):
        handles[i] = executor.handle()
        job = _job(tmp_path, bookworm_sif, ["sh", "-c", 'echo "id=$FLUX_JOB_ID"'], name=f"t{i}")
        results[i] = (executor.run(job), job.stdout.read_text())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(h) for h in handles.values()}) == 3
    assert all(r.exit_code == 0 for r, _ in results.values())
    assert len({out for _, out in results.values()}) == 3  # three different jobs


def test_image_shell_options_reach_the_jobspec(executor, bookworm_sif, tmp_path):
    from harness.run.executors.flux import FluxExecutor

    ex = FluxExecutor(
        image_settings={
            bookworm_sif.name: {"shell_options": {"pmi": "simple"}, "env": {"X_PER_IMAGE": "1"}}
        }
    )
    ex.preflight()
    job = _job(tmp_path, bookworm_sif, ["sh", "-c", 'echo "x=$X_PER_IMAGE"'], np=2)
    js = ex.jobspec(job)
    assert js.attributes["system"]["shell"]["options"]["pmi"] == "simple"
    result = ex.run(job)
    assert result.exit_code == 0
    assert job.stdout.read_text().count("x=1") == 2
    with pytest.raises(HarnessError, match="unknown image setting"):
        FluxExecutor(image_settings={bookworm_sif.name: {"shel_options": {}}}).settings(job)


def test_pmi_library_is_bound(executor, bookworm_sif, tmp_path):
    from harness.run.executors.flux_jobspec import pmi_binds, pmi_library_path

    pmi = pmi_library_path()
    assert pmi is not None and pmi.is_file()
    # inside the image, the library Open MPI loads must be there with its sibling libraries
    job = _job(tmp_path, bookworm_sif, ["sh", "-c", 'ldd "$FLUX_PMI_LIBRARY_PATH"'])
    result = executor.run(job)
    out = job.stdout.read_text()
    assert result.exit_code == 0, job.stderr.read_text()
    assert "libflux-idset.so.1 =>" in out and "libflux-idset.so.1 => not found" not in out
    assert any(str(pmi.parent.parent) in spec for spec in pmi_binds(pmi))
    # what the loader check of a failed job needs: the bound library by name, and the runtime
    assert f"{pmi}:{pmi}:ro" in result.binds
    assert result.runtime and Path(result.runtime).name in ("apptainer", "singularity")


def test_pmi_library_path_from_the_bindings(flux_instance, monkeypatch):
    """flux_conf_builtin_get through the bindings: what `flux config builtin` prints, with no
    subprocess."""
    from harness.run.executors import flux_jobspec as fluxmod

    monkeypatch.delenv("FLUX_PMI_LIBRARY_PATH", raising=False)
    flux = _need_flux()
    want = subprocess.run(
        [flux, "config", "builtin", "pmi_library_path"], capture_output=True, text=True, check=True
    ).stdout.strip()

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"a subprocess was started: {args}")

    monkeypatch.setattr(fluxmod.subprocess, "run", no_subprocess)
    assert fluxmod.pmi_library_path() == Path(want)
    monkeypatch.setenv("FLUX_PMI_LIBRARY_PATH", "/elsewhere/libpmi.so")
    assert fluxmod.pmi_library_path() == Path("/elsewhere/libpmi.so")


def test_recorded_argv_holds_the_jobs_tmpdir(executor, tiny_sif, tmp_path):
    """The argv recorded is what ran: {{tmpdir}} as the shell expanded it, not the template."""
    job = _job(tmp_path, tiny_sif, ["sh", "-c", 'echo "$FLUX_JOB_TMPDIR"'])
    result = executor.run(job)
    assert result.exit_code == 0, job.stderr.read_text()
    tmpdir = job.stdout.read_text().strip()
    assert "/jobtmp-0-" in tmpdir
    assert not any("{{" in a for a in result.argv), result.argv
    assert result.argv[result.argv.index(tmpdir) - 1] == "--bind"


def test_host_as_a_flux_job_sees_it(flux_instance):
    """Under Flux the host's MPI is what the instance's shell bootstraps (harness/data/pmi.yaml),
    not the MPI behind mpirun: Open MPI 4 through libpmi.so, MPICH through simple PMI."""
    from harness.run.executors.flux import FluxExecutor
    from harness.select import host as hostmod

    ex = FluxExecutor()
    desc = ex.describe_host(hostmod.detect("mpirun"))
    impls = set(desc[hostmod.MPI_IMPL].split(","))
    assert {"OpenMPI", "mpich"} <= impls
    assert hostmod.MPI_VERSION not in desc  # a set of implementations has no one version
    pmi = desc[hostmod.PMI].split(",")
    assert pmi[:2] == ["pmi-simple", "flux-libpmi"]
    assert ("pmix" in pmi) == ("pmix" in ex.shell_pmi())  # PMIx only with flux-pmix
    proc = cli("host", "--executor", "flux", "--json")
    if "invalid choice: 'flux'" in proc.stderr:
        pytest.skip("`harness host --executor` does not offer flux yet (harness/cli.py)")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[hostmod.MPI_IMPL] == desc[hostmod.MPI_IMPL]


def _lab_records(outdir: Path) -> list[dict]:
    return [json.loads(x) for x in (outdir / "records.jsonl").read_text().splitlines()]


@pytest.mark.lab
def test_descriptive_mpi_under_flux_runs_every_pick(flux_instance, lab, tmp_path):
    """The top of the gradient under Flux: the host's MPI is what a Flux job bootstraps, so the
    MPICH image is a candidate beside Open MPI 4, and every pick runs (100 %)."""
    outdir = tmp_path / "out"
    proc = cli(
        "run", "--executor", "flux", "--manifests", str(LAB_MANIFEST), "--mode",
        "descriptive-mpi", "--iters", "4", "--seed", "3", "--outdir", str(outdir),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    recs = _lab_records(outdir)
    # the MPICH image beside the three Open MPI 4 images of Debian 12 (plain, OPT, x86-64-v4)
    tags = ["mpich-debian-12-amd64", BOOKWORM, "openmpi-debian-opt-12-amd64"]
    tags.append("openmpi-debian-v4-12-amd64")
    assert sorted(recs[0]["candidates"]) == sorted(PREFIX + t for t in tags)
    assert [r["reason"] for r in recs] == ["success"] * 4, [r["evidence"] for r in recs]
    assert {r["image"] for r in recs} <= set(recs[0]["candidates"])
    assert all(r["figures"]["procs"] == 2 for r in recs)


@pytest.mark.lab
def test_bullseye_pmi_failure_is_the_loaders_refusal(flux_instance, lab, tmp_path):
    """Cause, not symptom: bullseye's Open MPI fails in PMI_Init because Flux's libpmi.so, bound
    into it, cannot load there; the image's loader's line is the evidence. Which line depends on
    the flux-core build: 0.88 here needs libjansson.so.4, which bullseye lacks; 0.55 here links
    a libflux-taskmap that needs GLIBC_2.33 (bullseye has 2.31)."""
    import yaml

    entries = yaml.safe_load(LAB_MANIFEST.read_text())["images"]
    (entry,) = [e for e in entries if e["name"] == PREFIX + "openmpi-debian-11-amd64"]
    manifest = tmp_path / "bullseye.yaml"
    manifest.write_text(yaml.safe_dump({"images": [entry]}))
    outdir = tmp_path / "out"
    proc = cli(
        "run", "--executor", "flux", "--manifests", str(manifest), "--mode", "random",
        "--iters", "1", "--mpi-model", "hybrid", "--outdir", str(outdir),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (rec,) = _lab_records(outdir)
    assert rec["reason"] == "os-abi", (rec["evidence"], rec["note"])
    assert re.search(r"=> not found|version .GLIBC_[\d.]+. not found", rec["evidence"])
    assert re.search(r"libpmi|libflux-|libjansson", rec["evidence"]), rec["evidence"]
    assert "PMI_Init" in rec["note"] and "Operation failed" in rec["note"]  # the symptom
    assert rec["note"].startswith("symptom (mpi): ")
    assert not any("{{" in a for a in rec["argv"])


# --- faults: a job that never starts, an instance lost mid-run ---------------------------------
def test_job_that_never_starts_is_cancelled(own_instance, tiny_sif, tmp_path):
    """Scheduling stopped: the job waits in SCHED; after the start timeout it is cancelled and
    the iteration fails with the executor's line as evidence."""
    import flux
    import flux.job

    from harness.run.executors.flux import FluxExecutor

    inst = own_instance()
    inst.flux_cmd("queue", "stop")  # jobs are accepted but never scheduled
    ex = FluxExecutor(uri=inst.uri, start_timeout_s=2)
    ex.preflight()
    job = _job(tmp_path, tiny_sif, ["true"])
    t0 = time.monotonic()
    result = _joined(*_run_in_thread(ex, job), timeout=20)
    took = time.monotonic() - t0
    assert 2 <= took < 60, took
    assert (result.exit_code, result.signal, result.timed_out) == (None, None, False)
    (late,) = [e for e in result.events if e["name"] == "start-timeout"]
    assert (late["state"], late["timeout_s"]) == ("SCHED", 2)
    names = [e["name"] for e in result.events]
    assert "start" not in names and "alloc" not in names
    assert names[-2:] == ["clean", "result"]
    (final,) = [e for e in result.events if e["name"] == "result"]
    assert final["result"] == "CANCELED"
    jobid = flux.job.JobID(late["jobid"])
    info = flux.job.result(flux.Flux(inst.uri), jobid)  # the instance's own word
    assert info.result == "CANCELED"
    line = (
        f"flux executor: job {jobid.f58} failed to start within 2 s "
        "(state SCHED: waiting for resources, or held): cancelled"
    )
    assert result.fault == Fault("start-timeout", line)  # typed, not text in the job's stderr
    assert line not in job.stderr.read_text()
    verdict = classify(_text(job), exit_code=result.exit_code, ranks=1, fault=result.fault)
    assert (verdict.reason, verdict.evidence, verdict.source) == ("infra", line, "harness")
    # the executor is still usable: once the queue runs, the next job runs
    inst.flux_cmd("queue", "start")
    again = ex.run(_job(tmp_path, tiny_sif, ["true"], name="again"))
    assert again.exit_code == 0
    assert not any(e["name"] == "start-timeout" for e in again.events)


def test_start_timeout_does_not_touch_a_started_job(own_instance, tiny_sif, tmp_path):
    """The start timeout bounds the wait for `start`, not the run: a job that started runs on."""
    from harness.run.executors.flux import FluxExecutor

    inst = own_instance()
    ex = FluxExecutor(uri=inst.uri, start_timeout_s=20)
    ex.preflight()
    result = ex.run(_job(tmp_path, tiny_sif, ["sleep", "25"]))  # runs past the start timeout
    assert result.exit_code == 0 and result.run_s >= 25
    assert not any(e["name"] in ("start-timeout", "exception") for e in result.events)


def _run_in_thread(ex, job: Job) -> tuple[threading.Thread, dict]:
    """ex.run(job) in a thread (a run() that never returns must fail the test, not hang it)."""
    got: dict = {}

    def follow():
        try:
            got["result"] = ex.run(job)
        except BaseException as exc:  # the tests assert there was none
            got["error"] = exc

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return thread, got


def _joined(thread: threading.Thread, got: dict, timeout: float):
    thread.join(timeout=timeout)
    assert not thread.is_alive(), f"run() did not return within {timeout} s"
    assert "error" not in got, got.get("error")
    return got["result"]


def _wait_running(uri: str, timeout: float = 60) -> None:
    """Until a job of the instance at `uri` has started (its `start` event, not just alloc)."""
    import flux
    import flux.job

    h = flux.Flux(uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = flux.job.JobList(h, filters=["running"], attrs=["t_run"]).jobs()
        if any(getattr(j, "t_run", 0.0) for j in jobs):
            time.sleep(1.0)  # job-list saw `start`; give the executor's eventlog watch time too
            return
        time.sleep(0.1)
    pytest.fail(f"no job of {uri} started within {timeout} s")


def test_broker_lost_mid_run(own_instance, tiny_sif, tmp_path):
    """kill -9 of the instance while a job runs: run() returns a failed result with the
    executor's line; the next run() and preflight() raise one line, the instance is gone."""
    from harness.run.executors.flux import FluxExecutor

    inst = own_instance()
    ex = FluxExecutor(uri=inst.uri)
    ex.preflight()
    job = _job(tmp_path, tiny_sif, ["sleep", "60"])
    thread, got = _run_in_thread(ex, job)
    _wait_running(inst.uri)
    killed = time.monotonic()
    inst.kill()
    result = _joined(thread, got, timeout=30)
    assert time.monotonic() - killed < 60
    assert (result.exit_code, result.timed_out) == (None, False)
    assert "start" in [e["name"] for e in result.events]
    (lost,) = [e for e in result.events if e["name"] == "lost-instance"]
    assert result.run_s > 0
    jobid = next(e["jobid"] for e in result.events if e["name"] == "submit")
    line = f"flux executor: lost the Flux instance while following job {jobid}: "
    line += lost["error"]
    # the cause is a typed fault, whatever the job's shell printed as it lost its broker
    assert result.fault == Fault("lost-instance", line)
    verdict = classify(_text(job), exit_code=result.exit_code, ranks=1, fault=result.fault)
    assert (verdict.reason, verdict.evidence) == ("infra", line)
    for again in (lambda: ex.run(_job(tmp_path, tiny_sif, ["true"], name="next")), ex.preflight):
        with pytest.raises(HarnessError) as info:
            again()
        message = str(info.value)
        assert "\n" not in message
        assert f"the Flux instance at {inst.uri} is gone or unreachable" in message
        assert jobid in message


def test_run_resumes_after_the_instance_is_lost(own_instance, tiny_sif, tmp_path):
    """`harness run`: the instance dies during iteration 0 -> that iteration is recorded as
    failed, the run stops with one line (exit 2); a rerun against a new instance continues."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"images:\n  - name: {tiny_sif}\n    command: [sleep, '3']\n")
    outdir = tmp_path / "out"
    args = ["run", "--manifests", str(manifest), "--mode", "random", "--iters", "2"]
    args += ["--np", "1", "--outdir", str(outdir), "--executor", "flux", "--seed", "5"]

    first = own_instance()
    env = {**os.environ, "FLUX_URI": first.uri}
    proc = spawn(*args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_running(first.uri)
        first.kill()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, (out, err)
    (message,) = err.strip().splitlines()
    assert f"the Flux instance at {first.uri} is gone or unreachable" in message
    (rec,) = list(records.read(outdir))
    assert (rec.iteration, rec.reason, rec.exit_code) == (0, "infra", None)
    lost = "flux executor: lost the Flux instance while following job"
    assert rec.evidence.startswith(lost), rec.evidence
    assert rec.fault["kind"] == "lost-instance"
    assert any(e["name"] == "lost-instance" for e in rec.events)

    second = own_instance()
    again = cli(*args, env={**os.environ, "FLUX_URI": second.uri}, timeout=120)
    assert again.returncode == 0, again.stderr
    recs = list(records.read(outdir))
    assert [r.iteration for r in recs] == [0, 1]
    # the lost iteration was the infrastructure's failure, not the image's: redone
    assert [r.exit_code for r in recs] == [0, 0]


def test_detach_and_status(flux_instance, bookworm_sif, tmp_path):
    """`harness run --executor flux --detach` submits the harness itself and returns."""
    import flux.job

    from harness.run.status import status, status_rows

    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"images:\n  - name: {bookworm_sif}\n    workdir: /opt/lab\n")
    outdir = tmp_path / "out"
    proc = cli(
        "run",
        "--manifests",
        str(manifest),
        "--mode",
        "random",
        "--iters",
        "1",
        "--np",
        "1",
        "--outdir",
        str(outdir),
        "--executor",
        "flux",
        "--detach",
    )
    assert proc.returncode == 0, proc.stderr
    jobid = proc.stdout.split()[-1]
    h = flux.Flux()
    info = flux.job.result(h, flux.job.JobID(jobid))
    log = outdir / f"flux-harness-{jobid}.log"
    assert info.result == "COMPLETED", log.read_text() if log.exists() else info.result
    (row,) = status_rows(outdir)
    assert (row.done, row.target, row.job, row.state) == (1, 1, jobid, "COMPLETED")
    assert jobid in status(outdir)


def test_detach_refuses_a_run_whose_jobs_cannot_start_beside_it(own_instance, tiny_sif, tmp_path):
    """The detached harness holds a core for the whole run: on an instance with no core to
    spare for a job of --np ranks besides, every iteration would queue until --start-timeout.
    The run is refused before anything is submitted or written."""
    import flux
    import flux.job
    import flux.resource

    inst = own_instance()
    h = flux.Flux(inst.uri)
    cores = flux.resource.resource_list(h).get().all.ncores
    manifest = _tiny_manifest(tmp_path, tiny_sif, ["true"])
    outdir = tmp_path / "out"
    args = _run_args(manifest, outdir, 1, 1)
    args[args.index("--np") + 1] = str(cores)
    proc = cli(*args, "--flux-uri", inst.uri, "--detach")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"the instance has {cores} core(s)" in line and "needs " + str(cores) in line, line
    assert not outdir.exists()
    assert flux.job.JobList(h, since=0).jobs() == []


def test_prepull_each_node_idempotent(flux_instance, lab, tmp_path):
    from harness.run.prepull import prepull

    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "images:\n"
        "  - name: 127.0.0.1/lab/lammps-matrix:none-debian-12-amd64\n"
        "  - name: 127.0.0.1/lab/lammps-matrix:no-such-tag\n"
    )
    cache = tmp_path / "sif"
    first = prepull(manifest, cache)
    assert sorted(r.rank for r in first) == [0, 0, 1, 1]  # one job per broker rank
    good = [r for r in first if r.image.endswith("none-debian-12-amd64")]
    bad = [r for r in first if r.image.endswith("no-such-tag")]
    assert all(r.ok and Path(r.path).is_file() for r in good)
    assert all(not r.ok and "no-such-tag" in r.error for r in bad)
    again = prepull(manifest, cache)
    assert all(r.cached and r.ok for r in again if r.image.endswith("none-debian-12-amd64"))
    assert len(list(cache.glob("*.sif"))) == 1


# --- no job outlives its harness -------------------------------------------------------------
def _harness_jobs(uri: str | None = None, since: float = 0.0, active: bool = True) -> dict:
    """{id f58: name} of the harness's iteration jobs (not detached harness jobs) submitted at
    or after `since`, as `flux jobs` lists them; only the active ones unless told otherwise."""
    import flux
    import flux.job

    h = flux.Flux(uri) if uri else flux.Flux()
    filters = ["pending", "running"] if active else []
    jobs = flux.job.JobList(h, filters=filters, attrs=["name", "t_submit"], since=0).jobs()
    return {
        j.id.f58: j.name
        for j in jobs
        if j.name.startswith("harness-") and j.name != "harness-run" and j.t_submit >= since
    }


def _wait_for_running(n: int, since: float, timeout: float = 120.0) -> dict:
    import flux
    import flux.job

    h = flux.Flux()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = flux.job.JobList(h, filters=["running"], attrs=["name", "t_submit", "t_run"]).jobs()
        mine = {
            j.id.f58: j.name
            for j in jobs
            if j.name.startswith("harness-")
            and j.name != "harness-run"
            and j.t_submit >= since
            and getattr(j, "t_run", 0.0)  # started, not just allocated
        }
        if len(mine) >= n:
            time.sleep(0.5)  # job-list saw `start`; give the harness's eventlog watch time too
            return mine
        time.sleep(0.1)
    pytest.fail(f"{n} job(s) of the run did not start within {timeout} s")


def _tiny_manifest(tmp_path: Path, sif: Path, command: list[str]) -> Path:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(json.dumps({"images": [{"name": str(sif), "command": command}]}))
    return manifest


def _run_args(manifest: Path, outdir: Path, iters: int, concurrent: int) -> list[str]:
    return [
        "run", "--executor", "flux", "--manifests", str(manifest), "--mode", "random",
        "--iters", str(iters), "--np", "1", "--seed", "1", "--outdir", str(outdir),
        "--max-concurrent", str(concurrent),
    ]  # fmt: skip


@pytest.mark.parametrize("concurrent", [1, 2])
@pytest.mark.parametrize(
    ("sig", "code", "line"),
    [
        (signal.SIGINT, 130, "harness: interrupted; rerun the same command to resume"),
        (signal.SIGTERM, 143, "harness: terminated; jobs in flight were stopped; rerun to resume"),
    ],
    ids=["SIGINT", "SIGTERM"],
)
def test_interrupt_leaves_no_job_active(
    flux_instance, tiny_sif, tmp_path, concurrent, sig, code, line
):
    """Ctrl-C or SIGTERM while jobs run: the harness cancels them, says so in one line, exits at
    once (the bindings' blocking waits must not swallow the signal), and 2 s later `flux jobs`
    shows no job of the run; nothing of the interrupted iterations is recorded."""
    manifest = _tiny_manifest(tmp_path, tiny_sif, ["sleep", "60"])
    outdir = tmp_path / "out"
    since = time.time() - 1
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *_run_args(manifest, outdir, 4, concurrent)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        running = _wait_for_running(concurrent, since)
        journals = sorted((outdir / "logs" / "random").glob("*.flux-job"))
        assert len(journals) == concurrent  # journaled as soon as the id exists
        assert {json.loads(j.read_text())["jobid"] for j in journals} == set(running)
        signalled = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert err.strip().splitlines() == [line]
    assert took < 15, f"the harness took {took:.1f} s to stop"
    time.sleep(2)
    assert _harness_jobs(since=since) == {}
    assert not list((outdir / "logs" / "random").glob("*.flux-job"))
    assert not (outdir / "records.jsonl").exists() or not (outdir / "records.jsonl").read_text()


def test_kill_9_then_rerun_cancels_the_orphans(flux_instance, tiny_sif, tmp_path):
    """kill -9 of the harness leaves its jobs running, journaled; the rerun cancels them and
    waits until they are inactive before it submits, and every record's logs hold that
    record's own job's output."""
    import flux
    import flux.job

    command = ["sh", "-c", 'echo "job=$FLUX_JOB_ID"; sleep 6']
    manifest = _tiny_manifest(tmp_path, tiny_sif, command)
    outdir = tmp_path / "out"
    args = _run_args(manifest, outdir, 3, 2)
    since = time.time() - 1
    proc = spawn(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    orphans = _wait_for_running(2, since)
    proc.kill()
    proc.wait()
    assert set(_harness_jobs(since=since)) == set(orphans)  # left running
    journals = sorted((outdir / "logs" / "random").glob("*.flux-job"))
    assert {json.loads(j.read_text())["jobid"] for j in journals} == set(orphans)

    again = cli(*args, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _harness_jobs(since=since) == {}
    assert not list((outdir / "logs" / "random").glob("*.flux-job"))
    recs = list(records.read(outdir))
    assert [r.iteration for r in recs] == [0, 1, 2]
    h = flux.Flux()
    submits = []
    for rec in recs:
        jobid = next(e["jobid"] for e in rec.events if e["name"] == "submit")
        assert jobid not in orphans
        assert Path(rec.stdout_path).read_text() == f"job={jobid}\n"
        submits.append(next(e["timestamp"] for e in rec.events if e["name"] == "submit"))
    for jobid in orphans:
        info = flux.job.result(h, flux.job.JobID(jobid))
        assert info.result == "CANCELED"
        ended = flux.job.get_job(h, flux.job.JobID(jobid))["t_inactive"]
        assert ended <= min(submits), "the rerun submitted before the orphans were inactive"


def test_operator_cancel_is_infra_and_redone(flux_instance, tiny_sif, tmp_path):
    """`flux cancel` of an iteration's job by an operator: the infrastructure's failure, not the
    image's (reason infra, fault cancelled, outside the rate); the resumed run redoes it."""
    flux_bin = _need_flux()
    manifest = _tiny_manifest(tmp_path, tiny_sif, ["sh", "-c", 'echo "job=$FLUX_JOB_ID"; sleep 4'])
    outdir = tmp_path / "out"
    args = _run_args(manifest, outdir, 2, 1)
    since = time.time() - 1
    proc = spawn(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    (victim,) = _wait_for_running(1, since)
    subprocess.run([flux_bin, "cancel", "-m", "node needed", victim], check=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    first = {r.iteration: r for r in records.read(outdir)}
    assert first[0].reason == "infra"
    assert first[0].fault["kind"] == "cancelled"
    assert victim in first[0].evidence and "node needed" in first[0].evidence
    assert "not by this harness" in first[0].evidence
    assert first[1].reason != "infra"
    report = json.loads(cli("report", str(outdir), "--json").stdout)["modes"]["random"]
    assert (report["runs"], report["n"], report["excluded"]) == (2, 1, 1)

    again = cli(*args, timeout=120)
    assert again.returncode == 0, again.stderr
    after = {r.iteration: r for r in records.read(outdir)}
    assert after[0].reason != "infra" and after[0].fault is None
    redone = next(e["jobid"] for e in after[0].events if e["name"] == "submit")
    assert redone != victim
    assert after[1] == first[1]  # a counted iteration is not run again


def test_flux_cancel_of_the_detached_harness_cancels_its_jobs(flux_instance, tiny_sif, tmp_path):
    """`flux cancel` of a detached run: the harness gets SIGTERM, cancels its jobs and ends;
    2 s after the harness job is inactive no job of the run is active."""
    import flux
    import flux.job

    manifest = _tiny_manifest(tmp_path, tiny_sif, ["sleep", "60"])
    outdir = tmp_path / "out"
    since = time.time() - 1
    proc = cli(*_run_args(manifest, outdir, 4, 2), "--detach")
    assert proc.returncode == 0, proc.stderr
    harness_job = proc.stdout.split()[-1]
    _wait_for_running(2, since)
    subprocess.run([_need_flux(), "cancel", harness_job], check=True)
    h = flux.Flux()
    info = flux.job.result(h, flux.job.JobID(harness_job))  # waits until it is inactive
    assert info.result == "CANCELED"
    time.sleep(2)
    assert _harness_jobs(since=since) == {}
    log = (outdir / f"flux-harness-{harness_job}.log").read_text()
    assert "harness: terminated; jobs in flight were stopped" in log


def test_more_ranks_than_the_instance_has_cores_is_refused_before_the_run(
    own_instance, tiny_sif, tmp_path
):
    """The request, not an image: Flux runs no job of more ranks than its cores hold, so the
    run is refused in one line before anything is submitted or written."""
    import flux
    import flux.job
    import flux.resource

    inst = own_instance()
    h = flux.Flux(inst.uri)
    cores = flux.resource.resource_list(h).get().all.ncores
    outdir = tmp_path / "out"
    args = _run_args(_tiny_manifest(tmp_path, tiny_sif, ["true"]), outdir, 1, 1)
    args[args.index("--np") + 1] = str(cores + 1)
    proc = cli(*args, "--flux-uri", inst.uri)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"harness: error: --np {cores + 1}: the flux executor has {cores} slots here, so no "
        "image could run (lower --np)"
    ]
    assert not outdir.exists()
    assert flux.job.JobList(h, since=0).jobs() == []
