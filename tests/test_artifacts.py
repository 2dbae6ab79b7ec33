"""Artifact sources and bad artifacts: named precisely, skipped only when the user asks."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from harness.errors import HarnessError
from harness.select.artifacts import ArtifactStore, cache_name
from tests.conftest import ROOT, cli
from tests.test_candidates import REF, UBUNTU_JAMMY


@pytest.fixture
def lab_copy(tmp_path, anchors):
    """The reference manifest and a private copy of its compspec-go cache, plus a host file."""
    cache = tmp_path / "cache"
    shutil.copytree(anchors / "compspec-cache", cache)
    host = tmp_path / "host.yaml"
    host.write_text(yaml.safe_dump(UBUNTU_JAMMY))
    return ROOT / "manifests.yaml", cache, host


def spoil(cache, tag: str, text: str) -> None:
    (cache / cache_name(REF + tag + "-compspec")).write_text(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "artifact is not JSON"),
        (json.dumps({"kind": "Pod"}), "artifact is not a CompatibilitySpec"),
        (json.dumps({"kind": "CompatibilitySpec"}), "artifact has no 'compatibilities' list"),
    ],
)
def test_bad_artifact_names_image_and_problem(lab_copy, text, problem):
    manifest, cache, host = lab_copy
    spoil(cache, "mpich-ubuntu-22.04-amd64", text)
    args = [
        "candidates",
        "--manifests",
        str(manifest),
        "--mode",
        "descriptive-basic",
        "--host",
        str(host),
        "--cache",
        str(cache),
        "--json",
    ]
    proc = cli(*args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert f"image {REF}mpich-ubuntu-22.04-amd64: {problem}" in proc.stderr
    skipped = cli(*args, "--skip-invalid")
    assert skipped.returncode == 0, skipped.stderr
    assert json.loads(skipped.stdout) == [REF + "openmpi-ubuntu-22.04-amd64"]
    assert f"warning: skipped: image {REF}mpich-ubuntu-22.04-amd64: {problem}" in skipped.stderr


def test_missing_artifact_in_cache(lab_copy):
    manifest, cache, host = lab_copy
    (cache / cache_name(REF + "openmpi-ubuntu-20.04-arm64-compspec")).unlink()
    proc = cli(
        "candidates",
        "--manifests",
        str(manifest),
        "--mode",
        "basic",
        "--host",
        str(host),
        "--cache",
        str(cache),
    )
    assert proc.returncode == 2
    assert "openmpi-ubuntu-20.04-arm64-compspec is not in cache" in proc.stderr


def test_entry_without_artifact(tmp_path, lab_copy):
    _, cache, host = lab_copy
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"images": [{"name": REF + "x"}]}))
    proc = cli(
        "candidates",
        "--manifests",
        str(manifest),
        "--mode",
        "descriptive-basic",
        "--host",
        str(host),
        "--cache",
        str(cache),
    )
    assert proc.returncode == 2
    assert f"image {REF}x: the manifest gives no artifact" in proc.stderr
    anything = cli(
        "candidates",
        "--manifests",
        str(manifest),
        "--mode",
        "random",
        "--host",
        str(host),
        "--json",
    )
    assert json.loads(anything.stdout) == [REF + "x"]  # random reads no artifact


def test_mode_file_defines_a_mode_and_rejects_unknown_keys(tmp_path, lab_copy):
    manifest, cache, host = lab_copy
    modes = tmp_path / "modes.yaml"
    modes.write_text(
        yaml.safe_dump(
            {
                "modes": {
                    "arch-gpu": {
                        "keys": [
                            "io.archspec.cpu.target",
                            "org.supercontainers.hardware.gpu.available",
                        ]
                    }
                }
            }
        )
    )
    proc = cli(
        "candidates",
        "--manifests",
        str(manifest),
        "--mode",
        "arch-gpu",
        "--mode-file",
        str(modes),
        "--host",
        str(host),
        "--cache",
        str(cache),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)) == 6  # the amd64 images without a GPU
    modes.write_text(yaml.safe_dump({"modes": {"bad": {"keys": ["os.colour"]}}}))
    bad = cli(
        "candidates",
        "--manifests",
        str(manifest),
        "--mode",
        "bad",
        "--mode-file",
        str(modes),
        "--host",
        str(host),
        "--cache",
        str(cache),
    )
    assert bad.returncode == 2 and "unknown attribute key 'os.colour'" in bad.stderr


def test_explain_shows_each_attribute(lab_copy):
    manifest, cache, host = lab_copy
    proc = cli(
        "explain",
        "--manifests",
        str(manifest),
        "--mode",
        "descriptive-mpi",
        "--host",
        str(host),
        "--cache",
        str(cache),
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "mode descriptive-mpi: 1 of 18 images are candidates" in " ".join(out.split())
    assert "mpi.implementation" in out and "intel-mpi" in out
    assert "fail" in out and "pass" in out
    # every failing attribute named in the verdict, at 100 columns with tags, not full names
    verdicts = "".join(line.split("│")[-2].strip() for line in out.splitlines() if "│" in line)
    assert "out:os.vendor,os.version,mpi.implementation" in verdicts
    assert max(len(line) for line in out.splitlines()) <= 100
    wide = cli(*proc.args[3:], "--wide")
    assert "org.supercontainers.mpi.implementation" in wide.stdout


def test_registry_cache_serves_hits_and_never_hides_a_failed_fetch(tmp_path, anchors):
    ref = "127.0.0.1:9/nowhere/lammps:tag-compspec"  # port 9: nothing listens
    store = ArtifactStore(registry_cache=tmp_path)
    with pytest.raises(HarnessError, match="cannot fetch artifact 127.0.0.1:9/nowhere"):
        store.get("img", ref)
    assert list(tmp_path.iterdir()) == []  # nothing cached from a failure
    source = anchors / "compspec-cache" / cache_name(REF + "mpich-ubuntu-22.04-amd64-compspec")
    shutil.copy(source, tmp_path / cache_name(ref))
    hit = ArtifactStore(registry_cache=tmp_path).get("img", ref)
    assert hit.attributes["org.supercontainers.mpi.implementation"] == "mpich"
    assert hit.source.startswith("cache:")


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        (["-march=x86-64-v4", "-mneeded"], "x86_64_v4"),
        (["-march=x86-64-v3", "-mneeded"], "x86_64_v3"),
        (["-march=x86-64-v2", "-mneeded"], "x86_64_v2"),
        ([], "x86_64"),  # no ISA level noted: the architecture's generic level
    ],
)
def test_microarchitecture_from_the_programs_isa_needed_note(tmp_path, flags, level):
    """gcc -march=x86-64-vN -mneeded writes the level into the program (the GNU property note
    "x86 ISA needed" that glibc's loader checks); the artifact reads it from there."""
    import platform

    from harness.select.elf import elf_info, microarchitecture

    if platform.machine() != "x86_64" or shutil.which("gcc") is None:
        pytest.skip("needs gcc on x86-64")
    (tmp_path / "p.c").write_text("int main(void) { return 0; }\n")
    out = tmp_path / "p"
    subprocess.run(["gcc", "-O2", *flags, "-o", str(out), str(tmp_path / "p.c")], check=True)
    info = elf_info(out.read_bytes())
    assert info is not None and microarchitecture(info) == level
