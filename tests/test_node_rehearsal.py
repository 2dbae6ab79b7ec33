"""What docs/minicluster.md has a user type in the lead broker's pod, run in the node image's
userland (harness/lab/node.py: Debian bookworm, Open MPI, the /opt/harness venv, the Flux view
profile), installed with the checkout under test.

No Docker engine and no Kubernetes are here, so the pod is an `apptainer exec` of that image
with what the MiniCluster gives a pod bound in: a Flux view at /mnt/flux, the repository at
/src/compat-harness, /results, and the environment of minicluster/persistent.yaml. The view is a
stand-in laid out as the operator lays it out; where flux-core is installed it holds that
install and a broker listens on its socket, and the block's Flux lines run for real (jobs
then run on this machine, outside the userland: the paths bound are the same on both sides).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, lab_missing, require

DOCS = ROOT / "docs" / "minicluster.md"
LAB_MANIFEST = "containers/lab/manifests.yaml"
NEEDS_FLUX = ("flux ", "harness prepull", "harness status")
APPTAINER_PREFIX = Path("/opt/compat-harness/apptainer")


def in_pod_block() -> list[str]:
    """The commands of the block marked `<!-- in-pod -->` in docs/minicluster.md."""
    text = DOCS.read_text()
    m = re.search(r"<!-- in-pod -->\n```sh\n(.*?)```", text, flags=re.DOTALL)
    assert m, "docs/minicluster.md has no <!-- in-pod --> block"
    lines = [line.split("#", 1)[0].strip() for line in m.group(1).splitlines()]
    return [line for line in lines if line]


def pod_environment() -> dict[str, str]:
    """The container environment minicluster/persistent.yaml gives every pod."""
    docs = yaml.safe_load_all((ROOT / "minicluster" / "persistent.yaml").read_text())
    (mc,) = [d for d in docs if d and d["kind"] == "MiniCluster"]
    return {k: str(v) for k, v in mc["spec"]["containers"][0]["environment"].items()}


@pytest.fixture(scope="module")
def node_sif() -> Path:
    from harness.lab.node import sif_path

    sif = sif_path()
    why = None if sif.is_file() else f"no node image at {sif} (python -m harness.lab.node)"
    require("the node image", why or lab_missing())
    return sif


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The checkout under test as a wheel, installed into the image at each use; built from a
    copy of the sources, so nothing of an earlier build in the checkout gets into it."""
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src") / "compat-harness"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".git", ".venv", "build", "results", "*.egg-info", "*.sif"),
    )
    subprocess.run(
        ["python3", "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), "."],
        cwd=src,
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("compat_harness-*.whl")
    return whl


class Pod:
    """`apptainer exec` of the node userland with a pod's mounts and environment."""

    def __init__(self, sif: Path, wheel: Path, root: Path, same_paths: bool):
        self.sif, self.wheel, self.root = sif, wheel, root
        # Jobs of a real broker run on this machine and inherit the binds Apptainer lists in
        # the container's environment: there, every bound path is the same on both sides.
        self.view = root / "mnt-flux" if same_paths else Path("/mnt/flux")
        self.src = ROOT if same_paths else Path("/src/compat-harness")
        self.results = root / "results" if same_paths else Path("/results")
        self.cache = root / "cache"
        for d in (root / "mnt-flux", root / "results", self.cache):
            d.mkdir(parents=True, exist_ok=True)
        env = pod_environment()
        env.update(
            HARNESS_MANIFESTS=str(self.src / LAB_MANIFEST),  # the reference's are not reachable
            HARNESS_OUTDIR=str(self.results / "runs"),
            HARNESS_FLUX_VIEW=str(self.view),
            XDG_CACHE_HOME=str(self.cache),  # the pod's is on its scratch volume
            REQUESTS_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt",  # the lab registry's CA
        )
        self.env = env
        self.binds = [
            f"{wheel.parent}:{wheel.parent}:ro",
            f"{ROOT}:{self.src}:ro",
            f"{APPTAINER_PREFIX}:{APPTAINER_PREFIX}:ro",
            f"{root / 'mnt-flux'}:{self.view}",
            f"{root / 'results'}:{self.results}",
            f"{self.cache}:{self.cache}",
            "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
        ]

    def shell(self, line: str, extra_binds: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        """`line` in an interactive bash of the pod (it reads /etc/bash.bashrc, as the shell
        of `kubectl exec -it POD -- bash` does), after installing the harness."""
        install = f"/opt/harness/bin/pip install -q --no-deps --no-index {self.wheel}"
        argv = ["apptainer", "exec", "--cleanenv", "--contain", "--writable-tmpfs"]
        for spec in (*self.binds, *extra_binds):
            argv += ["--bind", spec]
        env_file = self.root / "pod.env"  # values hold commas: --env would split them
        env_file.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in self.env.items()))
        argv += ["--env-file", str(env_file)]
        argv += [str(self.sif), "bash", "-i", "-c", f"{install} && {line}"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def standin_view(base: Path, view: Path, prefix: Path | None) -> None:
    """flux-view.sh as the operator's template writes it (flux-operator pkg/flux/templates/
    components.sh at head), for a view mounted at `view`; the tree from `prefix` if given."""
    (base / "view").mkdir(exist_ok=True)
    if prefix is not None:
        for entry in ("bin", "lib", "libexec", "etc", "share"):
            if (prefix / entry).exists():
                (base / "view" / entry).symlink_to(prefix / entry)
    (base / "config" / "run" / "flux").mkdir(parents=True, exist_ok=True)
    (base / "flux-view.sh").write_text(
        "#!/bin/bash\n"
        f"export PATH=/opt/harness/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
        f"/sbin:/bin:{view}/view/bin\n"
        f"export PYTHONPATH=:{view}/view/lib/flux/python3.11\n"
        f"export LD_LIBRARY_PATH=:{view}/view/lib\n"
        f"export fluxsocket=local://{view}/config/run/flux/local\n"
    )


def test_the_docs_block_is_the_path_a_user_types():
    block = in_pod_block()
    assert block[0] == "harness --version"
    assert "harness run --mode descriptive-basic" in block  # the design card, literally
    assert any(c.startswith("harness prepull") for c in block)


def test_in_pod_commands_against_a_standin_view(node_sif, wheel, tmp_path):
    """Without a broker: every line that needs none, as typed (the manifest from the pod's
    environment, here the lab's), in the node userland."""
    pod = Pod(node_sif, wheel, tmp_path, same_paths=False)
    standin_view(tmp_path / "mnt-flux", pod.view, None)
    from importlib.metadata import version

    ran = []
    for line in in_pod_block():
        if line.startswith(NEEDS_FLUX) or line == "harness run --mode descriptive-basic":
            continue  # needs a Flux instance, or runs LAMMPS for 30 iterations
        proc = pod.shell(line)
        assert proc.returncode == 0, (line, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, line
        ran.append(line)
        if line == "harness --version":
            assert proc.stdout.strip() == f"harness {version('compat-harness')}"
        if line.startswith("harness host"):
            assert "executor local" in proc.stderr and "names no broker socket" in proc.stderr
            assert "org.supercontainers.mpi.version" in proc.stdout  # the userland's mpirun
        if line.startswith("harness candidates"):
            assert proc.stdout.split() and all(
                name.startswith("127.0.0.1/lab/") for name in proc.stdout.split()
            )
        if "--dry-run" in line:
            plans = [p for p in proc.stdout.splitlines() if p.startswith("# descriptive-basic")]
            assert len(plans) == 3 and "mpirun" in proc.stdout
            assert not (tmp_path / "results" / "runs").exists()  # nothing written
    assert len(ran) == 4, ran


def test_in_pod_block_on_a_real_flux(node_sif, wheel, tmp_path):
    """Where flux-core is installed: the whole block in one interactive shell whose profile
    finds the broker, the run's iterations cut to 2. The jobs run on this machine, so
    prepull's line is its worker run here (what each of its Flux jobs runs on a node) and
    /results is where it is bound."""
    flux = shutil.which("flux")
    if flux is None:
        pytest.skip("flux-core is not installed (no package registry has it)")
    prefix = Path(flux).resolve().parent.parent
    pod = Pod(node_sif, wheel, tmp_path, same_paths=True)
    standin_view(tmp_path / "mnt-flux", pod.view, prefix)
    uri = f"local://{pod.view}/config/run/flux/local"
    broker = subprocess.Popen(
        [flux, "start", "--test-size=1", f"-o,-Slocal-uri={uri}", "sh", "-c", "echo up; exec cat"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert broker.stdout.readline().strip() == "up"
        worker = subprocess.run(
            [sys.executable, "-m", "harness.run.prepull", "--worker", "--manifests",
             str(ROOT / LAB_MANIFEST), "--sif-cache", str(pod.cache / "compat-harness" / "sif")],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert worker.stdout.count('"ok": true') >= 3, worker.stderr
        lines = [
            line.replace("harness run --mode descriptive-basic", "harness run --iters 2 --mode "
                         "descriptive-basic").replace("/results/", f"{pod.results}/")
            for line in in_pod_block()
            if not line.startswith("harness prepull")
        ]  # fmt: skip
        script = " && ".join(f"echo {shlex.quote('$ ' + line)} >&2 && {line}" for line in lines)
        proc = pod.shell(script, (f"{prefix}:{prefix}:ro",))
    finally:
        broker.stdin.close()
        broker.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert f"executor flux: the Flux instance at {uri}" in proc.stderr
    records = (tmp_path / "results" / "runs" / "records.jsonl").read_text().splitlines()
    recs = [json.loads(r) for r in records]
    assert len(recs) == 2 and {r["executor"] for r in recs} == {"flux"}
    assert all(r["executor_version"].startswith("flux-core ") for r in recs)
    assert all(r["reason"] != "infra" for r in recs), [r["evidence"] for r in recs]


def test_profile_in_the_image_is_the_repositorys():
    """The rehearsal image carries the same profile as the Dockerfile installs."""
    from harness.lab.node import PROFILE, PROFILE_IN_IMAGE

    text = (ROOT / "containers" / "node" / "Dockerfile").read_text()
    assert f"COPY {PROFILE.relative_to(ROOT)} {PROFILE_IN_IMAGE}" in text
    assert os.path.isfile(PROFILE)
