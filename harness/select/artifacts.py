"""Compatibility artifacts (compspec CompatibilitySpec JSON): their sources and what they say.

Sources, in the order a lookup tries them for one image:
- a local file named by the manifest's `artifact` field (a path that exists);
- a compspec-go cache directory (`--cache`): file name = reference with `/` and `:` turned into `-`;
- the OCI registry through `oras`, behind our own cache, which serves hits (compspec-go's writes
  its cache but never reads it back) and never turns a failed fetch into an empty spec.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from harness.errors import HarnessError
from harness.files import atomic_write, read_input, user_cache
from harness.select import artifact_index, manifest_cache
from harness.select.bulk import gc_paused
from harness.select.manifest import Image, local_artifact

# compspec-go used the first before its rename to compspec (2024-02), the second after it.
MEDIA_TYPES = ("application/org.supercontainers.compspec", "application/org.compspec")
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
READ_SIZE = 1 << 16  # an artifact is a few KB


@dataclass(frozen=True)
class Artifact:
    ref: str
    digest: str
    attributes: dict[str, str]  # flattened: "<compatibility name>.<attribute>" -> value
    source: str


def cache_name(ref: str) -> str:
    """compspec-go's cache file name for an artifact reference."""
    return ref.replace("/", "-").replace(":", "-") + ".json"


def parse(data: bytes, where: str) -> dict[str, str]:
    """Flatten a CompatibilitySpec into compspec-go's match keys, or say what is wrong with it."""
    try:
        spec = orjson.loads(data)  # selection may read 10,000s of artifacts
    except orjson.JSONDecodeError:
        raise HarnessError(f"{where}: artifact is not JSON") from None
    if not isinstance(spec, dict) or spec.get("kind") != "CompatibilitySpec":
        raise HarnessError(
            f"{where}: artifact is not a CompatibilitySpec (kind is missing or wrong)"
        )
    compats = spec.get("compatibilities")
    if not isinstance(compats, list):
        raise HarnessError(f"{where}: artifact has no 'compatibilities' list")
    flat: dict[str, str] = {}
    intern = sys.intern  # 100,000 artifacts share one copy of each key and of each common value
    for i, compat in enumerate(compats):
        if not isinstance(compat, dict) or not isinstance(compat.get("name"), str):
            raise HarnessError(f"{where}: compatibilities[{i}] has no name")
        attrs = compat.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise HarnessError(f"{where}: compatibilities[{i}].attributes is not a mapping")
        prefix = compat["name"] + "."
        for key, value in attrs.items():
            flat[intern(prefix + key)] = intern(value if type(value) is str else str(value))
    return flat


def tls_verify() -> bool | str:
    """Trust the system's CA store (where the lab's CA is installed), not certifi's bundle."""
    return str(SYSTEM_CA_BUNDLE) if SYSTEM_CA_BUNDLE.is_file() else True


def oras_client():
    """An ORAS client that trusts the system's CA store and prints nothing itself: what went
    wrong reaches the user as the harness's one line, not as the library's own lines."""
    import oras.client  # deferred: importing oras costs ~0.3 s and offline runs never need it
    import oras.logger

    oras.logger.logger.log_handler = []
    return oras.client.OrasClient(tls_verify=tls_verify())


LAB_REGISTRY = "127.0.0.1/lab/"


def lab_hint(ref: str) -> str:
    """A pointer to `make lab` when the reference is the lab's and the lab is not up."""
    return "; is the lab up? run `make lab`" if ref.startswith(LAB_REGISTRY) else ""


class RegistryUnreachable(HarnessError):
    """The registry did not answer at all: an outage, not a verdict on an image."""


def probe_registry(ref: str) -> None:
    """Fail at once when the registry of a reference does not answer at all.

    oras retries a refused connection five times with growing sleeps (over two minutes).
    """
    import requests

    host = ref.split("/", 1)[0]
    try:
        requests.get(f"https://{host}/v2/", timeout=10, verify=tls_verify())
    except requests.RequestException as exc:
        raise RegistryUnreachable(
            f"registry {host} is unreachable ({type(exc).__name__})"
        ) from None


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _read(path: str, where: str) -> bytes | None:
    """A local artifact's bytes, None when there is no such file. A 100,000-image selection
    reads as many files: open, read, close, without the buffered file object's extra calls."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        read_input(path, f"{where}: artifact")  # the one line that says why, or:
        raise HarnessError(f"{where}: artifact {path}: {exc.strerror or exc}") from None
    try:
        data = os.read(fd, READ_SIZE)
        if len(data) < READ_SIZE:  # a regular file's read comes short only at its end
            return data
        parts = [data]
        while chunk := os.read(fd, READ_SIZE):
            parts.append(chunk)
        return b"".join(parts)
    except IsADirectoryError:
        return None
    finally:
        os.close(fd)


class ArtifactStore:
    """Each image's artifact, looked up once per process; the registry only on a cache miss."""

    def __init__(
        self,
        cache: Path | None = None,
        registry_cache: Path | None = None,
        skip_invalid: bool = False,
    ):
        self.cache = Path(cache) if cache else None
        self.skip_invalid = skip_invalid
        self.skipped: dict[str, str] = {}  # image name -> why its artifact was unusable
        if self.cache is not None and not self.cache.is_dir():
            raise HarnessError(f"artifact cache {self.cache}: not a directory")
        self._cache_prefix = os.path.join(self.cache, "") if self.cache else ""
        self.registry_cache = Path(registry_cache) if registry_cache else user_cache("artifacts")
        self._memo: dict[str, Artifact] = {}  # by reference
        self._parsed: dict[str, dict[str, str]] = {}  # by digest
        self._alike: dict[tuple, dict[str, str]] = {}  # one dict per distinct attributes
        self._probed: set[str] = set()
        self._client = None
        self._index: artifact_index.ArtifactIndex | None = None  # during read_all only

    def read_all(self, images: Iterable[Image]) -> None:
        """Every image's artifact, in one pass: what selection reads of 100,000 images (from
        a cache directory: through its index, harness.select.artifact_index)."""
        images = [image for image in images if image.artifact not in self._memo]
        code = manifest_cache.source(__file__)
        with gc_paused():
            if self.cache and code and len(images) >= artifact_index.MIN_FILES:
                name = manifest_cache.entry_name(self._cache_prefix, code)
                self._index = artifact_index.ArtifactIndex(name)
            try:
                for image in images:
                    self.get(image.name, image.artifact)
                if self._index is not None:
                    self._index.save()
            finally:
                self._index = None

    def get(self, image_name: str, ref: str | None) -> Artifact | None:
        """The image's artifact; None when it is unusable and skip_invalid was asked for."""
        try:
            if not ref:
                raise HarnessError(f"image {image_name}: the manifest gives no artifact")
            if ref not in self._memo:
                self._memo[ref] = self._load(image_name, ref)
            return self._memo[ref]
        except HarnessError as exc:
            if not self.skip_invalid:
                raise
            self.skipped[image_name] = str(exc)
            return None

    def _load(self, image_name: str, ref: str) -> Artifact:
        where = f"image {image_name}"
        if local_artifact(ref):
            if (data := _read(ref, where)) is None:
                why = "is a directory, not a file" if os.path.isdir(ref) else "no such file"
                raise HarnessError(f"{where}: artifact file {ref}: {why}")
            return self._artifact(ref, data, where, f"file:{ref}", ref)
        if self.cache is not None:
            path = self._cache_prefix + cache_name(ref)
            index = self._index
            if index is not None and (known := index.lookup(path)):
                return Artifact(ref, *known, f"cache:{path}")  # its attributes shared already
            data = _read(path, where)
            if data is None:
                raise HarnessError(f"{where}: artifact {ref} is not in cache {self.cache}")
            artifact = self._artifact(ref, data, where, f"cache:{path}", path)
            if index is not None:
                index.remember(path, artifact.digest, artifact.attributes)
            return artifact
        path = self.registry_cache / cache_name(ref)
        if path.is_file():
            return self._artifact(ref, path.read_bytes(), where, f"cache:{path}")
        data = self._fetch(where, ref)
        artifact = self._artifact(ref, data, where, f"registry:{ref}")
        atomic_write(path, data)  # after parsing: a bad artifact is never cached
        return artifact

    def _artifact(
        self, ref: str, data: bytes, where: str, source: str, user_file: str | None = None
    ) -> Artifact:
        """One parse per distinct content: images built alike share one artifact's bytes.
        A user's file that is no artifact is first checked as text, to say what is wrong."""
        digest = _digest(data)
        flat = self._parsed.get(digest)
        if flat is None:
            try:
                flat = parse(data, where)
            except HarnessError:
                if user_file is not None:
                    read_input(user_file, f"{where}: artifact")  # binary, not UTF-8, ...
                raise
            # images built alike differ in their artifact's metadata only: share one dict
            flat = self._parsed[digest] = self._alike.setdefault(tuple(flat.items()), flat)
        return Artifact(ref, digest, flat, source)

    def _fetch(self, where: str, ref: str) -> bytes:
        if self._client is None:
            self._client = oras_client()
        client = self._client
        try:
            host = ref.split("/", 1)[0]
            if host not in self._probed:  # once per registry: oras alone retries for minutes
                probe_registry(ref)
                self._probed.add(host)
            manifest = client.get_manifest(ref)
            layers = [
                lay for lay in manifest.get("layers", []) if lay.get("mediaType") in MEDIA_TYPES
            ]
            if not layers:
                raise HarnessError(
                    f"{where}: artifact {ref} has no layer of media type {' or '.join(MEDIA_TYPES)}"
                )
            response = client.get_blob(ref, layers[0]["digest"])
            response.raise_for_status()
        except HarnessError as exc:
            raise HarnessError(
                f"{where}: cannot fetch artifact {ref}: {exc}{lab_hint(ref)}"
            ) from None
        except Exception as exc:  # requests/oras raise many types; the user needs the one line
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HarnessError(
                f"{where}: cannot fetch artifact {ref}: {reason}{lab_hint(ref)}"
            ) from None
        data = response.content
        if _digest(data) != layers[0]["digest"]:
            raise HarnessError(f"{where}: artifact {ref} does not match its digest")
        return data
