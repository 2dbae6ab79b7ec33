"""Predict each mode's success rate before spending cluster time.

A mode picks an image uniformly among its candidates; the image then meets an *environment*:
what gets bound or mounted into it (a Flux view, or the host's MPI libraries in the bind
model), the launcher's MPI, and the node's GPU. Explicit rules, tried in the order a real run
trips over them, turn (image attributes, environment) into a predicted reason:

1. arch    - the image's architecture must be the host's
2. os-abi  - the image's glibc must be at least the glibc of what is mounted into it
   (bind model) the host's MPI library bound over the image's own needs the image to carry
   the same release of that MPI: another major release lacks its sibling libraries (os-abi),
   another minor one has components that do not match it (mpi)
3. mpi     - the image must carry an MPI of the launcher's implementation (when the launcher
             is an MPI launcher; Flux's PMI serves Open MPI, MPICH and Intel MPI alike)
4. gpu     - an image built for a GPU needs one

Protocols say which (image, environment) pairs a mode produces:
- `reference`: rse-ops/lammps-matrix's run_experiments.py on the Flux Operator. basic pairs a
  random image of the platform with a fixed Ubuntu jammy Flux view; platform with a view of the
  image's OS family at a random version; platform-version with the view of the image's exact
  OS and version; descriptive modes pick a random view and match images to it.
- `host`: the harness's own modes on this host (the lab): candidates as `harness candidates`
  computes them, the host's launcher, the host's glibc mounted only in the bind model.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from harness import reason_names as reasons
from harness import records
from harness.errors import HarnessError
from harness.select import matching
from harness.select.artifacts import ArtifactStore
from harness.select.host import ARCH, GPU, LIBC, MPI_VERSION, VENDOR, VERSION
from harness.select.host import MPI_IMPL as MPI
from harness.select.manifest import Image
from harness.select.modes import Mode
from harness.select.performance import ranking
from harness.system import normalise_arch

# The reference experiment's Flux views (run_experiments.py): OS, version as compspec says it.
REFERENCE_VIEWS = (("rocky", "9.3"), ("rocky", "8.9"), ("ubuntu", "20.04"), ("ubuntu", "22.04"))
# Labels of the reference experiment's published csv (the keys: its words, not reasons), as
# harness reasons.
PUBLISHED_REASONS = {
    "success": reasons.SUCCESS,
    "os abi issue": reasons.OS_ABI,
    "missing gpu": reasons.GPU,
    "mpi error": reasons.MPI,
}


@cache
def glibc_table() -> dict[str, dict[str, str]]:
    text = resources.files("harness").joinpath("data/glibc.yaml").read_text()
    return yaml.safe_load(text)["glibc"]


def _v(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def os_glibc(vendor: str, version: str) -> str | None:
    releases = glibc_table().get(vendor.lower(), {})
    for release, glibc in releases.items():
        if matching.compare("version", release, version):
            return glibc
    return None


def image_glibc(attrs: dict[str, str]) -> str | None:
    return attrs.get(LIBC) or os_glibc(attrs.get(VENDOR, ""), attrs.get(VERSION, ""))


@dataclass(frozen=True)
class Environment:
    """What an image meets at run time."""

    name: str
    arch: str
    mounted_glibc: str | None  # glibc of what is bound/mounted into the image; None: nothing
    launcher_mpi: str | None  # implementation the launcher speaks; None: any (Flux PMI)
    gpu: bool
    bound_mpi: tuple[str, str] | None = None  # (implementation, version) bound over the image's


def rule_outcome(attrs: dict[str, str], env: Environment) -> tuple[str, str]:
    """(reason, why) the rules predict for one image in one environment."""
    if normalise_arch(attrs.get(ARCH, "")) != normalise_arch(env.arch):
        return reasons.ARCH, f"image {attrs.get(ARCH)} on a {env.arch} host"
    if env.mounted_glibc:
        have = image_glibc(attrs)
        if have is None:
            return reasons.UNKNOWN, "image glibc unknown"
        if _v(have) < _v(env.mounted_glibc):
            return reasons.OS_ABI, f"image glibc {have} < {env.mounted_glibc} of {env.name}"
    # "mpi" below is matching's comparison kind (attributes.yaml), not the reason
    if env.bound_mpi and matching.compare("mpi", env.bound_mpi[0], attrs.get(MPI) or "-"):
        # the host's MPI library replaces the image's: it needs its own sibling libraries and
        # components, which an image of another release of that MPI does not have
        impl, host_version = env.bound_mpi
        image_version = attrs.get(MPI_VERSION) or ""
        if _v(image_version)[:1] != _v(host_version)[:1]:
            why = f"{impl} {host_version} bound into an image of {impl} {image_version}"
            return reasons.OS_ABI, why + ": its sibling libraries are missing"
        if _v(image_version) != _v(host_version):
            why = f"{impl} {host_version} bound into an image of {impl} {image_version}"
            return reasons.MPI, why + ": the image's components do not match the library"
    if env.launcher_mpi:
        impl = attrs.get(MPI)
        if impl is None:
            return reasons.MPI, f"image without MPI under a {env.launcher_mpi} launcher"
        if not matching.compare("mpi", env.launcher_mpi, impl):
            # another MPI's launcher starts the ranks, which do not find each other: each
            # runs alone (seen on the lab both ways, Open MPI and MPICH)
            why = f"image MPI {impl} under a {env.launcher_mpi} launcher"
            return reasons.MPI_SINGLETON, why
    if attrs.get(GPU, "no").lower() in matching.YES and not env.gpu:
        return reasons.GPU, "GPU image on a node without GPU"
    return reasons.SUCCESS, ""


@dataclass
class ModePrediction:
    mode: str
    outcomes: Counter = field(default_factory=Counter)  # reason -> probability
    why: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, p: float, reason: str, why: str) -> None:
        self.outcomes[reason] += p
        if why:
            self.why[reason][why] += p

    @property
    def success(self) -> float:
        return self.outcomes.get(reasons.SUCCESS, 0.0)


def _outcome(attrs: dict[str, dict[str, str]], image: str, env: Environment) -> tuple[str, str]:
    """The rules' outcome, or unknown for an image whose artifact was skipped as invalid."""
    if image not in attrs:
        return reasons.UNKNOWN, "no usable artifact (skipped as invalid)"
    return rule_outcome(attrs[image], env)


def _attrs(images: list[Image], store: ArtifactStore) -> dict[str, dict[str, str]]:
    out = {}
    for image in images:
        artifact = store.get(image.name, image.artifact)
        if artifact is not None:
            out[image.name] = artifact.attributes
    return out


def _view(vendor: str, version: str, arch: str, gpu: bool) -> Environment:
    """A Flux view: Flux and its PMI library, built on that OS, mounted into the image."""
    glibc = os_glibc(vendor, version)
    return Environment(f"the {vendor} {version} Flux view", arch, glibc, None, gpu)


def reference(
    images: list[Image], store: ArtifactStore, host: dict[str, str], modes: dict[str, Mode]
) -> list[ModePrediction]:
    """The reference experiment's protocol (see the module docstring)."""
    attrs = _attrs(images, store)
    arch = normalise_arch(host[ARCH])
    gpu = host.get(GPU, "no").lower() in matching.YES
    pool = [n for n, a in attrs.items() if normalise_arch(a.get(ARCH, "")) == arch]
    if not pool:
        raise HarnessError(f"predict: no image of the host's architecture {arch}")
    results = []
    for name, mode in modes.items():  # in the modes data's order
        if missing := [k for k in mode.keys if k not in host]:
            results.append(ModePrediction(name))
            results[-1].add(1.0, "no-candidate", f"the host lacks {', '.join(missing)}")
        elif name in VIEW_BY_IMAGE:
            results.append(_view_per_image(name, pool, attrs, arch, gpu))
        else:
            results.append(_descriptive(name, mode, images, attrs, store, host, arch, gpu))
    return results


# The reference's modes that pair each image with a view chosen from the image's own
# attributes; every other mode (its descriptive ones, and a user's) picks a view, then images.
VIEW_BY_IMAGE = ("basic", "platform", "platform-version")


def _view_per_image(name, pool, attrs, arch, gpu) -> ModePrediction:
    pred = ModePrediction(name)
    for image in pool:
        a = attrs[image]
        vendor, version = a.get(VENDOR, ""), a.get(VERSION, "")
        if name == "basic":
            views = [("ubuntu", "22.04")]
        elif name == "platform":
            views = [v for v in REFERENCE_VIEWS if v[0] == vendor]
        else:
            views = [
                v
                for v in REFERENCE_VIEWS
                if v[0] == vendor and matching.compare("version", v[1], version)
            ]
        views = views or [("ubuntu", "22.04")]  # an OS without a view: the default one
        for v in views:
            pred.add(1 / len(pool) / len(views), *rule_outcome(a, _view(*v, arch, gpu)))
    return pred


def _descriptive(name, mode, images, attrs, store, host, arch, gpu) -> ModePrediction:
    # A view without a matching image yields no run in the reference (it draws again),
    # so the prediction is over the views that have candidates.
    pairs = []
    for vendor, version in REFERENCE_VIEWS:
        view_host = dict(host, **{VENDOR: vendor, VERSION: version})
        verdicts = matching.judge(images, mode, view_host, store)
        allowed = [v for v in verdicts if v.ok]
        if allowed:
            pairs.append((_view(vendor, version, arch, gpu), allowed))
    pred = ModePrediction(name)
    for env, allowed in pairs:
        for v in allowed:
            pred.add(1 / len(pairs) / len(allowed), *_outcome(attrs, v.image.name, env))
    if not pairs:
        pred.add(1.0, "no-candidate", "no image matches any Flux view")
    return pred


def assumptions(
    host: dict[str, str], modes: dict[str, Mode], mpi_model: str | None
) -> tuple[dict[str, str], list[str]]:
    """The host as `on_host` predicts with it (a key the OS implies filled in) and one line per
    key the rules would read that the host description lacks, saying what was assumed.
    mpi_model None: the reference protocol, whose Flux views bring their own MPI and glibc."""
    host = dict(host)
    notes = []
    if GPU not in host:
        notes.append(f"no {GPU}: assumed no GPU")
    if mpi_model and MPI not in host:
        notes.append(f"no {MPI}: the launcher's MPI is unknown, so no MPI mismatch is predicted")
    if mpi_model == "bind" and LIBC not in host:
        vendor, version = host.get(VENDOR, ""), host.get(VERSION, "")
        if glibc := os_glibc(vendor, version):
            host[LIBC] = glibc
            notes.append(f"no {LIBC}: assumed {glibc}, the glibc of {vendor} {version}")
        else:
            notes.append(
                f"no {LIBC}, and the OS ({vendor or '?'} {version or '?'}) is not in the glibc "
                "table: images are not checked against the glibc of the bound MPI (no os-abi)"
            )
    if mpi_model == "bind" and MPI in host and MPI_VERSION not in host:
        notes.append(
            f"no {MPI_VERSION}: the bound {host[MPI]} is taken to be each image's own release "
            "(no failure from a release mismatch is predicted)"
        )
    for name, mode in modes.items():
        if missing := [k for k in mode.keys if k not in host]:
            notes.append(f"no {', '.join(missing)}: mode {name} has no candidate")
    return host, notes


def _environment(host: dict[str, str], own: dict[str, str], mpi_model: str) -> Environment:
    """What an image meets when the harness runs it here. host: as the executor's jobs see it
    (the launcher's MPI); own: the host's own description, whose MPI library the bind model
    binds, as `assumptions` completes it."""
    bound = mpi_model == "bind" and MPI in own and MPI_VERSION in own
    return Environment(
        f"the host's {own.get(MPI)} libraries",
        normalise_arch(host[ARCH]),
        own.get(LIBC) if mpi_model == "bind" else None,
        host.get(MPI),
        host.get(GPU, "no").lower() in matching.YES,
        (own[MPI], own[MPI_VERSION]) if bound else None,
    )


def per_image(
    images: list[Image],
    store: ArtifactStore,
    host: dict[str, str],
    mpi_model: str,
    own: dict[str, str] | None = None,
) -> dict[str, tuple[str, str]]:
    """Each image's predicted (reason, why) when run here: what a census measures."""
    own, _ = assumptions(own or host, {}, mpi_model)
    env = _environment(host, own, mpi_model)
    attrs = _attrs(images, store)
    return {name: _outcome(attrs, name, env) for name in attrs}


def on_host(
    images: list[Image],
    store: ArtifactStore,
    host: dict[str, str],
    modes: dict[str, Mode],
    mpi_model: str,
    own: dict[str, str] | None = None,
) -> list[ModePrediction]:
    """The harness's own modes on this host (host, own: as `_environment` takes them)."""
    own, _ = assumptions(own or host, modes, mpi_model)
    env = _environment(host, own, mpi_model)
    attrs = _attrs(images, store)
    results = []
    for name, mode in modes.items():
        pred = ModePrediction(name)
        try:
            allowed = matching.candidates(images, mode, host, store)
        except HarnessError as exc:
            pred.add(1.0, "no-candidate", str(exc))
            results.append(pred)
            continue
        if mode.choose:  # it runs one image: the first by its declared preference (no census)
            names = [v.image.name for v in allowed]
            levels = {n: attrs[n].get(mode.choose.fallback or "") for n in names}
            allowed = [v for v in allowed if v.image.name == ranking(names, None, levels)[0]]
        for v in allowed:
            pred.add(1 / len(allowed), *_outcome(attrs, v.image.name, env))
        results.append(pred)
    return results


def measured(paths: list[Path]) -> dict[str, Counter]:
    """Observed outcomes per mode: harness outdirs, or the reference experiment's csv."""

    out: dict[str, Counter] = defaultdict(Counter)
    for path in paths:
        if path.is_file() and path.suffix == ".csv":
            with path.open() as fh:
                reader = csv.DictReader(fh)
                missing = {"experiment", "reason"} - set(reader.fieldnames or ())
                if missing:
                    raise HarnessError(
                        f"predict: {path} has no column {', '.join(sorted(missing))}"
                    )
                for row in reader:
                    reason = PUBLISHED_REASONS.get(row["reason"], row["reason"])
                    out[row["experiment"]][reason] += 1
        elif records.records_path(path).is_file():
            for rec in records.read(path):
                out[rec.mode][rec.reason] += 1
        else:
            raise HarnessError(f"predict: {path} is neither a harness outdir nor a results csv")
    return out
