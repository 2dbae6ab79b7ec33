"""The candidates of a run beyond its own mode's set: a choosing mode's ranking, the GPU flags of
GPU images, and a census's record of every mode's candidate set on its host (census.json)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from harness.errors import HarnessError
from harness.records import CENSUS_SCHEMA
from harness.run.config import RunConfig
from harness.select import host as hostmod
from harness.select import matching, modes, performance
from harness.select.artifacts import ArtifactStore


def rank_candidates(
    cfg: RunConfig,
    mode: modes.Mode,
    host: dict[str, str],
    allowed: list[matching.Verdict],
    store: ArtifactStore,
    run: dict,
) -> tuple[list[str], str]:
    """A choosing mode's candidates, best first (harness.select.performance), and one line
    that says by what: the census of this host, else the images' declared microarchitecture."""
    choice = mode.choose
    assert choice is not None
    names = [v.image.name for v in allowed]
    census = performance.read_census(cfg.census or cfg.outdir, choice.measure)
    why = "no census in " + str(cfg.census or cfg.outdir)
    if census is not None:
        why = performance.census_fits(census, host, mode.keys, run)
        if why:
            why = f"the census in {census.outdir} is not this host's: {why}"
            census = None
    levels = {}
    if census is None and choice.fallback:
        for v in allowed:
            artifact = store.get(v.image.name, v.image.artifact)
            levels[v.image.name] = (artifact.attributes if artifact else {}).get(choice.fallback)
    order = performance.ranking(names, census, levels)
    if census is not None:
        shown = ", ".join(
            f"{name} {census.speeds[name].median:.3g}" for name in order if name in census.speeds
        )
        return order, f"{mode.name} chooses by {choice.measure} in {census.outdir}: {shown}"
    shown = ", ".join(f"{name} {levels.get(name)}" for name in order)
    return order, f"{mode.name}: {why}; chooses by {choice.fallback or 'manifest order'}: {shown}"


def gpu_flags(images, store: ArtifactStore, flags: list[str]) -> dict[str, list[str]]:
    """`flags` (this machine's --nv/--rocm) for the images whose artifact says they use a GPU:
    without them a GPU image cannot reach the driver even on a GPU node."""
    if not flags:
        return {}
    wanted = {}
    for image in images:
        try:
            artifact = store.get(image.name, image.artifact)
        except HarnessError:
            continue  # no artifact, no claim: the image runs as it is
        gpu = (artifact.attributes if artifact else {}).get(hostmod.GPU, "no")
        if gpu.strip().lower() in matching.YES:
            wanted[image.name] = flags
    return wanted


def candidate_sets(cfg: RunConfig, images, host, store) -> dict[str, dict[str, Any]]:
    """Every known mode's candidates on this host (the census's expected rates need them)."""
    sets: dict[str, dict[str, Any]] = {}
    for name, mode in modes.load(cfg.mode_file).items():
        try:
            verdicts = matching.select(cfg.matcher, cfg.manifests, images, mode, host, store)
        except HarnessError as exc:  # e.g. the host lacks a key the mode needs: say so
            sets[name] = {"candidates": None, "error": str(exc)}
            continue
        sets[name] = {"candidates": [v.image.name for v in verdicts]}
        if mode.choose:  # the mode takes one of them: the census's best (performance.ranking)
            sets[name]["choose"] = asdict(mode.choose)
    return sets


def census_body(cfg: RunConfig, host, sets, images: list[str], seed: int) -> dict:
    """census.json: the host, the manifest and each mode's candidate set on that host."""
    return {
        "schema": CENSUS_SCHEMA,
        "manifests": str(cfg.manifests),
        "host": host,
        "images": images,
        "repeat": cfg.repeat,
        "seed": seed,
        "modes": sets,
    }
