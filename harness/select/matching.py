"""The native matcher: compspec-go's exact matching, plus normalisation where exact strings lie.

compspec-go intersects exact string matches of `key=value` criteria against each image's
artifact. Here the criteria come from the host description and each key is compared by the
kind attributes.yaml gives it, so `x86_64` is `amd64`, rocky `9` is `9.3` and `openmpi` is
`OpenMPI`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import mpi
from harness.errors import HarnessError
from harness.select.artifacts import ArtifactStore
from harness.select.manifest import Image
from harness.select.modes import Mode, comparators
from harness.system import normalise_arch

YES = {"yes", "true", "1", "y"}


def mpi_set(value: str) -> frozenset[str]:
    """MPI implementations named by a value: one name, or a comma-separated set (a host whose
    launcher bootstraps several, e.g. Slurm with its pmix and pmi2 plugins)."""
    return frozenset(mpi.normalise(v) for v in value.split(",") if v.strip())


def microarchitecture(value: str):
    """archspec's Microarchitecture of that name, or None for a name archspec does not know."""
    import archspec.cpu  # its table loads on first use: only modes that compare it pay

    return archspec.cpu.TARGETS.get(value.strip().lower().replace("-", "_"))


# Each comparison kind turns a value into a canonical form; two values agree when their forms
# are equal, except versions, which agree when one is a prefix of the other by components,
# MPI implementations, which agree when the host's set holds every one the image names, and
# microarchitectures, which agree when the host's is the image's or descends from it.
NORMALISERS = {
    "arch": normalise_arch,
    "nocase": lambda v: v.strip().lower(),
    "mpi": mpi_set,
    "yesno": lambda v: v.strip().lower() in YES,
    "version": lambda v: tuple(v.strip().split(".")),
    "exact": lambda v: v,
    "microarch": microarchitecture,
}


def _agree(kind: str, host, image) -> bool:
    if kind == "version":
        n = min(len(host), len(image))
        return host[:n] == image[:n]
    if kind == "mpi":
        return bool(image) and image <= host
    if kind == "microarch":  # archspec's order: image <= host when host is or descends from it
        return image is not None and host is not None and image <= host
    return host == image


def compare(kind: str, host: str, image: str) -> bool:
    norm = NORMALISERS[kind]
    return _agree(kind, norm(host), norm(image))


@dataclass(frozen=True)
class Check:
    key: str
    host: str
    image: str | None
    ok: bool


@dataclass(frozen=True)
class Verdict:
    image: Image
    checks: tuple[Check, ...]
    artifact_digest: str | None
    error: str | None = None  # the artifact was invalid or missing and the user chose to skip

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def judge(
    images: list[Image], mode: Mode, host: dict[str, str], store: ArtifactStore
) -> list[Verdict]:
    """Compare every image with the host on the mode's keys (artifacts are needed only then)."""
    missing = [k for k in mode.keys if k not in host]
    if missing:
        raise HarnessError(f"mode {mode.name}: the host description lacks {', '.join(missing)}")
    kinds = comparators()
    verdicts = []
    for image in images:
        if not mode.keys:
            verdicts.append(Verdict(image, (), None))
            continue
        artifact = store.get(image.name, image.artifact)
        if artifact is None:
            verdicts.append(Verdict(image, (), None, store.skipped[image.name]))
            continue
        checks = []
        for key in mode.keys:
            value = artifact.attributes.get(key)
            ok = value is not None and compare(kinds[key], host[key], value)
            checks.append(Check(key, host[key], value, ok))
        verdicts.append(Verdict(image, tuple(checks), artifact.digest))
    return verdicts


def why_empty(mode: Mode, verdicts: list[Verdict]) -> str:
    """Which attribute excluded what, key by key in the mode's order, until nothing was left."""
    invalid = sum(v.error is not None for v in verdicts)
    parts = [f"{invalid} image(s) skipped for an invalid artifact"] if invalid else []
    remaining = [v for v in verdicts if v.error is None]
    for i, key in enumerate(mode.keys):
        out = [v for v in remaining if not v.checks[i].ok]
        if out:
            values = ", ".join(sorted({str(v.checks[i].image) for v in out}))
            host = out[0].checks[i].host
            parts.append(f"{key}={host} excluded {len(out)} (images have {values})")
        remaining = [v for v in remaining if v.checks[i].ok]
        if not remaining:
            break
    return f"mode {mode.name}: no candidate for this host: " + "; ".join(parts)


def candidates(
    images: list[Image], mode: Mode, host: dict[str, str], store: ArtifactStore
) -> list[Verdict]:
    """The images the mode allows, or a HarnessError that says which attribute emptied the set.

    The hot path of selection: host values are normalised once, each distinct set of artifact
    attributes is compared once (images built alike share one), and only the images that pass
    get a Verdict; the per-attribute explanation is built only when nothing passes.
    """
    if not mode.keys:
        return [Verdict(image, (), None) for image in images]
    missing = [k for k in mode.keys if k not in host]
    if missing:
        raise HarnessError(f"mode {mode.name}: the host description lacks {', '.join(missing)}")
    kinds = comparators()
    wanted = [(k, kinds[k], NORMALISERS[kinds[k]](host[k])) for k in mode.keys]
    store.read_all(images)
    allowed = []
    decided: dict[int, tuple[Check, ...] | None] = {}  # by id: the store keeps each one alive
    for image in images:
        artifact = store.get(image.name, image.artifact)
        if artifact is None:
            continue
        attrs = artifact.attributes
        if id(attrs) not in decided:
            decided[id(attrs)] = _passed(attrs, wanted, mode, host)
        if (checks := decided[id(attrs)]) is not None:
            allowed.append(Verdict(image, checks, artifact.digest))
    if not allowed:
        raise HarnessError(why_empty(mode, judge(images, mode, host, store)))
    return allowed


def _passed(attrs: dict[str, str], wanted: list, mode: Mode, host: dict[str, str]):
    """The checks of artifact attributes that agree with the host on every key, else None."""
    for key, kind, value in wanted:
        have = attrs.get(key)
        if have is None or not _agree(kind, value, NORMALISERS[kind](have)):
            return None
    return tuple(Check(k, host[k], attrs[k], True) for k in mode.keys)


MATCHERS = ("native", "compspec-go")


def select(
    matcher: str,
    manifest_path: Path,
    images: list[Image],
    mode: Mode,
    host: dict[str, str],
    store: ArtifactStore,
) -> list[Verdict]:
    """Candidates by the native matcher, or by the real `compspec match` (exact strings).

    compspec-go answers in no particular order; the manifest's order is kept so that a seeded
    pick is reproducible.
    """
    if matcher == "native":
        return candidates(images, mode, host, store)
    if matcher != "compspec-go":
        raise HarnessError(f"unknown matcher {matcher!r} (known: {', '.join(MATCHERS)})")
    from harness.select import compspec_go

    names = set(compspec_go.candidates(manifest_path, mode, host, images=images, store=store))
    allowed = []
    for image in images:
        if image.name in names:
            artifact = store.get(image.name, image.artifact)  # its digest goes into records
            allowed.append(Verdict(image, (), artifact.digest if artifact else None))
    if not allowed:
        raise HarnessError(
            f"mode {mode.name}: compspec-go matched {len(names)} image(s), none of them in "
            f"manifest {manifest_path}"
        )
    return allowed
