"""MiniClusters: minicluster/persistent.yaml and the per-iteration ones `--executor minicluster`
renders validate against the Flux Operator's CRD (head and release 0.2.1) with unknown fields
rejected, and the executor fails in one line when no Kubernetes API answers.

The CRD's openAPIV3Schema lets unknown fields through (the API server prunes them silently), so
the schema is made strict first: wherever an object lists `properties` and says nothing about
`additionalProperties`, unknown keys are forbidden. A misspelled field then fails, as the tests
below show.
"""

from __future__ import annotations

import copy
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.judge.faults import Fault
from harness.run.executors.base import Job
from harness.run.executors.minicluster import MiniClusterExecutor, render
from tests.conftest import ROOT, shared_dir

jsonschema = pytest.importorskip("jsonschema")

PERSISTENT = ROOT / "minicluster" / "persistent.yaml"
CRDS = {"head": "miniclusters-crd-head.yaml", "0.2.1": "miniclusters-crd-0.2.1.yaml"}


def strict(schema: dict) -> dict:
    """A copy of an OpenAPI v3 schema where objects with `properties` forbid unknown keys."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def crd_schema(variant: str, make_strict: bool = True) -> dict:
    shared = shared_dir()
    if shared is None:
        pytest.skip("Flux Operator CRD anchors not found: no ../shared beside the checkout")
    crd = yaml.safe_load((shared / "anchors" / "flux-operator" / CRDS[variant]).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha2"]
    schema = version["schema"]["openAPIV3Schema"]
    return strict(schema) if make_strict else schema


def errors(doc: dict, variant: str, make_strict: bool = True) -> list[str]:
    validator = jsonschema.Draft7Validator(crd_schema(variant, make_strict))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
    ]


def persistent() -> dict:
    return yaml.safe_load(PERSISTENT.read_text())


@pytest.mark.parametrize("variant", CRDS)
def test_persistent_validates(variant):
    assert errors(persistent(), variant) == []


@pytest.mark.parametrize("variant", CRDS)
@pytest.mark.parametrize(
    "path,wrong",
    [
        (("spec",), "interactve"),  # interactive
        (("spec", "containers", 0, "securityContext"), "privilegd"),  # privileged
        (("spec", "containers", 0, "volumes", "sif-cache"), "emptydir"),  # emptyDir
        (("spec", "flux", "container"), "img"),  # image
    ],
)
def test_misspelled_field_fails(variant, path, wrong):
    doc = persistent()
    node = doc
    for key in path:
        node = node[key]
    right = {
        "interactve": "interactive",
        "privilegd": "privileged",
        "emptydir": "emptyDir",
        "img": "image",
    }[wrong]
    node[wrong] = node.pop(right)
    found = errors(doc, variant)
    assert found, f"{wrong!r} was accepted"
    assert any(repr(wrong) in e and "not allowed" in e for e in found), found
    # Without the strict walk the CRD lets the typo through: the walk is what catches it.
    assert errors(doc, variant, make_strict=False) == []


def test_persistent_fits_five_c2d_standard_8():
    spec = persistent()["spec"]
    assert spec["interactive"] is True
    assert spec["size"] == 5
    (container,) = spec["containers"]
    assert container["securityContext"]["privileged"] is True
    cpu = float(container["resources"]["requests"]["cpu"])
    assert 4 < cpu < 8  # one pod per 8-vCPU node: a second one never fits beside it
    assert spec["tasks"] <= spec["size"] * 4  # 4 cores per c2d-standard-8 as Flux counts them
    volumes = container["volumes"]
    assert any(v["path"].startswith("/var/cache/compat-harness") for v in volumes.values())


@pytest.mark.parametrize("variant", CRDS)
def test_rendered_iteration_validates(variant):
    doc = render(
        "h-iter-0001-abc123",
        "ghcr.io/rse-ops/lammps-matrix:openmpi-ubuntu-gpu-20.04",
        ["lmp", "-v", "x", "2", "-in", "in.reaxc.hns"],
        tasks=4,
        size=2,
        workdir="/opt/lammps/examples/reaxff/HNS",
        crd=variant,
        deadline_s=600,
    )
    assert errors(doc, variant) == []
    spec = doc["spec"]
    assert spec["interactive"] is False
    assert spec["logging"]["strict"] is True
    assert spec["pod"]["restartPolicy"] == "Never"
    assert spec["containers"][0]["command"] == "lmp -v x 2 -in in.reaxc.hns"
    assert ("backoffLimit" in spec) == (variant == "head")


def test_head_rendering_is_refused_by_the_021_crd():
    """0.2.1 has no spec.backoffLimit: rendering for the wrong operator fails validation."""
    doc = render("h-x", "ghcr.io/x/y:z", ["lmp"], tasks=2, crd="head")
    assert any("backoffLimit" in e for e in errors(doc, "0.2.1"))


@dataclass(frozen=True)
class ImageJob(Job):
    image: str = ""


def _job(tmp_path: Path, image: str) -> ImageJob:
    return ImageJob(
        sif=Path("/nonexistent.sif"),
        command=("lmp", "-in", "in.lj"),
        np=2,
        workdir="/opt/lab",
        mpi_model="hybrid",
        timeout_s=300.0,
        stdout=tmp_path / "iter-0003.out",
        stderr=tmp_path / "iter-0003.err",
        image=image,
    )


@pytest.mark.parametrize("variant", CRDS)
def test_dry_run_writes_valid_minicluster(tmp_path, variant):
    pytest.importorskip("kubernetes")
    ex = MiniClusterExecutor(dry_run=True, crd=variant, size=2)
    ex.preflight()  # a dry run needs no cluster
    result = ex.run(_job(tmp_path, "127.0.0.1/lab/lammps-matrix:openmpi-debian-12-amd64"))
    written = tmp_path / "iter-0003.minicluster.yaml"
    assert result.fault == Fault("dry-run", str(written)) and result.events == []
    assert result.exit_code is None
    doc = yaml.safe_load(written.read_text())
    assert errors(doc, variant) == []
    assert doc["spec"]["containers"][0]["image"].endswith(":openmpi-debian-12-amd64")
    assert doc["spec"]["size"] == 2 and doc["spec"]["tasks"] == 2
    assert doc["metadata"]["name"].startswith("h-iter-0003-")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_unreachable_api_is_one_line(scheme):
    pytest.importorskip("kubernetes")
    url = f"{scheme}://127.0.0.1:{_closed_port()}"
    with pytest.raises(HarnessError) as info:
        MiniClusterExecutor(api_url=url).preflight()
    message = str(info.value)
    assert "\n" not in message
    assert f"Kubernetes API at {url} is unreachable" in message
    assert "Connection refused" in message


def test_missing_kubeconfig_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("kubernetes")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(HarnessError) as info:
        MiniClusterExecutor(kubeconfig=str(tmp_path / "absent")).preflight()
    assert "\n" not in str(info.value)
    assert "no Kubernetes configuration" in str(info.value)
