"""The Flux executor, detach/status and prepull against a real Flux instance.

Every test that needs Flux starts a real one (`flux start --test-size=2`, two brokers on this
machine) and submits real jobs through the Python bindings. Where flux-core is not installed
(no package registry has it) those tests skip with the reason; HARNESS_REQUIRE_FLUX=1 turns the
skip into a failure. Tests that run LAMMPS also need the lab (its SIF images).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness import records
from harness.classify import classify
from harness.errors import HarnessError
from harness.executors.base import Job
from tests.conftest import ROOT, cli

LAB_SIF = Path("/var/cache/compat-harness/lab/sif")
BOOKWORM = "openmpi-debian-12-amd64"


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
    from harness.executors.flux import bindings

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
    from harness.executors.flux import FluxExecutor

    ex = FluxExecutor()
    ex.preflight()
    return ex


@pytest.fixture(scope="session")
def bookworm_sif(tmp_path_factory) -> Path:
    """The lab's bookworm SIF: from the lab cache, else pulled from the lab registry."""
    local = LAB_SIF / f"{BOOKWORM}.sif"
    if local.is_file():
        return local
    from tests.conftest import lab_missing

    why = lab_missing()
    if why is None:
        from harness.runtime import ImageCache

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
        "from harness.executors.flux import FluxExecutor\n"
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
    from harness.executors.flux import status, status_rows

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


# --- under a real Flux instance -----------------------------------------------------------------
def test_preflight_dead_instance_is_one_line(flux_instance, monkeypatch, tmp_path):
    from harness.executors.flux import FluxExecutor

    monkeypatch.setenv("FLUX_URI", f"local://{tmp_path}/no-broker")
    with pytest.raises(HarnessError) as info:
        FluxExecutor().preflight()
    assert "\n" not in str(info.value)
    assert f"Flux instance at local://{tmp_path}/no-broker is not reachable" in str(info.value)


def test_preflight_no_uri_no_system_instance(flux_instance, monkeypatch):
    from harness.executors.flux import FluxExecutor

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
    from harness.executors.flux import FluxExecutor

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
    from harness.executors.flux import FluxExecutor

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
    from harness.executors.flux import pmi_binds, pmi_library_path

    pmi = pmi_library_path()
    assert pmi is not None and pmi.is_file()
    # inside the image, the library Open MPI loads must be there with its sibling libraries
    job = _job(tmp_path, bookworm_sif, ["sh", "-c", 'ldd "$FLUX_PMI_LIBRARY_PATH"'])
    result = executor.run(job)
    out = job.stdout.read_text()
    assert result.exit_code == 0, job.stderr.read_text()
    assert "libflux-idset.so.1 =>" in out and "libflux-idset.so.1 => not found" not in out
    assert any(str(pmi.parent.parent) in spec for spec in pmi_binds(pmi))


def test_detach_and_status(flux_instance, bookworm_sif, tmp_path):
    """`harness run --executor flux --detach` submits the harness itself and returns."""
    import flux.job

    from harness.executors.flux import status, status_rows

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


def test_prepull_each_node_idempotent(flux_instance, lab, tmp_path):
    from harness.prepull import prepull

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
