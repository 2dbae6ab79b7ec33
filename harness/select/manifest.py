"""The image manifest: compspec-go's format (`images: [{name, artifact}]`) plus run fields."""

from __future__ import annotations

import functools
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.files import json_escapes, read_input, syntax_error
from harness.select import manifest_cache
from harness.select.bulk import gc_paused

# libyaml's parser when PyYAML was built with it (its wheels are): a large manifest parses
# several times faster than with the pure-Python one, which is the fallback, said once.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

RUN_FIELDS = {"command", "workdir", "mpi_model", "flux", "runtime_options", "launcher_options"}
KNOWN_FIELDS = {"name", "artifact"} | RUN_FIELDS
# bind (the default): the host's MPI library bound into the image; hybrid: the image's own MPI.
MPI_MODELS = ("bind", "hybrid")
# Keys of the per-image `flux` settings (manifest field `flux:`), with their meaning; read by
# the Flux executor.
FLUX_SETTINGS = {
    "shell_options": "mapping of Flux shell options set in the jobspec, e.g. {pmi: pmix}",
    "env": "mapping of extra environment variables for the job",
    "bind_pmi": "bind Flux's PMI library directory into the container (default true)",
}


# The characters of an OCI reference (registry/repository:tag@digest), for docker:// and oras://
REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")


@dataclass(frozen=True)
class Image:
    name: str
    artifact: str | None
    command: tuple[str, ...] | None = None  # None: the application's (harness.application)
    workdir: str | None = None
    mpi_model: str | None = None
    flux: dict | None = None  # Flux shell options, env, PMI binding (executors/flux.py)
    # extra argv of the container runtime's `exec` (e.g. --nv, --cleanenv, --bind A:B) and of
    # the MPI launcher, for this image; added to the run's own (--runtime-option, ...)
    runtime_options: tuple[str, ...] = ()
    launcher_options: tuple[str, ...] = ()


def default_path() -> Path:
    """The manifest when none is named: $HARNESS_MANIFESTS (a deployment sets it once, as
    minicluster/persistent.yaml does), else manifests.yaml here."""
    return Path(os.environ.get("HARNESS_MANIFESTS") or "manifests.yaml")


def load(path: str | Path) -> list[Image]:
    path = Path(path)
    text = read_input(path, "manifest")
    with gc_paused():
        if len(text) < manifest_cache.MIN_BYTES or not _code():
            rows = _rows(path, text)
        else:
            name = manifest_cache.entry_name(text, _code(), yaml.__version__.encode())
            rows = manifest_cache.read(name)
            if rows is None:
                _warn_without_libyaml(path)
                rows = _rows(path, text)
                manifest_cache.write(name, rows)
        return [_image(path, *row) for row in rows]


@functools.cache
def _warn_without_libyaml(path: Path) -> None:
    if SafeLoader is yaml.SafeLoader:
        print(
            f"harness: warning: manifest {path}: PyYAML has no libyaml here (yaml.CSafeLoader), "
            "so this large manifest is parsed by the slow pure-Python loader "
            "(install libyaml-dev, then reinstall pyyaml)",
            file=sys.stderr,
        )


def _code() -> bytes:
    """What validates a manifest: a cached manifest is valid for this code only."""
    return manifest_cache.source(__file__)


def _rows(path: Path, text: str) -> list[list]:
    """The manifest's images as validated rows (Image's fields, in order), or HarnessError."""
    try:
        data = yaml.load(json_escapes(text, "manifest", path), Loader=SafeLoader)
    except yaml.YAMLError as exc:
        raise syntax_error(exc, "manifest", path) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise HarnessError(f"manifest {path}: expected a mapping with an 'images' list")
    rows = [_entry(path, i, raw) for i, raw in enumerate(data["images"])]
    if not rows:
        raise HarnessError(f"manifest {path}: 'images' is empty")
    seen: set[str] = set()
    for i, row in enumerate(rows):
        if row[0] in seen:
            raise HarnessError(f"manifest {path}: images[{i}] name {row[0]!r} is listed twice")
        seen.add(row[0])
    return rows


def _image(path: Path, name, artifact, command, workdir, mpi_model, flux, runtime, launcher):
    if artifact and local_artifact(artifact) and not os.path.isabs(artifact):
        # a local artifact file is named relative to the manifest, not to the caller's cwd
        artifact = str((path.parent / artifact).resolve())
    command = tuple(command) if command else None
    return Image(name, artifact, command, workdir, mpi_model, flux, tuple(runtime), tuple(launcher))


def local_artifact(ref: str) -> bool:
    """Whether an artifact names a file rather than a registry reference (host/repository:tag,
    which always has a slash): a .json file, or a path spelled as one."""
    return ref.endswith(".json") or ref.startswith(("/", "./", "../")) or "/" not in ref


def _entry(path: Path, index: int, raw: object) -> list:
    where = f"manifest {path}: images[{index}]"
    if not isinstance(raw, dict):
        raise HarnessError(f"{where} must be a mapping with 'name' and 'artifact'")
    unknown = sorted(set(raw) - KNOWN_FIELDS)
    if unknown:
        raise HarnessError(f"{where} has unknown field(s): {', '.join(map(str, unknown))}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise HarnessError(f"{where} field 'name' must be a non-empty string")
    if not name.isprintable():  # a newline or control character would split logs and tables
        raise HarnessError(f"{where} name {name!r} holds a control character")
    scheme, sep, ref = name.strip().partition("://")
    if sep and scheme in ("docker", "oras") and not REFERENCE.fullmatch(ref):
        raise HarnessError(f"{where} name {name!r} is not an image reference ({scheme}://)")
    artifact = raw.get("artifact")
    if artifact is not None and (
        not isinstance(artifact, str) or not artifact.strip() or not artifact.isprintable()
    ):
        raise HarnessError(f"{where} field 'artifact' must be a non-empty line of text")
    command = raw.get("command")
    if command is not None and (
        not isinstance(command, list)
        or not command
        or not all(isinstance(a, str | int | float) for a in command)
    ):
        raise HarnessError(f"{where} field 'command' must be a non-empty list of arguments")
    workdir = raw.get("workdir")
    if workdir is not None and not isinstance(workdir, str):
        raise HarnessError(f"{where} field 'workdir' must be a path")
    mpi_model = raw.get("mpi_model")
    if mpi_model is not None and mpi_model not in MPI_MODELS:
        raise HarnessError(f"{where} field 'mpi_model' must be one of {', '.join(MPI_MODELS)}")
    flux = raw.get("flux")
    if flux is not None:
        if not isinstance(flux, dict):
            raise HarnessError(f"{where} field 'flux' must be a mapping")
        unknown = sorted(set(flux) - set(FLUX_SETTINGS))
        if unknown:
            raise HarnessError(
                f"{where} field 'flux' has unknown key(s): {', '.join(map(str, unknown))} "
                f"(known: {', '.join(FLUX_SETTINGS)})"
            )
    options = []
    for field in ("runtime_options", "launcher_options"):
        value = raw.get(field, [])
        if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
            raise HarnessError(f"{where} field '{field}' must be a list of arguments (strings)")
        options.append(value)
    artifact = artifact.strip() if artifact else None
    command = [str(a) for a in command] if command is not None else None
    return [name.strip(), artifact, command, workdir, mpi_model, flux, *options]
