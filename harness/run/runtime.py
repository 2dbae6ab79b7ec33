"""The container runtime (Apptainer or Singularity) and the SIF cache.

Pulls go to a cache keyed by image reference and registry digest (asked once per run): a cached
image is not pulled again, and a tag that moved to a new digest is. Names that carry a scheme
(`docker://...`) and multi-arch indexes have no digest here and are cached by name. A pull writes
to a temporary name and is renamed into place, so a crash mid-pull never leaves a half image,
and an interrupted pull takes its puller and its temporary file with it: the puller runs in a
process group of its own that the harness stops (spython's pull runs the puller in the
harness's group with no handle to stop it, so it outlived a SIGTERM by seconds).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.select.artifacts import (
    RegistryUnreachable,
    oras_client,
    probe_registry,
    user_cache,
)

SIF_LAYER = "application/vnd.sylabs.sif.layer.v1.sif"
SCHEMES = ("oras://", "docker://", "library://", "https://", "shub://")


@dataclass(frozen=True)
class Pulled:
    path: Path | None
    digest: str | None
    seconds: float
    cached: bool
    error: str = ""  # the puller's own message when the pull failed
    unreachable: bool = False  # the registry did not answer: an outage, not the image


def executable() -> str:
    """The runtime's path: Apptainer, else Singularity."""
    for name in ("apptainer", "singularity"):
        if path := shutil.which(name):
            return path
    raise HarnessError("no container runtime: neither apptainer nor singularity is on PATH")


def registry_host(name: str) -> str | None:
    """The registry a reference is pulled from: its first component for a bare name or an
    `oras://`/`docker://` one naming a host (a dot, a port or localhost), Docker Hub for other
    `docker://` names; None for a local file and the other schemes."""
    scheme, sep, rest = name.partition("://")
    if not sep:
        scheme, rest = "", name
    if scheme not in ("", "oras", "docker") or (not scheme and is_local(name)):
        return None
    first, slash, _ = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "registry-1.docker.io" if scheme == "docker" else first


def answers(name: str) -> bool:
    """Whether the registry of `name` answers now (any HTTP answer counts; no answer does not)."""
    host = registry_host(name)
    if host is None:
        return True
    try:
        probe_registry(host + "/")
    except RegistryUnreachable:
        return False
    return True


def is_local(name: str) -> bool:
    """A SIF file named by its path (a registry reference always has a tag or digest)."""
    return name.endswith(".sif") and ":" not in name.rsplit("/", 1)[-1]


MAX_KEY = 200  # a file name stays under the 255 bytes filesystems allow


def cache_key(name: str, digest: str | None) -> str:
    """The cache's file name stem for an image: readable, and short enough for any filesystem
    (a long name keeps its start and gets a hash of the whole)."""
    key = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
    if len(key) > MAX_KEY:
        key = key[: MAX_KEY - 17] + "-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{key}@{digest.split(':', 1)[-1][:16]}" if digest else key


class ImageCache:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else user_cache("sif")
        if self.root.exists() and not self.root.is_dir():
            raise HarnessError(f"SIF cache {self.root}: not a directory")
        self._client = None
        self._resolved: dict[str, tuple[str, str | None]] = {}

    def _oras(self):
        if self._client is None:  # deferred: a run from local SIF files never needs it
            self._client = oras_client()
        return self._client

    def check_registries(self, names: list[str]) -> None:
        """Fail the whole run, not each iteration, when a registry does not answer at all."""
        remote = [n for n in names if not n.startswith(SCHEMES) and not is_local(n)]
        for host in sorted({n.split("/", 1)[0] for n in remote}):
            probe_registry(host + "/")

    def resolve(self, name: str) -> tuple[str, str | None]:
        """(pull URI, digest) of an image name: a SIF stored over ORAS, else an OCI image.

        Asked of the registry once per run and name: a registry hiccup later in the run must not
        turn an image already in the cache into a `pull` failure.
        """
        if name not in self._resolved:
            self._resolved[name] = self._resolve(name)
        return self._resolved[name]

    def _resolve(self, name: str) -> tuple[str, str | None]:
        if name.startswith(SCHEMES):
            return name, None
        probe_registry(name)
        manifest = self._oras().get_manifest(name)
        sif = [la for la in manifest.get("layers", []) if la.get("mediaType") == SIF_LAYER]
        if sif:
            return "oras://" + name, sif[0]["digest"]
        # An OCI image is identified by its config; a multi-arch index has none.
        return "docker://" + name, (manifest.get("config") or {}).get("digest")

    def path_for(self, name: str, digest: str | None) -> Path:
        """Where the cache keeps the image `name` whose registry digest is `digest`."""
        return self.root / f"{cache_key(name, digest)}.sif"

    def pull(self, name: str) -> Pulled:
        start = time.perf_counter()
        if is_local(name):  # a local image: nothing to pull
            if Path(name).is_file():
                return Pulled(Path(name), None, time.perf_counter() - start, True)
            return Pulled(None, None, 0.0, False, f"pull {name}: no such file")
        try:
            uri, digest = self.resolve(name)
        except Exception as exc:  # registry said no, or was unreachable: the pull failed
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return Pulled(
                None,
                None,
                time.perf_counter() - start,
                False,
                f"pull {name}: {text}",
                unreachable=isinstance(exc, RegistryUnreachable) or not answers(name),
            )
        target = self.path_for(name, digest)
        key = target.stem
        if target.is_file():
            return Pulled(target, digest, time.perf_counter() - start, True)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HarnessError(f"SIF cache {self.root}: {exc.strerror}") from None
        tmp = self.root / f".pull-{os.getpid()}-{threading.get_ident()}-{key}.sif"
        error = _pull(uri, tmp)
        if error is None and tmp.is_file():
            os.replace(tmp, target)
            return Pulled(target, digest, time.perf_counter() - start, False)
        tmp.unlink(missing_ok=True)
        # A puller's error says little about whose fault it was: a registry that answers and
        # refuses is the image's (`pull`); one that no longer answers is an outage (redone).
        return Pulled(
            None,
            digest,
            time.perf_counter() - start,
            False,
            error or "pull produced no file",
            unreachable=not answers(name),
        )


def local_sif(image: str) -> Path:
    """The SIF of an image reference, pulled through the harness's own SIF cache (the same
    pull `harness run` does): what `harness artifact create` describes."""
    pulled = ImageCache().pull(image.removeprefix("oras://"))
    if pulled.path is None:
        raise HarnessError(pulled.error.strip().splitlines()[-1] if pulled.error else image)
    return pulled.path


def _pull(uri: str, dest: Path) -> str | None:
    """`apptainer pull` of `uri` to `dest`; None, or the puller's own output when it failed.
    Interrupted (Ctrl-C, SIGTERM, an error), the puller's whole group is killed and waited for
    and the partial file removed before the interruption goes on."""
    argv = [executable(), "--quiet", "pull", "--force", str(dest), uri]
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        dest.unlink(missing_ok=True)
        raise
    if proc.returncode != 0:
        return output.strip() or f"pull of {uri} failed (exit {proc.returncode})"
    return None
