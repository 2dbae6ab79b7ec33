"""The lab matrix (containers/lab/images.yaml): load it, and find the things around it.

The matrix is the declarative list of the lab's container images; the builder
(`harness.lab.build`) turns each entry into a SIF, the publisher
(`harness.lab.publish`) pushes the SIFs and their compatibility artifacts and
writes `containers/lab/manifests.yaml`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import application
from harness.errors import HarnessError

REPO_ROOT = Path(__file__).resolve().parents[2]
MATRIX_FILE = REPO_ROOT / "containers" / "lab" / "images.yaml"
MANIFEST_FILE = REPO_ROOT / "containers" / "lab" / "manifests.yaml"
DEFAULT_CACHE = Path("/var/cache/compat-harness/lab")

TAG_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9.]+)*$")


def cache_dir() -> Path:
    """Where rootfs trees, SIFs and reports go: $HARNESS_LAB_CACHE or the default."""
    return Path(os.environ.get("HARNESS_LAB_CACHE") or DEFAULT_CACHE)


@dataclass(frozen=True)
class LabImage:
    """One entry of the matrix."""

    tag: str
    suite: str
    arch: str
    include: tuple[str, ...] = ()
    parent: str | None = None
    foreign: bool = False
    recipe: str | None = None
    recipe_packages: tuple[str, ...] = ()
    install: tuple[str, ...] = ()  # apt-get install into the copy of the parent's rootfs
    keep: tuple[str, ...] = ()  # lammps-from-source: packages kept when the build tools go
    cmake: tuple[str, ...] = ()  # lammps-from-source: more `-D NAME=VALUE` settings
    # lammps-from-source: style kind -> the styles to build ("*": all of that kind); the
    # sources of every other style are removed before the build
    styles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    # what the image runs (its runscript): the default application's command unless it says
    command: tuple[str, ...] = field(default_factory=lambda: application.load().command)
    expect: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def image_fields(self) -> dict[str, Any]:
        """The fields that decide the image's content (not the run settings or notes)."""
        return {k: v for k, v in self.raw.items() if k not in ("command", "expect")}


@dataclass(frozen=True)
class Matrix:
    registry: str
    workdir: str
    input: str
    lab_files: dict[str, Path]
    images: tuple[LabImage, ...]
    path: Path

    def by_tag(self, tag: str) -> LabImage:
        for image in self.images:
            if image.tag == tag:
                return image
        raise HarnessError(f"no image {tag!r} in {self.path}")

    def reference(self, tag: str) -> str:
        return f"{self.registry}:{tag}"

    def artifact_reference(self, tag: str) -> str:
        return f"{self.registry}:{tag}-compspec"

    def run_settings(self, tag: str) -> dict[str, Any]:
        image = self.by_tag(tag)
        return {"command": list(image.command), "workdir": self.workdir, "input": self.input}


def load_matrix(path: Path | None = None) -> Matrix:
    path = Path(path) if path else MATRIX_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise HarnessError(f"cannot read the lab matrix {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise HarnessError(f"{path}: expected a mapping with an 'images' list")
    images = []
    seen: set[str] = set()
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, dict):
            raise HarnessError(f"{path}: images[{i}] is not a mapping")
        for key in ("tag", "suite", "arch"):
            if not isinstance(entry.get(key), str):
                raise HarnessError(f"{path}: images[{i}] needs a string {key!r}")
        tag = entry["tag"]
        if not TAG_RE.match(tag) or tag in seen:
            raise HarnessError(f"{path}: bad or repeated tag {tag!r}")
        seen.add(tag)
        parent = entry.get("parent")
        if parent is not None and parent not in seen:
            raise HarnessError(f"{path}: {tag}: parent {parent!r} must come earlier")
        files = entry.get("files") or {}
        for fpath, spec in files.items():
            if not (str(fpath).startswith("/") and isinstance(spec, dict) and "content" in spec):
                raise HarnessError(
                    f"{path}: {tag}: files[{fpath!r}] needs an absolute path and content"
                )
        lists = {}
        for key in ("include", "recipe_packages", "install", "keep", "cmake"):
            value = entry.get(key) or []
            if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
                raise HarnessError(f"{path}: {tag}: {key} must be a list of strings")
            lists[key] = tuple(value)
        styles = entry.get("styles") or {}
        if not isinstance(styles, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(n, str) for n in v)
            for k, v in styles.items()
        ):
            raise HarnessError(f"{path}: {tag}: styles must map style kinds to lists of names")
        if lists["install"] and parent is None:
            raise HarnessError(f"{path}: {tag}: install needs a parent (debootstrap: include)")
        command = entry.get("command") or list(application.load().command)
        if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            raise HarnessError(f"{path}: {tag}: command must be a list of strings")
        images.append(
            LabImage(
                tag=tag,
                suite=entry["suite"],
                arch=entry["arch"],
                include=lists["include"],
                parent=parent,
                foreign=bool(entry.get("foreign", False)),
                recipe=entry.get("recipe"),
                recipe_packages=lists["recipe_packages"],
                install=lists["install"],
                keep=lists["keep"],
                cmake=lists["cmake"],
                styles={k: tuple(v) for k, v in styles.items()},
                files=dict(files),
                command=tuple(command),
                expect=str(entry.get("expect", "")),
                raw=dict(entry),
            )
        )
    lab_files = {name: (REPO_ROOT / rel) for name, rel in (data.get("lab_files") or {}).items()}
    return Matrix(
        registry=str(data.get("registry", "127.0.0.1/lab/lammps-matrix")),
        workdir=str(data.get("workdir", "/opt/lab")),
        input=str(data.get("input", "in.lj")),
        lab_files=lab_files,
        images=tuple(images),
        path=path,
    )


def debian_mirror() -> str:
    """The Debian mirror of this machine's own apt sources (never a built-in host name)."""
    candidates: list[str] = []
    sources_d = Path("/etc/apt/sources.list.d")
    for sources in sorted(sources_d.glob("*.sources")) if sources_d.is_dir() else []:
        for stanza in re.split(r"\n\s*\n", sources.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and "security" not in fields.get(
                "suites", ""
            ):
                candidates += fields.get("uris", "").split()
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == "deb":
                candidates += [p for p in parts[1:] if re.match(r"^https?://", p)]
    for uri in candidates:
        if "security" not in uri and re.match(r"^https?://", uri):
            return uri.rstrip("/")
    raise HarnessError("cannot find a Debian mirror in /etc/apt/sources.list(.d)")
