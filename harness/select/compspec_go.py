"""The compspec-go matcher: run the real `compspec match` on a manifest and read its answer.

compspec-go (github.com/compspec/compspec-go, binary `cmd/compspec`) is not a Python package:
it is found as `compspec` on PATH, or at $HARNESS_COMPSPEC. Its `match` command, as of the
commit the reference experiment used (0517146, 2024-02-05, then github.com/supercontainers/
compspec-go), behaves like this (cmd/compspec/match/match.go, pkg/graph/graph.go):

- it reads the manifest (`images: [{name, artifact}]`, other fields ignored), fetches every
  artifact from its registry over HTTPS (`repo.PlainHTTP = false`) and keeps the layer of media
  type `application/org.supercontainers.compspec` (`application/org.compspec` from the
  2024-02-20 rename on; a layer of another type gives an empty spec, silently);
- it adds each schema URL of an artifact's `metadata.schemas` to a graph by downloading it
  (raw.githubusercontent.com for the lab's artifacts) - unless `--cache-graph FILE` names a graph
  file that exists, which is then loaded instead and never overwritten;
- each `--match key=value` is an exact string lookup of the node `key.value`; the answer is the
  intersection of the images of every criterion. On stdout it prints one debug map per criterion
  (`map[IMAGE:true ...]`), then ` --- Found matches ---` and one image name per line; with no
  criterion it prints `No field criteria provided, all images are matches.` and every image;
- an unknown value ends it with exit 1 and `Field K=V is not known and cannot be matched.` on
  stderr (Go's log, after a timestamp); an empty intersection with `Adding field K=V empties
  match set, no possible`; an artifact it cannot load with that error (and a `warning, ...`
  line on stdout).

So that a run needs no network but the lab registry, this module hands compspec-go a graph file
holding the schema root nodes (`--cache-graph`): the graph only serves `match` to check that each
compatibility's name is a known schema; matching itself uses the artifacts alone. compspec-go's
artifact cache (`--cache`) writes but never reads back, so it is not used. Instead, in a run,
it is given one image per distinct artifact (`one_per_artifact`): images built alike cost it
one fetch, not one each (about 6 ms per artifact on the lab registry).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.errors import HarnessError
from harness.files import atomic_write, last_line
from harness.select.artifacts import ArtifactStore
from harness.select.manifest import Image
from harness.select.modes import Mode

ENV_BINARY = "HARNESS_COMPSPEC"
MATCHES_MARKER = "--- Found matches ---"
NO_MATCH_STDOUT = "There was no match."
# compspec-go's errors that mean "no image agrees", not "something broke".
NO_MATCH_ERRORS = (
    re.compile(r"Field (?P<field>.+) is not known and cannot be matched\."),
    re.compile(r"Adding field (?P<field>.+) empties match set"),
    re.compile(r"Field (?P<field>.+) does not have any associated images"),
)
GO_LOG_PREFIX = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} ")
# The schema (compatibility) names an artifact may use: the harness's attribute namespaces
# (harness/data/attributes.yaml) and compspec-go's name after its rename.
SCHEMA_ROOTS = ("io.archspec", "org.supercontainers", "org.compspec")
ROOT_LABEL = "compspec-root"  # pkg/graph/graph.go rootLabel
DEFAULT_TIMEOUT_S = 300.0


class NoMatch(HarnessError):
    """compspec-go ran and found no image for the criteria (the message says which field)."""


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    matches: tuple[str, ...]
    stdout: str
    stderr: str


def binary() -> str:
    """The compspec executable: $HARNESS_COMPSPEC, else `compspec` on PATH."""
    explicit = os.environ.get(ENV_BINARY)
    if explicit:
        if os.path.isfile(explicit) and os.access(explicit, os.X_OK):
            return explicit
        raise HarnessError(
            f"compspec-go is not installed: ${ENV_BINARY}={explicit} is not an executable file"
        )
    found = shutil.which("compspec")
    if found is None:
        raise HarnessError(
            "compspec-go is not installed: no `compspec` on PATH and no $HARNESS_COMPSPEC "
            "(build github.com/compspec/compspec-go ./cmd/compspec and put it on PATH)"
        )
    return found


def criteria(mode: Mode, host: dict[str, str]) -> list[str]:
    """The mode's `key=value` criteria with the host's values verbatim (compared exactly)."""
    missing = [k for k in mode.keys if k not in host]
    if missing:
        raise HarnessError(f"mode {mode.name}: the host description lacks {', '.join(missing)}")
    return [f"{key}={host[key]}" for key in mode.keys]


def build_argv(
    exe: str, manifest_path: str | Path, fields: list[str], graph: str | Path | None
) -> list[str]:
    argv = [exe, "match", "-i", str(manifest_path)]
    if graph is not None:
        argv += ["--cache-graph", str(graph)]
    for field in fields:
        argv += ["--match", field]
    return argv


def write_schema_graph(path: str | Path, roots: tuple[str, ...] = SCHEMA_ROOTS) -> Path:
    """A graph file (jsongraph-go v2 `graph.Graph`) with the schema root nodes `match` checks."""
    path = Path(path)
    nodes = {name: {"label": name} for name in (ROOT_LABEL, *roots)}
    edges = [{"source": ROOT_LABEL, "target": r, "relation": "contains"} for r in roots]
    path.write_text(json.dumps({"directed": True, "nodes": nodes, "edges": edges}))
    return path


def _last_line(text: str) -> str:
    return GO_LOG_PREFIX.sub("", last_line(text))


def parse(argv: list[str], returncode: int, stdout: str, stderr: str) -> Result:
    """compspec match's answer, NoMatch when it found none, HarnessError when it broke."""
    cmd = argv[1] if len(argv) > 1 else "compspec"
    if returncode != 0:
        why = _last_line(stderr) or _last_line(stdout) or "no output"
        for pattern in NO_MATCH_ERRORS:
            if pattern.search(why):
                raise NoMatch(f"compspec-go found no candidate: {why}")
        raise HarnessError(f"compspec-go `{cmd}` failed (exit {returncode}): {why}")
    lines = stdout.splitlines()
    marks = [i for i, line in enumerate(lines) if line.strip() == MATCHES_MARKER]
    if not marks:
        if any(line.startswith(NO_MATCH_STDOUT) for line in lines):
            raise NoMatch("compspec-go found no candidate: " + NO_MATCH_STDOUT)
        shown = _last_line(stdout) or _last_line(stderr) or "nothing"
        raise HarnessError(
            f"compspec-go `{cmd}` printed no `{MATCHES_MARKER}` line (last output: {shown})"
        )
    matches = tuple(line.strip() for line in lines[marks[-1] + 1 :] if line.strip())
    if not matches:
        raise HarnessError(f"compspec-go `{cmd}` printed `{MATCHES_MARKER}` but no image")
    return Result(tuple(argv), matches, stdout, stderr)


def run(
    manifest_path: str | Path,
    fields: list[str],
    *,
    exe: str | None = None,
    graph: str | Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Result:
    """Run `compspec match` with these criteria; graph=None writes a schema graph of its own."""
    manifest_path = Path(manifest_path).resolve()  # compspec runs in a temporary directory
    if not manifest_path.is_file():
        raise HarnessError(f"manifest {manifest_path}: no such file")
    exe = exe or binary()
    with tempfile.TemporaryDirectory(prefix="harness-compspec-") as tmp:
        if graph is None:
            graph = write_schema_graph(Path(tmp) / "schema-graph.json")
        argv = build_argv(exe, manifest_path, fields, graph)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, cwd=tmp)
        except FileNotFoundError:
            raise HarnessError(f"compspec-go is not installed: {exe} not found") from None
        except PermissionError:
            raise HarnessError(f"compspec-go is not installed: {exe} is not executable") from None
        except subprocess.TimeoutExpired:
            raise HarnessError(f"compspec-go `match` took over {timeout_s:g} s") from None
    return parse(argv, proc.returncode, proc.stdout, proc.stderr)


def candidates(
    manifest_path: str | Path,
    mode: Mode,
    host: dict[str, str],
    *,
    exe: str | None = None,
    graph: str | Path | None = None,
    images: list[Image] | None = None,
    store: ArtifactStore | None = None,
) -> list[str]:
    """The image names `compspec match` allows for the mode's keys of this host, in its order.

    Given the manifest's images and the run's artifact store, compspec-go is handed one image
    per distinct artifact (one_per_artifact): it fetches every artifact it is given on every
    call, and its answer for an image is a function of that artifact's content alone.
    Raises NoMatch (a HarnessError) when it allows none, naming the field that emptied the set.
    """
    fields = criteria(mode, host)
    with tempfile.TemporaryDirectory(prefix="harness-compspec-") as tmp:
        given, alike = Path(manifest_path), None
        if images is not None and store is not None:
            given, alike = one_per_artifact(images, store, Path(tmp) / "one-per-artifact.yaml")
            if not alike:
                raise HarnessError(f"mode {mode.name}: no image has a usable artifact")
        try:
            matched = run(given, fields, exe=exe, graph=graph).matches
        except NoMatch as exc:
            # An empty answer may come from artifacts this compspec-go read as empty specs.
            unread = unmapped_images(given, exe=exe, graph=graph)
            if unread:
                count = sum(len(alike[n]) for n in unread) if alike else len(unread)
                raise HarnessError(
                    f"mode {mode.name}: compspec-go read no attributes for {count} "
                    f"image(s) (e.g. {unread[0]}): does it expect another artifact media type "
                    "than the registry's (application/org.supercontainers.compspec before its "
                    "2024-02 rename, application/org.compspec after)?"
                ) from None
            raise NoMatch(f"mode {mode.name}: {exc}") from None
    if alike is None:
        return list(matched)
    return [name for first in matched for name in alike.get(first, (first,))]


def one_per_artifact(
    images: list[Image], store: ArtifactStore, path: Path
) -> tuple[Path, dict[str, list[str]]]:
    """A manifest of the first image of each distinct artifact (by digest), and each such
    image's name -> every image of the manifest with that artifact.

    The digest is the harness's, of the compspec layer it read (the store reads each artifact
    once per run, from its cache where it can); compspec-go reads that same layer, verified by
    its digest. Images whose artifact the store skipped (--skip-invalid) are left out.
    """
    first: dict[str, Image] = {}  # digest -> its first image
    alike: dict[str, list[str]] = {}
    store.read_all(images)
    for image in images:
        artifact = store.get(image.name, image.artifact)
        if artifact is None:
            continue
        name = first.setdefault(artifact.digest, image).name
        alike.setdefault(name, []).append(image.name)
    pairs = [{"name": i.name, "artifact": i.artifact} for i in first.values()]
    atomic_write(path, yaml.safe_dump({"images": pairs}, sort_keys=False).encode())
    return path, alike


def mapped_images(
    manifest_path: str | Path, *, exe: str | None = None, graph: str | Path | None = None
) -> list[str]:
    """The images compspec-go has attributes for (`match --print`).

    An image whose artifact layer has a media type this compspec-go does not expect loads as an
    empty spec, silently, and is then absent here: a check that the binary suits the artifacts.
    """
    manifest_path = Path(manifest_path).resolve()
    if not manifest_path.is_file():
        raise HarnessError(f"manifest {manifest_path}: no such file")
    exe = exe or binary()
    with tempfile.TemporaryDirectory(prefix="harness-compspec-") as tmp:
        graph = graph or write_schema_graph(Path(tmp) / "schema-graph.json")
        argv = [exe, "match", "-i", str(manifest_path), "--cache-graph", str(graph), "--print"]
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=DEFAULT_TIMEOUT_S, cwd=tmp
            )
        except (FileNotFoundError, PermissionError):
            raise HarnessError(f"compspec-go is not installed: cannot run {exe}") from None
    if proc.returncode != 0:
        why = _last_line(proc.stderr) or _last_line(proc.stdout) or "no output"
        raise HarnessError(f"compspec-go `match --print` failed (exit {proc.returncode}): {why}")
    prefix = "image: "
    return [
        line.strip()[len(prefix) :]
        for line in proc.stdout.splitlines()
        if line.strip().startswith(prefix)
    ]


def unmapped_images(
    manifest_path: str | Path, *, exe: str | None = None, graph: str | Path | None = None
) -> list[str]:
    """The manifest's images compspec-go found no attribute for (empty or foreign artifacts)."""
    try:
        data = yaml.safe_load(Path(manifest_path).read_text())
        names = [str(item["name"]) for item in data["images"]]
    except (OSError, yaml.YAMLError, TypeError, KeyError):
        raise HarnessError(f"manifest {manifest_path}: not a compspec-go manifest") from None
    mapped = set(mapped_images(manifest_path, exe=exe, graph=graph))
    return [name for name in names if name not in mapped]
