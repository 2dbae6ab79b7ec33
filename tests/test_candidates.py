"""Candidate sets of the six modes over the reference experiment's 18 images and three hosts."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, cli

REF = "ghcr.io/rse-ops/lammps-matrix:"
UBUNTU_JAMMY = {
    "io.archspec.cpu.target": "amd64",
    "org.supercontainers.os.vendor": "ubuntu",
    "org.supercontainers.os.version": "22.04",
    "org.supercontainers.hardware.gpu.available": "no",
    "org.supercontainers.mpi.implementation": "OpenMPI",
}
ROCKY_9_GPU = {
    "io.archspec.cpu.target": "x86_64",  # as uname says it: must be normalised to amd64
    "org.supercontainers.os.vendor": "rocky",
    "org.supercontainers.os.version": "9",  # major only: must match the images' 9.3
    "org.supercontainers.hardware.gpu.available": "yes",
    "org.supercontainers.mpi.implementation": "OpenMPI",
}
ARM_FOCAL = {
    "io.archspec.cpu.target": "aarch64",
    "org.supercontainers.os.vendor": "ubuntu",
    "org.supercontainers.os.version": "20.04",
    "org.supercontainers.hardware.gpu.available": "no",
    "org.supercontainers.mpi.implementation": "mpich",
}
AMD64 = [
    "openmpi-ubuntu-20.04-amd64",
    "openmpi-ubuntu-22.04-amd64",
    "mpich-ubuntu-20.04-amd64",
    "mpich-ubuntu-22.04-amd64",
    "openmpi-ubuntu-gpu-20.04-amd64",
    "openmpi-ubuntu-gpu-22.04-amd64",
    "openmpi-rocky-gpu-8-amd64",
    "openmpi-rocky-gpu-9-amd64",
    "intel-mpi-rocky-8-amd64",
    "intel-mpi-rocky-9-amd64",
]
ARM64 = [
    "openmpi-ubuntu-20.04-arm64",
    "openmpi-ubuntu-22.04-arm64",
    "mpich-ubuntu-20.04-arm64",
    "mpich-ubuntu-22.04-arm64",
    "openmpi-ubuntu-gpu-20.04-arm64",
    "openmpi-ubuntu-gpu-22.04-arm64",
    "openmpi-rocky-gpu-8-arm64",
    "openmpi-rocky-gpu-9-arm64",
]
CASES = [
    (UBUNTU_JAMMY, "random", AMD64 + ARM64),
    (UBUNTU_JAMMY, "basic", AMD64),
    (UBUNTU_JAMMY, "platform", [t for t in AMD64 if "ubuntu" in t]),
    (UBUNTU_JAMMY, "platform-version", [t for t in AMD64 if "ubuntu" in t and "22.04" in t]),
    (UBUNTU_JAMMY, "descriptive-basic", ["openmpi-ubuntu-22.04-amd64", "mpich-ubuntu-22.04-amd64"]),
    (UBUNTU_JAMMY, "descriptive-mpi", ["openmpi-ubuntu-22.04-amd64"]),
    (ROCKY_9_GPU, "basic", AMD64),
    (ROCKY_9_GPU, "platform", [t for t in AMD64 if "rocky" in t]),
    (ROCKY_9_GPU, "platform-version", ["intel-mpi-rocky-9-amd64", "openmpi-rocky-gpu-9-amd64"]),
    (ROCKY_9_GPU, "descriptive-basic", ["openmpi-rocky-gpu-9-amd64"]),
    (ROCKY_9_GPU, "descriptive-mpi", ["openmpi-rocky-gpu-9-amd64"]),
    (ARM_FOCAL, "basic", ARM64),
    (ARM_FOCAL, "platform", [t for t in ARM64 if "ubuntu" in t]),
    (ARM_FOCAL, "platform-version", [t for t in ARM64 if "20.04" in t]),
    (ARM_FOCAL, "descriptive-basic", ["openmpi-ubuntu-20.04-arm64", "mpich-ubuntu-20.04-arm64"]),
    (ARM_FOCAL, "descriptive-mpi", ["mpich-ubuntu-20.04-arm64"]),
]


def candidates(
    tmp_path, anchors, host: dict, mode: str, *extra: str
) -> subprocess.CompletedProcess:
    host_file = tmp_path / "host.yaml"
    host_file.write_text(yaml.safe_dump(host))
    return cli(
        "candidates",
        "--manifests",
        str(ROOT / "manifests.yaml"),
        "--mode",
        mode,
        "--host",
        str(host_file),
        "--cache",
        str(anchors / "compspec-cache"),
        "--json",
        *extra,
    )


@pytest.mark.parametrize(("host", "mode", "expected"), CASES)
def test_candidate_sets(tmp_path, anchors, host, mode, expected):
    proc = candidates(tmp_path, anchors, host, mode)
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(proc.stdout)) == sorted(REF + t for t in expected)


def test_empty_mode_says_which_attribute_excluded_what(tmp_path, anchors):
    host = dict(UBUNTU_JAMMY, **{"org.supercontainers.os.version": "18.04"})
    proc = candidates(tmp_path, anchors, host, "platform-version")
    assert proc.returncode != 0
    assert proc.stdout == ""
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "org.supercontainers.os.version=18.04 excluded 6" in line


def test_unknown_host_key_is_one_line(tmp_path, anchors):
    proc = candidates(tmp_path, anchors, dict(UBUNTU_JAMMY, colour="blue"), "basic")
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("unknown host key(s): colour")


def test_unknown_mode_is_one_line(tmp_path, anchors):
    proc = candidates(tmp_path, anchors, UBUNTU_JAMMY, "clairvoyant")
    assert proc.returncode == 2
    assert "unknown mode 'clairvoyant'" in proc.stderr and "Traceback" not in proc.stderr
