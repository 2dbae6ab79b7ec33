"""A newcomer's path, as the README gives it: install just the harness with pip into a new
virtual environment, then "Your own images" pasted as written, on two of the lab's images, to
a per-image verdict. The blocks are read from README.md, not copied here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, lab_missing, require

README = ROOT / "README.md"
LAB_SIF = Path("/var/cache/compat-harness/lab/sif")


def block(after: str) -> str:
    """The first ```sh block after the heading or marker `after`."""
    text = README.read_text()
    m = re.search(re.escape(after) + r".*?```sh\n(.*?)```", text, flags=re.DOTALL)
    assert m, f"README.md has no sh block after {after!r}"
    return m.group(1)


def bash(script: str, cwd: Path, env: dict | None = None, timeout: float = 900):
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_blocks_are_there():
    install = block("## Install just the harness")
    assert "pip install /path/to/compat-harness" in install and "harness --version" in install
    own = block("<!-- own-images -->")
    assert own.startswith("REGISTRY=") and "harness census" in own and "apptainer push" in own


@pytest.mark.lab
def test_from_pip_install_to_a_verdict_on_two_images(lab, tmp_path):
    images = [LAB_SIF / f"openmpi-debian-{v}-amd64.sif" for v in (12, 11)]
    missing = [str(i) for i in images if not i.is_file()]
    require("the lab's SIF files", f"missing {missing}" if missing else lab_missing())
    # the checkout as a user would have it: its sources, nothing built in it yet
    src = tmp_path / "compat-harness"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "results", "*.egg-info", "*.sif"),
    )
    venv = tmp_path / "venv"
    install = block("## Install just the harness")
    install = install.replace("~/.venvs/harness", str(venv)).replace(
        "/path/to/compat-harness", str(src)
    )
    proc = bash(install, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^harness \d+\.\d+", proc.stdout, flags=re.MULTILINE), proc.stdout

    own = block("<!-- own-images -->")
    own = re.sub(r"^REGISTRY=\S+", "REGISTRY=127.0.0.1/readme", own, flags=re.MULTILINE)
    own = re.sub(r"^A=\S+", f"A={images[0]}", own, flags=re.MULTILINE)
    own = re.sub(r"^B=\S+", f"B={images[1]}", own, flags=re.MULTILINE)
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = bash(own, work, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    records = [
        json.loads(r) for r in (work / "results/mine/records.jsonl").read_text().split("\n") if r
    ]
    verdicts = {r["image"].rsplit(":", 1)[1]: r["reason"] for r in records}
    # the host's Open MPI bound in (the default): bookworm runs, bullseye's glibc is too old
    assert verdicts == {"a": "success", "b": "os-abi"}, verdicts
    assert (work / "results/mine/report.md").is_file()
