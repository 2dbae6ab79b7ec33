"""The experiment loop without the lab: the replay executor (tests/replay.py) plays recorded
outputs through the real runner, records, resume checks, lock and concurrency."""

from __future__ import annotations

import fcntl
import json
import threading
from pathlib import Path

import pytest

from harness import records
from harness.errors import HarnessError
from harness.outdir import Outdir
from harness.record_index import RecordIndex
from harness.run import candidates, runner
from tests.replay import (
    GLIBC,
    GPU,
    MISSING,
    NETPIPE,
    NETPIPE_SINGLETONS,
    NETPIPE_STDERR,
    SUCCESS,
)

HOST = {
    "io.archspec.cpu.target": "amd64",
    "org.supercontainers.os.vendor": "debian",
    "org.supercontainers.os.version": "12",
    "org.supercontainers.hardware.gpu.available": "no",
    "org.supercontainers.mpi.implementation": "OpenMPI",
}
# image -> (artifact attributes, recorded output)
IMAGES = {
    "ok-12": ({"os.version": "12", "hardware.gpu.available": "no"}, {"stdout": SUCCESS}),
    "glibc-11": (
        {"os.version": "11", "hardware.gpu.available": "no"},
        {"stderr": GLIBC, "exit_code": 127},
    ),
    "gpu-12": (
        {"os.version": "12", "hardware.gpu.available": "yes"},
        {"stderr": GPU, "exit_code": 1},
    ),
    "none-12": (
        {"os.version": "12", "hardware.gpu.available": "no"},
        {"stderr": MISSING, "exit_code": 255},
    ),
}


def write_setup(
    tmp_path: Path, images: dict[str, tuple[dict, dict, dict]], host: dict, missing=()
) -> dict:
    """Local SIF files (never executed), each with its artifact (org.supercontainers and
    io.archspec attributes) and what the replay executor prints for it; a manifest and a host
    file. `missing`: images whose SIF file is not written."""
    entries, outputs = [], {}
    for name, (supercontainers, archspec, output) in images.items():
        sif = tmp_path / f"{name}.sif"
        if name not in missing:
            sif.write_bytes(b"SIF")
        spec = {
            "kind": "CompatibilitySpec",
            "compatibilities": [
                {"name": "org.supercontainers", "attributes": supercontainers},
                {"name": "io.archspec", "attributes": archspec},
            ],
        }
        (tmp_path / f"{name}.json").write_text(json.dumps(spec))
        entries.append({"name": str(sif), "artifact": f"{name}.json"})
        outputs[sif.name] = output
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(json.dumps({"images": entries}))
    host_file = tmp_path / "host.json"
    host_file.write_text(json.dumps(host))
    return {"manifest": manifest, "host": host_file, "outputs": outputs}


def lab(tmp_path: Path, delays: dict | None = None, missing: tuple[str, ...] = ()) -> dict:
    """The images above, each printing its output after its delay."""
    images = {
        name: (
            {"os.vendor": "debian", "mpi.implementation": "OpenMPI", **attrs},
            {"cpu.target": "amd64"},
            {**output, "delay_s": (delays or {}).get(name, 0.0)},
        )
        for name, (attrs, output) in IMAGES.items()
    }
    return write_setup(tmp_path, images, HOST, missing)


def config(setup: dict, outdir: Path, **kw) -> runner.RunConfig:
    return runner.RunConfig(
        manifests=setup["manifest"],
        mode=kw.pop("mode", "random"),
        iters=kw.pop("iters", 8),
        outdir=outdir,
        seed=kw.pop("seed", 3),
        executor="replay",
        host_file=kw.pop("host_file", setup["host"]),
        executor_options={"outputs": setup["outputs"]},
        **kw,
    )


def test_iterations_are_judged_and_recorded_with_their_steps(replay, tmp_path):
    setup = lab(tmp_path)
    counts = runner.run(config(setup, tmp_path / "out", iters=12))
    recs = list(records.read(tmp_path / "out"))
    assert [r.iteration for r in recs] == list(range(12))
    expected = {
        "ok-12": "success",
        "glibc-11": "os-abi",
        "gpu-12": "gpu",
        "none-12": "missing-binary",
    }
    for r in recs:
        assert r.reason == expected[Path(r.image).stem], r
        assert set(r.steps) == {"pick", "acquire", "launch", "judge"}
        assert r.stage == (None if r.reason == "success" else "launch")
        assert Path(r.stdout_path).is_file() and r.source == "application"
    assert sum(counts.values()) == 12 and len(counts) > 1
    ok = next(r for r in recs if r.reason == "success")
    assert ok.figures["procs"] == 2 and ok.figures["loop_time_s"] == pytest.approx(1.51021)


def test_records_validate_against_the_published_json_schema(replay, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parents[1] / "docs" / "record.schema.json").read_text())
    setup = lab(tmp_path, missing=("none-12",))
    runner.run(config(setup, tmp_path / "out", iters=10))
    lines = records.records_path(tmp_path / "out").read_text().splitlines()
    for line in lines:
        jsonschema.validate(json.loads(line), schema)
    bad = dict(json.loads(lines[0]), reason=3)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_resume_runs_only_the_missing_iterations_with_the_same_picks(replay, tmp_path):
    setup = lab(tmp_path)
    runner.run(config(setup, tmp_path / "a", iters=4))
    runner.run(config(setup, tmp_path / "a", iters=9))
    runner.run(config(setup, tmp_path / "b", iters=9))
    a = [(r.iteration, r.image) for r in records.read(tmp_path / "a")]
    b = [(r.iteration, r.image) for r in records.read(tmp_path / "b")]
    assert a == b and len(a) == 9


def test_resume_another_way_is_refused(replay, tmp_path):
    setup = lab(tmp_path)
    runner.run(config(setup, tmp_path / "out", iters=2))
    with pytest.raises(HarnessError, match="np"):
        runner.run(config(setup, tmp_path / "out", iters=4, np=4))


def test_concurrent_iterations_are_recorded_in_iteration_order(replay, tmp_path):
    # the first images picked are slow, later ones fast: they finish first, yet wait their turn
    setup = lab(tmp_path, delays={"ok-12": 0.4, "glibc-11": 0.0, "gpu-12": 0.2, "none-12": 0.1})
    runner.run(config(setup, tmp_path / "out", iters=10, max_concurrent=4))
    assert [r.iteration for r in records.read(tmp_path / "out")] == list(range(10))


def test_a_second_writer_of_a_mode_is_refused(replay, tmp_path):
    setup = lab(tmp_path)
    out = tmp_path / "out"
    runner.run(config(setup, out, iters=1))
    with (out / ".lock-random").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(HarnessError, match="another harness run"):
            runner.run(config(setup, out, iters=3))
    assert len(list(records.read(out))) == 1


def test_a_missing_image_is_a_pull_failure_recorded_without_a_job(replay, tmp_path):
    setup = lab(tmp_path, missing=("none-12",))
    runner.run(config(setup, tmp_path / "out", iters=12))
    pulls = [r for r in records.read(tmp_path / "out") if r.reason == "pull"]
    assert pulls and all(Path(r.image).stem == "none-12" for r in pulls)
    assert all(r.stage == "acquire" and r.argv == [] and r.fault["kind"] == "pull" for r in pulls)


def test_infrastructure_failures_leave_the_rate_and_are_redone(replay, tmp_path):
    setup = lab(tmp_path)
    out = tmp_path / "out"
    runner.run(config(setup, out, iters=3))
    first = list(records.read(out))
    # an iteration the infrastructure failed, as the Flux executor records a foreign cancel
    infra = first[1]
    infra.reason, infra.fault = "infra", {"kind": "cancelled", "detail": "cancelled by admin"}
    records_path = records.records_path(out)
    lines = records_path.read_text().splitlines()
    lines[1] = infra.to_json()
    records_path.write_text("\n".join(lines) + "\n")
    assert list(RecordIndex.load(out).mode("random").todo(3)) == [1]
    runner.run(config(setup, out, iters=3))
    again = list(records.read(out))
    assert [r.iteration for r in again] == [0, 1, 2]
    assert again[1].reason != "infra" and again[1].image == first[1].image


def test_cancel_all_stops_every_job_in_flight(replay, tmp_path):
    setup = lab(tmp_path, delays={name: 30.0 for name in IMAGES})
    out = tmp_path / "out"
    cfg = config(setup, out, iters=4, max_concurrent=2)
    exp = runner.prepare(cfg)
    done = threading.Event()

    def interrupt() -> None:
        exp.executor.cancel_all()  # what the loop calls when it is interrupted
        done.set()

    timer = threading.Timer(0.5, interrupt)
    timer.start()
    runner.execute(exp)
    timer.join()
    assert done.is_set()
    # every job was stopped at once (137), none ran its 30 s
    assert {r.exit_code for r in records.read(out)} == {137}


def test_census_runs_every_image_and_keeps_each_modes_candidates(replay, tmp_path):
    setup = lab(tmp_path)
    out = tmp_path / "census"
    runner.census(config(setup, out, iters=1, repeat=2))
    recs = list(records.read(out))
    assert len(recs) == 8 and {r.mode for r in recs} == {"census"}
    ran = [Path(r.image).stem for r in recs]
    assert sorted(ran[:4]) == sorted(IMAGES) and sorted(ran[4:]) == sorted(IMAGES)
    sets = json.loads(Outdir(out).census_file.read_text())["modes"]
    stem = lambda names: sorted(Path(n).stem for n in names)  # noqa: E731
    assert stem(sets["random"]["candidates"]) == sorted(IMAGES)
    assert stem(sets["platform-version"]["candidates"]) == ["gpu-12", "none-12", "ok-12"]
    assert stem(sets["descriptive-basic"]["candidates"]) == ["none-12", "ok-12"]
    # seeded: the same order again
    runner.census(config(setup, tmp_path / "again", iters=1, repeat=2))
    assert [r.image for r in records.read(tmp_path / "again")] == [r.image for r in recs]


def test_launch_options_from_the_manifest_and_the_run_reach_the_job(replay, tmp_path):
    setup = lab(tmp_path)
    data = json.loads(setup["manifest"].read_text())
    data["images"][0]["runtime_options"] = ["--cleanenv"]
    data["images"][0]["launcher_options"] = ["--oversubscribe"]
    setup["manifest"].write_text(json.dumps(data))
    cfg = config(setup, tmp_path / "out", iters=12, runtime_options=("--bind", "/a:/b"))
    runner.run(cfg)
    for r in records.read(tmp_path / "out"):
        first = Path(r.image).stem == "ok-12"
        expected = ["--oversubscribe", "--cleanenv"] if first else []
        assert r.argv[1:-4] == [*expected, "--bind", "/a:/b"], r.argv


def test_gpu_images_get_the_hosts_gpu_flag_only_on_a_gpu_host(tmp_path):
    from harness.select import host as hostmod
    from harness.select import manifest
    from harness.select.artifacts import ArtifactStore

    setup = lab(tmp_path)
    images = manifest.load(setup["manifest"])
    store = ArtifactStore()
    nvidia = hostmod.gpu_runtime_flags(exists=lambda d: d == "/dev/nvidiactl")
    assert nvidia == ["--nv"]
    assert hostmod.gpu_runtime_flags(exists=lambda d: d == "/dev/kfd") == ["--rocm"]
    assert hostmod.gpu_runtime_flags(exists=lambda d: False) == []
    flags = candidates.gpu_flags(images, store, nvidia)
    assert {Path(k).stem: v for k, v in flags.items()} == {"gpu-12": ["--nv"]}
    assert candidates.gpu_flags(images, store, []) == {}


def test_a_refused_census_leaves_census_json_as_it_was(replay, tmp_path):
    setup = lab(tmp_path)
    out = Outdir(tmp_path / "out")
    runner.census(config(setup, out.path, repeat=1))
    before = out.census_file.read_bytes()
    more = tmp_path / "modes.yaml"
    more.write_text("modes: {extra: {keys: [io.archspec.cpu.target]}}\n")
    refused = pytest.raises(HarnessError, match="another harness run is writing mode census")
    with out.mode_lock(runner.CENSUS), refused:  # a census still running in this outdir
        runner.census(config(setup, out.path, repeat=2, mode_file=more))
    assert out.census_file.read_bytes() == before
    runner.census(config(setup, out.path, repeat=2, mode_file=more))  # once it is free
    assert "extra" in json.loads(out.census_file.read_text())["modes"]


# ----------------------------------------------------------------------------------------------
# --application: what runs and how it is judged
# ----------------------------------------------------------------------------------------------


def netpipe_lab(tmp_path: Path) -> dict:
    """The replay lab with NetPIPE's outputs: one image runs it, one runs it as singletons."""
    setup = lab(tmp_path)
    names = sorted(setup["outputs"])
    setup["outputs"][names[0]] = {"stdout": NETPIPE, "stderr": NETPIPE_STDERR}
    setup["outputs"][names[1]] = {"stdout": NETPIPE_SINGLETONS, "exit_code": 254}
    return setup


def test_another_application_runs_its_command_and_is_judged_by_its_data(replay, tmp_path):
    setup = netpipe_lab(tmp_path)
    runner.run(config(setup, tmp_path / "out", mode="census", iters=4, application="netpipe"))
    recs = {Path(r.image).name: r for r in records.read(tmp_path / "out")}
    ok, single = (recs[n] for n in sorted(setup["outputs"])[:2])
    assert {r.application for r in recs.values()} == {"netpipe"}
    # the manifest names no command: the application's
    assert ok.argv[-7:] == ["NPopenmpi", "-u", "65536", "-p", "0", "-o", "/dev/null"]
    assert ok.reason == "success" and ok.evidence == "Now starting the main loop"
    assert ok.figures == {  # from stderr, where NetPIPE prints its main loop
        "max_bandwidth_mbps": 669.91,
        "latency_us": 1.08,
        "largest_block_bytes": 96,
        "blocks": 13,
    }
    assert ok.timings.app_s is None  # NetPIPE reports no wall time of its own
    # its own rule: the copies refuse to run alone
    assert single.reason == "mpi-singleton"
    assert single.evidence == "Need at least two processes (only given 1)"


def test_the_application_is_part_of_what_a_resume_must_match(replay, tmp_path):
    setup = lab(tmp_path)
    runner.run(config(setup, tmp_path / "out", iters=2))
    assert {r.application for r in records.read(tmp_path / "out")} == {"lammps"}
    with pytest.raises(HarnessError, match="application lammps"):
        runner.run(config(setup, tmp_path / "out", iters=4, application="netpipe"))


@pytest.mark.parametrize(
    ("application", "np", "message"),
    [
        ("gromacs", 2, "unknown application 'gromacs' \\(known: lammps, netpipe\\)"),
        ("netpipe", 4, "application netpipe runs on exactly 2 ranks: use --np 2"),
        ("nowhere/app.yaml", 2, "application nowhere/app.yaml: no such file"),
    ],
)
def test_a_bad_application_is_refused_before_anything_runs(
    replay, tmp_path, application, np, message
):
    setup = lab(tmp_path)
    with pytest.raises(HarnessError, match=message):
        runner.run(config(setup, tmp_path / "out", np=np, application=application))
    assert not (tmp_path / "out").exists()


def test_an_application_file_with_a_rule_of_no_known_reason_is_refused(replay, tmp_path):
    import yaml

    from harness import application

    data = yaml.safe_load(
        (Path(application.__file__).parent / "data/applications/netpipe.yaml").read_text()
    )
    data["rules"][0]["reason"] = "slow"
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(HarnessError, match="application netpipe: rules\\[0\\]: unknown reason"):
        runner.run(config(lab(tmp_path), tmp_path / "out", application=str(path)))
    assert not (tmp_path / "out").exists()
