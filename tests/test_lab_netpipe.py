"""The second application end to end: NetPIPE (harness/data/applications/netpipe.yaml) through
`harness run --application netpipe --executor local`, in a lab image that has it.

Real NPopenmpi (Debian's netpipe-openmpi) in a real Apptainer container started by the host's
real `mpirun`. The image is the lab's openmpi-debian-12-amd64 as built in the lab cache
($HARNESS_LAB_CACHE, `make lab`), run as a local SIF: the lab's manifest names LAMMPS commands,
so the entry here names none and the application's command runs. A lab cache built before
the images had NetPIPE (another key) is stale here: skipped, and CI, which builds the lab, fails.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from harness.lab.build_keys import compute_keys
from harness.lab.matrix import cache_dir, load_matrix
from tests.conftest import cli, require

TAG = "openmpi-debian-12-amd64"


@pytest.fixture
def netpipe_sif() -> Path:
    """The lab cache's SIF of TAG, built from this checkout's images.yaml (it has NetPIPE)."""
    for tool in ("apptainer", "mpirun"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed here")
    cache = cache_dir()
    sif = cache / "sif" / f"{TAG}.sif"
    try:
        state = json.loads((cache / "state" / f"{TAG}.json").read_text())
    except (OSError, ValueError):
        state = {}
    why = None
    if not sif.is_file():
        why = f"no {sif} (build the lab: make lab)"
    elif state.get("image_key") != compute_keys(load_matrix())[TAG]["image"]:
        why = f"{sif} was built from another images.yaml (rebuild the lab: make lab)"
    require("the lab's image with NetPIPE", why)
    return sif


def run(tmp_path: Path, sif: Path, *extra: str, command: list[str] | None = None) -> list[dict]:
    entry: dict = {"name": str(sif), "workdir": "/opt/lab"}
    if command:
        entry["command"] = command
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"images": [entry]}))
    out = tmp_path / "out"
    args = ["census", "--manifests", str(manifest), "--outdir", str(out), "--executor", "local"]
    proc = cli(*args, "--application", "netpipe", *extra)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


@pytest.mark.lab
def test_netpipe_runs_end_to_end_and_its_figures_are_read(netpipe_sif, tmp_path):
    recs = run(tmp_path, netpipe_sif, "--repeats", "2")
    assert len(recs) == 2
    for rec in recs:
        assert rec["application"] == "netpipe" and rec["reason"] == "success", rec
        assert rec["argv"][-7:] == ["NPopenmpi", "-u", "65536", "-p", "0", "-o", "/dev/null"]
        figures = rec["figures"]
        # 1, 2, 3 bytes, then 2**k and 1.5 * 2**k up to 65536 (no perturbations): 32 blocks
        assert figures["blocks"] == 32 and figures["largest_block_bytes"] == 65536, figures
        assert figures["max_bandwidth_mbps"] > 0 and figures["latency_us"] > 0
        loop = Path(rec["stderr_path"]).read_text()  # NetPIPE prints its main loop on stderr
        rates = [float(ln.split("-->")[1].split()[0]) for ln in loop.splitlines() if "-->" in ln]
        assert figures["max_bandwidth_mbps"] == max(rates) and len(rates) == 32


@pytest.mark.lab
def test_a_wrong_binary_is_missing_binary(netpipe_sif, tmp_path):
    # the MPICH build's name: not in an Open MPI image
    (rec,) = run(tmp_path, netpipe_sif, command=["NPmpich2", "-u", "64", "-o", "/dev/null"])
    assert rec["application"] == "netpipe" and rec["reason"] == "missing-binary", rec
    assert "NPmpich2" in rec["evidence"]
