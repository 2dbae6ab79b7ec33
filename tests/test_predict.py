"""Prediction: explicit rules, the reference experiment's protocol, and its published numbers."""

from __future__ import annotations

import json

import pytest
import yaml

from harness.predict import Environment, os_glibc, rule_outcome
from tests.conftest import ROOT, cli
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
    rates = {m: got[m]["success_rate"] for m in got}
    # basic: only the 2 jammy images without GPU survive a jammy view (2 of 10 amd64 images);
    # platform: focal images half the time, rocky 8 half the time, rocky 9 always, no GPU ones;
    # platform-version: every non-GPU image (6 of 10); descriptive: all, by construction.
    assert rates == pytest.approx(
        {
            "basic": 0.2,
            "platform": 0.45,
            "platform-version": 0.6,
            "descriptive-basic": 1.0,
            "descriptive-mpi": 1.0,
        }
    )
    assert got["basic"]["expected"] == {"gpu": 3.0, "os-abi": 21.0, "success": 6.0}
    assert got["basic"]["measured"] == {"success": 7, "os-abi": 18, "gpu": 5}
    assert got["platform-version"]["measured"] == {"success": 16, "gpu": 11, "mpi": 3}
