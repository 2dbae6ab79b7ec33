"""Prediction: explicit rules, the reference experiment's protocol, and its published numbers."""

from __future__ import annotations

import json
import math
import os

import pytest
import yaml

from harness.select.predict import Environment, os_glibc, rule_outcome
from tests.conftest import ROOT, cli, require
from tests.test_candidates import UBUNTU_JAMMY

FOCAL_IMAGE = {
    "io.archspec.cpu.target": "amd64",
    "org.supercontainers.os.vendor": "ubuntu",
    "org.supercontainers.os.version": "20.04",
    "org.supercontainers.hardware.gpu.available": "no",
    "org.supercontainers.mpi.implementation": "mpich",
}


def env(**kw) -> Environment:
    base = dict(name="view", arch="amd64", mounted_glibc=None, launcher_mpi=None, gpu=False)
    return Environment(**{**base, **kw})


def test_rules_in_the_order_a_run_trips_over_them():
    assert rule_outcome(FOCAL_IMAGE, env())[0] == "success"
    assert rule_outcome(FOCAL_IMAGE, env(arch="arm64"))[0] == "arch"
    reason, why = rule_outcome(FOCAL_IMAGE, env(mounted_glibc="2.35"))
    assert (reason, why) == ("os-abi", "image glibc 2.31 < 2.35 of view")
    assert rule_outcome(FOCAL_IMAGE, env(mounted_glibc="2.31"))[0] == "success"
    # another MPI's launcher: ranks that never find each other (seen on the lab both ways)
    assert rule_outcome(FOCAL_IMAGE, env(launcher_mpi="OpenMPI"))[0] == "mpi-singleton"
    no_mpi = {k: v for k, v in FOCAL_IMAGE.items() if "mpi" not in k}
    assert rule_outcome(no_mpi, env(launcher_mpi="OpenMPI"))[0] == "mpi"
    assert rule_outcome(FOCAL_IMAGE, env(launcher_mpi="MPICH"))[0] == "success"
    gpu_image = dict(FOCAL_IMAGE, **{"org.supercontainers.hardware.gpu.available": "yes"})
    assert rule_outcome(gpu_image, env())[0] == "gpu"
    assert rule_outcome(gpu_image, env(gpu=True))[0] == "success"


def test_a_bound_mpi_library_needs_the_same_release_in_the_image():
    ompi = dict(FOCAL_IMAGE, **{"org.supercontainers.mpi.implementation": "OpenMPI"})
    bound = env(launcher_mpi="OpenMPI", bound_mpi=("OpenMPI", "4.1.4"))
    same = dict(ompi, **{"org.supercontainers.mpi.version": "4.1.4"})
    assert rule_outcome(same, bound)[0] == "success"
    five = dict(ompi, **{"org.supercontainers.mpi.version": "5.0.7"})
    assert rule_outcome(five, bound) == (
        "os-abi",
        "OpenMPI 4.1.4 bound into an image of OpenMPI 5.0.7: its sibling libraries are missing",
    )
    older = dict(ompi, **{"org.supercontainers.mpi.version": "4.1.0"})
    assert rule_outcome(older, bound)[0] == "mpi"
    # another MPI in the image never loads the bound library: the launcher rule decides
    assert rule_outcome(FOCAL_IMAGE, bound)[0] == "mpi-singleton"


def test_glibc_table_by_version_family():
    assert os_glibc("rocky", "9.3") == "2.34"
    assert os_glibc("Ubuntu", "22.04") == "2.35"
    assert os_glibc("debian", "12") == "2.36"
    assert os_glibc("plan9", "4") is None


def test_reference_protocol_against_the_published_measurements(tmp_path, anchors):
    host = tmp_path / "host.yaml"
    host.write_text(yaml.safe_dump(UBUNTU_JAMMY))
    proc = cli(
        "predict",
        "--manifests",
        str(ROOT / "manifests.yaml"),
        "--host",
        str(host),
        "--cache",
        str(anchors / "compspec-cache"),
        "--protocol",
        "reference",
        "--json",
        "--measured",
        str(anchors / "dev-logs" / "lammps-times-amd64.csv"),
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    # every mode of the modes data is predicted, in its order
    assert list(got) == ["random", *PUBLISHED, "descriptive-mpi", "descriptive-performance"]
    # Each published mode's count (30 runs) against the prediction's 95 % binomial interval:
    # the modes outside are named, not hidden behind the implementation's own numbers.
    outside = {}
    for mode, label in PUBLISHED.items():
        measured = got[mode]["measured"]
        assert sum(measured.values()) == 30, mode
        lo, hi = binomial_interval(got[mode]["success_rate"], 30)
        if not lo <= measured.get("success", 0) <= hi:
            outside[label] = (measured.get("success", 0), lo, hi)
    # platform: the reference ran its Intel MPI images without Intel's environment in that
    # mode only (5 MPI failures no attribute predicts) and drew 15 GPU failures where 9 were
    # expected (README, "Predicting before running").
    assert outside == {"platform": (6, 8, 19)}, outside


# The reference's published modes, as the csv names its experiments.
PUBLISHED = {
    "basic": "basic",
    "platform": "platform",
    "platform-version": "platform-version",
    "descriptive-basic": "descriptive-basic",
}


def binomial_interval(p: float, n: int, level: float = 0.95) -> tuple[int, int]:
    """The central interval [lo, hi] of successes holding at least `level` of Binomial(n, p)."""
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    tail = (1 - level) / 2
    lo = next(k for k in range(n + 1) if sum(pmf[: k + 1]) > tail)
    hi = next(k for k in range(n, -1, -1) if sum(pmf[k:]) > tail)
    return lo, hi


def test_binomial_interval():
    assert binomial_interval(0.5, 30) == (10, 20)
    assert binomial_interval(1.0, 30) == (30, 30)
    assert binomial_interval(0.0, 30) == (0, 0)


# -- what predict assumes -------------------------------------------------------------------------
def test_assumptions_fill_what_the_os_implies_and_name_the_rest():
    from harness.select.host import LIBC, MICROARCH
    from harness.select.modes import builtin
    from harness.select.predict import assumptions

    host, notes = assumptions(dict(UBUNTU_JAMMY), builtin(), "bind")
    assert host[LIBC] == os_glibc("ubuntu", "22.04") == "2.35"
    text = "\n".join(notes)
    assert f"no {LIBC}: assumed 2.35, the glibc of ubuntu 22.04" in text
    assert "org.supercontainers.mpi.version" in text  # the bound MPI's release is assumed
    assert f"no {MICROARCH}: mode descriptive-performance has no candidate" in text
    # hybrid: the image's own MPI runs, so neither glibc nor the host MPI's release matters
    _, hybrid = assumptions(dict(UBUNTU_JAMMY), {}, "hybrid")
    assert not any(LIBC in n or "mpi.version" in n for n in hybrid), hybrid


def test_every_example_host_is_complete_or_says_it_is_partial(anchors):
    """predict names each key an example host file lacks; the file says so in its comment."""
    for path in sorted((ROOT / "examples" / "hosts").glob("*.yaml")):
        proc = cli(
            "predict", "--manifests", str(ROOT / "manifests.yaml"), "--host", str(path),
            "--cache", str(anchors / "compspec-cache"),
        )  # fmt: skip
        notes = [x for x in proc.stderr.splitlines() if x.startswith("harness: note:")]
        partial = "# Partial:" in path.read_text()
        assert bool(notes) == partial, (path.name, notes)
        assert "is taken to be" not in proc.stderr, (path.name, proc.stderr)  # MPI release given


# -- against a census measured on the lab ---------------------------------------------------------
UNSEEN_UNDER_FLUX = (
    "the Flux shell binds Flux's own libpmi.so into the image, and that library's own needs "
    "(libjansson from the host's system directory here) an image may lack: os-abi. A compspec "
    "artifact does not list an image's libraries, so predict cannot see it (docs/minicluster.md)"
)


@pytest.mark.parametrize(
    "executor",
    [
        "local",
        "slurm",
        pytest.param("flux", marks=pytest.mark.xfail(strict=True, reason=UNSEEN_UNDER_FLUX)),
    ],
)
def test_predict_holds_against_a_census_under_each_executor(tmp_path, lab, executor):
    """Each image's predicted outcome, with the MPI view of the executor that runs it (Slurm's
    PMI starts MPICH ranks too; mpirun does not), is the outcome a census measures."""
    from harness import records
    from harness.run.executors import executor_class
    from harness.select import host as hostmod
    from harness.select import manifest, predict
    from harness.select.artifacts import ArtifactStore
    from tests.test_slurm import slurm_missing

    if executor == "slurm":
        require("Slurm", slurm_missing())
    if executor == "flux" and not os.environ.get("FLUX_URI"):
        pytest.skip("not inside a Flux instance (FLUX_URI is unset)")
    lab_manifest = str(ROOT / "containers" / "lab" / "manifests.yaml")
    out = tmp_path / executor
    proc = cli(
        "census", "--manifests", lab_manifest, "--executor", executor, "--mpi-model", "bind",
        "--outdir", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    own = hostmod.detect("mpirun")
    view = own if executor == "local" else executor_class(executor)().describe_host(own)
    store = ArtifactStore(registry_cache=tmp_path / "artifacts")
    predicted = predict.per_image(manifest.load(lab_manifest), store, view, "bind", own)
    measured = {r.image: r.reason for r in records.read(out)}
    assert set(measured) == set(predicted)
    wrong = {
        image: (reason, predicted[image])
        for image, reason in measured.items()
        # whether the application is in the image at all is no compspec attribute: an image
        # without it fails as missing-binary, which predict can only see as some failure
        if (
            predicted[image][0] == "success"
            if reason == "missing-binary"
            else predicted[image][0] != reason
        )
    }
    assert not wrong, wrong
    assert "success" in measured.values() and len(set(measured.values())) > 3
