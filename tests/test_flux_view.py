"""A shell or a process in a Flux Operator pod finds Flux by itself (harness/run/flux_view.py,
containers/node/flux-view-profile.sh), and `harness` with no --executor uses it.

The view is laid out as the operator lays it out (flux-operator pkg/flux/templates/
components.sh "paths" writes flux-view.sh; templates/wait.sh starts the broker with
`-Slocal-uri=local://<base>/run/flux/local`, base `config` at head and `view` in 0.2.1).
The tests without a broker run everywhere; those with one start a real `flux start` whose
broker listens where the operator's does, and skip where flux-core is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.run import flux_view
from harness.run.executors import choose
from tests.conftest import ROOT, cli

PROFILE = ROOT / "containers" / "node" / "flux-view-profile.sh"
LAYOUTS = {"head": "config/run/flux/local", "0.2.1": "view/run/flux/local"}


def write_view(base: Path, prefix: Path | None, layout: str) -> str:
    """flux-view.sh as the operator's template writes it; returns the fluxsocket URI."""
    view = base / "view"
    view.mkdir(parents=True, exist_ok=True)
    if prefix is not None:  # the view's tree: the flux-core install, entry by entry
        for entry in ("bin", "lib", "libexec", "etc", "share"):
            if (prefix / entry).exists() and not (view / entry).exists():
                (view / entry).symlink_to(prefix / entry)
    pythonpath = ""
    if prefix is not None:
        (found,) = (view / "lib" / "flux").glob("python3.*")
        pythonpath = str(found)
    uri = f"local://{base / LAYOUTS[layout]}"
    (base / LAYOUTS[layout]).parent.mkdir(parents=True, exist_ok=True)
    (base / "flux-view.sh").write_text(
        "#!/bin/bash\n"
        f"export PATH=/usr/local/bin:/usr/bin:/bin:{view}/bin\n"
        f"export PYTHONPATH=:{pythonpath}\n"
        f"export LD_LIBRARY_PATH=:{view}/lib\n"
        f"export fluxsocket={uri}\n"
    )
    return uri


@pytest.fixture
def clean_env(monkeypatch):
    """This process as a `kubectl exec` shell starts it: no FLUX_URI, no view on its paths."""
    monkeypatch.setenv("FLUX_URI", "")  # recorded, so what ensure() sets is undone
    monkeypatch.delenv("FLUX_URI")
    for name in flux_view.PATH_LISTS:
        monkeypatch.setenv(name, os.environ.get(name, ""))
    monkeypatch.setattr(sys, "path", list(sys.path))
    return monkeypatch


# --- without a broker -------------------------------------------------------------------------
def test_read_view_takes_exports_only(tmp_path):
    script = tmp_path / "flux-view.sh"
    script.write_text(
        "#!/bin/bash\nexport PATH=/a:/b\nexport fluxsocket='local:///x y/local'\n"
        "echo hi; rm -rf /\nexport NOVALUE\nexport A=1 B=2\n"
    )
    assert flux_view.read_view(script) == {"PATH": "/a:/b", "fluxsocket": "local:///x y/local"}


def test_no_view_no_instance(tmp_path, clean_env):
    clean_env.setenv("HARNESS_FLUX_VIEW", str(tmp_path))
    found = flux_view.ensure()
    assert found.uri is None and "no " + str(tmp_path / "flux-view.sh") in found.source
    assert choose("auto") == ("local", None)  # a plain machine: local is no news
    assert choose("slurm") == ("slurm", None)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_view_without_a_broker_is_not_an_instance(tmp_path, clean_env, layout):
    clean_env.setenv("HARNESS_FLUX_VIEW", str(tmp_path))
    write_view(tmp_path, None, layout)
    found = flux_view.ensure()
    assert found.uri is None and "names no broker socket" in found.source
    assert "FLUX_URI" not in os.environ
    name, line = choose("auto")  # a pod whose broker is not up (yet): say why not Flux
    assert name == "local" and line.startswith("executor local") and found.source in line
    assert os.environ["LD_LIBRARY_PATH"].endswith(f"{tmp_path}/view/lib")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_view_with_a_socket_sets_the_environment(tmp_path, clean_env, layout):
    clean_env.setenv("HARNESS_FLUX_VIEW", str(tmp_path))
    before = os.environ["PATH"]
    uri = write_view(tmp_path, None, layout)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(uri.removeprefix("local://"))
    try:
        found = flux_view.ensure()
    finally:
        listener.close()
    assert found == flux_view.Found(uri, str(tmp_path / "flux-view.sh"))
    assert os.environ["FLUX_URI"] == uri
    # the caller's PATH first, then what the view adds
    entries = os.environ["PATH"].split(":")
    assert entries == [*dict.fromkeys(e for e in before.split(":") if e), f"{tmp_path}/view/bin"]


def test_profile_script_leaves_a_shell_alone_outside_a_pod(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HARNESS_FLUX_VIEW": str(tmp_path)}
    out = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c", f'. {PROFILE}; echo "$PATH|${{FLUX_URI-}}"'],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.strip() == "/usr/bin:/bin|"


# --- with a real broker where the operator's is -----------------------------------------------
def _flux_prefix() -> Path:
    from tests.test_flux import _need_flux

    return Path(_need_flux()).resolve().parent.parent


@pytest.fixture(params=list(LAYOUTS))
def operator_view(request, tmp_path):
    """(view base, uri, flux-core prefix): a flux view laid out as the operator does, with a
    broker listening on the operator's socket (one broker: in a pod each has its own socket)."""
    prefix = _flux_prefix()
    base = tmp_path / "mnt-flux"
    uri = write_view(base, prefix, request.param)
    proc = subprocess.Popen(
        [str(prefix / "bin" / "flux"), "start", "--test-size=1", f"-o,-Slocal-uri={uri}",
         "sh", "-c", "echo up; exec cat"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "up"
    yield base, uri, prefix
    proc.stdin.close()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def pod_env(base: Path) -> dict:
    """A `kubectl exec` process's environment: no flux on PATH, no FLUX_URI, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUX_", "PYTHONPATH"))}
    env["PATH"] = ":".join(
        p for p in env["PATH"].split(":") if p and not (Path(p) / "flux").exists()
    )
    env["HARNESS_FLUX_VIEW"] = str(base)
    return env


def test_profile_makes_a_shell_find_the_broker(operator_view):
    base, uri, _ = operator_view
    out = subprocess.run(
        ["bash", "--noprofile", "--norc", "-c",
         f'. {PROFILE}; echo "$FLUX_URI"; flux resource list -no {{nnodes}}'],
        env=pod_env(base), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [uri, "1"]


def test_harness_with_no_executor_uses_the_views_instance(operator_view, lab, tmp_path):
    base, uri, prefix = operator_view
    env = pod_env(base)
    host = cli("host", "--json", env=env)
    assert host.returncode == 0, host.stderr
    first = host.stderr.splitlines()[0]
    assert first.startswith(f"harness: executor flux: the Flux instance at {uri}"), first
    assert f"found through {base / 'flux-view.sh'}" in first
    outdir = tmp_path / "out"
    run = cli(
        "run", "--manifests", str(ROOT / "containers/lab/manifests.yaml"),
        "--mode", "descriptive-basic", "--iters", "1", "--mpi-model", "hybrid",
        "--outdir", str(outdir), env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stderr.startswith("harness: executor flux:"), run.stderr
    (rec,) = [json.loads(line) for line in (outdir / "records.jsonl").read_text().splitlines()]
    version = (
        subprocess.run([str(prefix / "bin" / "flux"), "version"], capture_output=True, text=True)
        .stdout.split("libflux-core:")[1]
        .split()[0]
    )
    assert (rec["executor"], rec["executor_version"]) == ("flux", f"flux-core {version}")
    assert rec["reason"] != "infra", rec["evidence"]  # the image's outcome, whatever it is


def test_executor_local_still_forces_local(operator_view, tmp_path):
    base, _, _ = operator_view
    if shutil.which("mpirun") is None:
        pytest.skip("no mpirun here")
    proc = cli(
        "run", "--executor", "local", "--manifests", str(ROOT / "containers/lab/manifests.yaml"),
        "--mode", "random", "--iters", "1", "--dry-run", "--outdir", str(tmp_path / "o"),
        env=pod_env(base),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "executor flux" not in proc.stderr and "mpirun" in proc.stdout
