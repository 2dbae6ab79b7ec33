"""Whose fault is a failed pull: a registry that answers and refuses is the image's (`pull`);
one that does not answer is an outage (`infra`, redone on resume), also when it went away
between resolving the image's digest and pulling it, and for `oras://`/`docker://` names.

A private registry of its own per test (Debian's docker-registry over TLS on another port of
127.0.0.1, with the lab's certificate), so stopping it touches nothing else.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from harness.run.runtime import ImageCache, registry_host
from harness.select.artifacts import tls_verify
from tests.conftest import require

PKI = Path("/var/lib/compat-harness/pki")


def test_registry_host_of_each_kind_of_name():
    assert registry_host("127.0.0.1/lab/x:t") == "127.0.0.1"
    assert registry_host("oras://127.0.0.1:5001/lab/x:t") == "127.0.0.1:5001"
    assert registry_host("docker://ghcr.io/rse-ops/lammps:t") == "ghcr.io"
    assert registry_host("docker://ubuntu:22.04") == "registry-1.docker.io"
    assert registry_host("docker://library/ubuntu:22.04") == "registry-1.docker.io"
    assert registry_host("/tmp/x.sif") is None
    assert registry_host("library://sylabs/x:t") is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRegistry:
    def __init__(self, root: Path):
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            f"http:\n  addr: {self.host}\n"
            f"  tls:\n    certificate: {PKI / 'server.crt'}\n    key: {PKI / 'server.key'}\n"
        )
        self.config = config
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(f"https://{self.host}/v2/", timeout=1, verify=tls_verify())
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError("the private registry did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None


@pytest.fixture
def registry(tmp_path):
    missing = [t for t in ("docker-registry", "apptainer") if shutil.which(t) is None]
    why = f"{', '.join(missing)} not installed (scripts/install-deps.sh)" if missing else None
    if why is None and not (PKI / "server.crt").is_file():
        why = "no lab certificate (scripts/registry.sh start makes it)"
    require("a private registry", why)
    reg = PrivateRegistry(tmp_path)
    reg.start()
    yield reg
    reg.stop()


@pytest.fixture
def pushed(registry, tmp_path) -> str:
    """A tiny SIF pushed to the private registry; its reference."""
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "hello").write_text("hello\n")
    sif = tmp_path / "tiny.sif"
    subprocess.run(
        ["apptainer", "build", "-F", str(sif), str(root)], capture_output=True, check=True
    )
    ref = f"{registry.host}/t/tiny:1"
    subprocess.run(
        ["apptainer", "push", str(sif), f"oras://{ref}"], capture_output=True, check=True
    )
    return ref


def test_gone_between_resolve_and_pull_is_an_outage(registry, pushed, tmp_path):
    cache = ImageCache(tmp_path / "sif")
    uri, digest = cache.resolve(pushed)  # the digest is known, then the registry goes away
    assert uri == f"oras://{pushed}" and digest
    registry.stop()
    pulled = cache.pull(pushed)
    assert pulled.path is None and pulled.unreachable, pulled.error


def test_schemed_names_on_a_dead_registry_are_outages(registry, pushed, tmp_path):
    registry.stop()
    for name in (f"oras://{pushed}", f"docker://{registry.host}/t/tiny:1"):
        pulled = ImageCache(tmp_path / "sif").pull(name)
        assert pulled.path is None and pulled.unreachable, (name, pulled.error)


def test_a_registry_that_answers_and_refuses_is_the_images(registry, pushed, tmp_path):
    cache = ImageCache(tmp_path / "sif")
    assert cache.pull(pushed).path is not None  # the image itself is fine
    for name in (f"{registry.host}/t/tiny:no-such-tag", f"oras://{registry.host}/t/nope:1"):
        pulled = cache.pull(name)
        assert pulled.path is None and not pulled.unreachable, (name, pulled.error)


def _pullers(where: Path) -> list[int]:
    """Pids of live processes whose command line names `where` (a puller writing into it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            argv = cmdline.split(b"\0")
            if b"pull" in argv and any(a.startswith(str(where).encode()) for a in argv):
                found.append(int(entry.name))
    return found


def test_an_interrupted_pull_leaves_no_puller_and_no_partial_file(lab, tmp_path):
    """SIGTERM while a run pulls its image (the largest lab image, fresh cache): the harness
    exits 143 and, by then, the puller is gone and the cache holds no partial file."""
    import signal

    from tests.conftest import spawn

    manifest = tmp_path / "m.yaml"
    manifest.write_text("images:\n  - name: 127.0.0.1/lab/lammps-matrix:openmpi-debian-13-amd64\n")
    for attempt in range(3):  # the pull must still run when the signal comes
        cache = tmp_path / f"sif{attempt}"
        proc = spawn(
            "run", "--manifests", str(manifest), "--mode", "random", "--iters", "1",
            "--outdir", str(tmp_path / f"out{attempt}"), "--sif-cache", str(cache),
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not _pullers(cache) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is not None or not _pullers(cache):
            proc.communicate(timeout=60)
            continue  # the pull was over before it could be interrupted: try again
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err
        assert _pullers(cache) == [], "the puller outlived the harness"
        assert not list(cache.glob(".pull-*")), "a partial image stayed in the cache"
        assert not (tmp_path / f"out{attempt}" / "records.jsonl").exists()
        return
    pytest.skip("every pull finished before it could be interrupted (a very fast registry)")
