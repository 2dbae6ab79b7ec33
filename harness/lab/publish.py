"""Publish the lab's SIFs and their compatibility artifacts to the lab registry.

    python -m harness.lab.publish [--only TAG ...] [--verify-only]
    (harness lab publish / harness lab verify)

For every built image (the builder's cache, see harness.lab.build):
  1. the SIF: `apptainer push X.sif oras://REGISTRY:TAG`, unless the registry's
     manifest for TAG already has a layer with the SIF's sha256;
  2. its artifact: create_artifact(X.sif) (compspec/lab-spec.yaml), pushed with
     the `oras` package to REGISTRY:TAG-compspec as one layer of media type
     application/org.supercontainers.compspec, unless the registry already
     serves the same bytes;
  3. verification: the registry's manifest names a layer of the SIF's sha256
     (the registry checked the bytes against it), and an oras pull of the
     artifact (bytes must match); instead of pulling the SIF back, the
     harness's SIF cache is filled from the build (where `harness run` would
     pull it to); an image of another architecture, which Apptainer cannot
     pull, is fetched with oras and its sha256 compared; the harness's artifact
     cache gets the artifact's bytes too.
Then containers/lab/manifests.yaml is written (compspec-go's manifest format:
images: [{name, artifact}], plus the lab's run fields command/workdir)
and the timings go to CACHE/publish-report.json (every run is also appended
to CACHE/publish-history.jsonl).

`--verify-only` (harness lab verify) pushes nothing: it fails when an image or
artifact in the registry differs from the local one or is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import yaml
from rich.console import Console
from rich.table import Table

from harness.errors import HarnessError
from harness.files import atomic_write
from harness.lab.build import sha256_file
from harness.lab.matrix import MANIFEST_FILE, Matrix, cache_dir, load_matrix
from harness.run.runtime import ImageCache
from harness.select.artifact_create import DEFAULT_SPEC, create_artifact
from harness.select.artifact_push import upload
from harness.select.artifacts import (
    MEDIA_TYPES,
    SYSTEM_CA_BUNDLE,
    cache_name,
    tls_verify,
    user_cache,
)
from harness.select.sif_files import host_arch, sif_partition

COMPSPEC_MEDIA_TYPE = MEDIA_TYPES[0]  # as the reference experiment stored its artifacts
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)

console = Console(stderr=True)


class PublishError(HarnessError):
    pass


def split_reference(ref: str) -> tuple[str, str, str]:
    """'127.0.0.1/lab/lammps-matrix:TAG' -> (host, repository, tag)."""
    host, _, rest = ref.partition("/")
    repo, _, tag = rest.rpartition(":")
    if not host or not repo or not tag:
        raise PublishError(f"cannot split the reference {ref!r}")
    return host, repo, tag


class Registry:
    """The few registry API calls the publisher needs (TLS, system CA store)."""

    def __init__(self, host: str):
        self.host = host
        self.session = requests.Session()
        self.session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or tls_verify()

    def check(self) -> None:
        url = f"https://{self.host}/v2/"
        try:
            resp = self.session.get(url, timeout=10)
        except requests.RequestException as exc:
            raise PublishError(
                f"registry {url} unreachable ({exc}): scripts/registry.sh start"
            ) from exc
        if resp.status_code != 200:
            raise PublishError(f"registry {url} answered {resp.status_code}")

    def manifest(self, repo: str, tag: str) -> dict[str, Any] | None:
        resp = self.session.get(
            f"https://{self.host}/v2/{repo}/manifests/{tag}",
            headers={"Accept": MANIFEST_ACCEPT},
            timeout=30,
        )
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()


def layer_digests(manifest: dict[str, Any] | None, media_type: str | None = None) -> list[str]:
    if not manifest:
        return []
    return [
        layer["digest"]
        for layer in manifest.get("layers", [])
        if media_type is None or layer.get("mediaType") == media_type
    ]


def _run(argv: list[str], timeout: float = 1800) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise PublishError(
            f"{' '.join(argv[:3])} ... exited {proc.returncode}: "
            f"{(proc.stderr or proc.stdout).strip()[-800:]}"
        )
    return round(time.monotonic() - t0, 2)


def artifact_bytes(sif: Path, sif_sha: str, cache: Path, tag: str) -> tuple[bytes, bool]:
    """The artifact JSON of the image; reused from the cache when neither the SIF,
    the creation spec nor the extractor changed.  Returns (bytes, regenerated)."""
    import harness.select.artifact_create as ac
    import harness.select.elf as elf
    import harness.select.gpu_use as gpu_use
    import harness.select.sif_files as sif_files

    modules = (ac, elf, gpu_use, sif_files)
    extractors = b"".join(Path(m.__file__).read_bytes() for m in modules)
    key = hashlib.sha256(sif_sha.encode() + DEFAULT_SPEC.read_bytes() + extractors).hexdigest()
    out_dir = cache / "artifacts"
    out_dir.mkdir(parents=True, exist_ok=True)
    path, key_file = out_dir / f"{tag}-compspec.json", out_dir / f"{tag}-compspec.key"
    if path.is_file() and key_file.is_file() and key_file.read_text().strip() == key:
        return path.read_bytes(), False
    data = (json.dumps(create_artifact(sif), indent=2) + "\n").encode()
    path.write_bytes(data)
    key_file.write_text(key + "\n")
    return data, True


SIF_LAYER_MEDIA_TYPE = "application/vnd.sylabs.sif.layer.v1.sif"
SIF_CONFIG_MEDIA_TYPE = "application/vnd.sylabs.sif.config.v1+json"


def push_sif_with_oras(sif: Path, ref: str) -> float:
    """Push a SIF the way `apptainer push oras://` does (same media types,
    "{}" config, title = file name) with the oras package."""
    import oras.client

    host, _, _ = split_reference(ref)
    with tempfile.TemporaryDirectory(prefix="sif-config-") as tmp:
        config = Path(tmp) / "config.json"
        config.write_text("{}")
        t0 = time.monotonic()
        oras.client.OrasClient(hostname=host).push(
            files=[f"{sif}:{SIF_LAYER_MEDIA_TYPE}"],
            manifest_config=f"{config}:{SIF_CONFIG_MEDIA_TYPE}",
            target=ref,
            disable_path_validation=True,
            quiet=True,
        )
        return round(time.monotonic() - t0, 2)


def fill_sif_cache(sif: Path, ref: str, digest: str, sif_cache: Path | None) -> Path:
    """Put the built SIF where `harness run` would pull `ref` (the same bytes, keyed by the
    registry's digest): a hard link when the cache is on the lab's file system, else a copy."""
    target = ImageCache(sif_cache).path_for(ref, digest)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".fill-{os.getpid()}-{target.name}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(sif, tmp)
    except OSError:
        shutil.copyfile(sif, tmp)
    os.replace(tmp, target)
    return target


def publish_image(
    matrix: Matrix,
    registry: Registry,
    cache: Path,
    tag: str,
    *,
    verify_only: bool,
    sif_cache: Path | None = None,
) -> dict[str, Any]:
    import oras.client

    sif = cache / "sif" / f"{tag}.sif"
    if not sif.is_file():
        raise PublishError(f"{tag}: {sif} not built (harness lab build)")
    state_file = cache / "state" / f"{tag}.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    sif_sha = state.get("sif_sha256") or sha256_file(sif)
    ref, art_ref = matrix.reference(tag), matrix.artifact_reference(tag)
    row: dict[str, Any] = {
        "tag": tag,
        "reference": ref,
        "artifact": art_ref,
        "sif_bytes": sif.stat().st_size,
        "sif_sha256": sif_sha,
    }
    _push_sif(registry, sif, ref, tag, f"sha256:{sif_sha}", verify_only, row)
    data, regenerated = artifact_bytes(sif, sif_sha, cache, tag)
    row["artifact_regenerated"] = regenerated
    _push_artifact(registry, data, art_ref, tag, verify_only, row)
    host, _, _ = split_reference(art_ref)
    client = oras.client.OrasClient(hostname=host)
    _verify(client, sif, sif_sha, ref, art_ref, data, cache, tag, sif_cache, row)
    return row


def _push_sif(
    registry: Registry, sif: Path, ref: str, tag: str, digest: str, verify_only: bool, row: dict
) -> None:
    """1. the SIF, unless the registry holds it already; its push goes into `row`."""
    _, repo, _ = split_reference(ref)
    in_registry = digest in layer_digests(registry.manifest(repo, tag))
    row["sif_pushed"] = False
    if in_registry:
        return
    if verify_only:
        raise PublishError(f"{tag}: the registry does not hold this SIF ({digest})")
    _, arch = sif_partition(sif)
    if arch == host_arch():
        console.print(f"{tag}: apptainer push {sif.name} oras://{ref}")
        row["push_seconds"] = _run(["apptainer", "push", str(sif), f"oras://{ref}"])
        row["push_tool"] = "apptainer push"
    else:
        # apptainer push opens the image to verify it and refuses an image
        # of another architecture; push the same bytes, as the same OCI
        # artifact apptainer writes (SIF layer + "{}" config), with oras.
        console.print(f"{tag}: {arch} image: oras push {sif.name} (apptainer push refuses it)")
        row["push_seconds"] = push_sif_with_oras(sif, ref)
        row["push_tool"] = "oras (SIF media types)"
    row["sif_pushed"] = True
    if digest not in layer_digests(registry.manifest(repo, tag)):
        raise PublishError(f"{tag}: after the push the registry's manifest lacks {digest}")


def _push_artifact(
    registry: Registry, data: bytes, art_ref: str, tag: str, verify_only: bool, row: dict
) -> None:
    """2. the artifact, unless the registry holds these bytes already; its push goes into `row`."""
    art_digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _, art_repo, art_tag = split_reference(art_ref)
    art_manifest = registry.manifest(art_repo, art_tag)
    row["artifact_pushed"] = False
    if art_digest not in layer_digests(art_manifest, COMPSPEC_MEDIA_TYPE):
        if verify_only:
            raise PublishError(f"{tag}: the registry's {art_ref} differs from the image's artifact")
        t0 = time.monotonic()
        upload(data, art_ref)
        row["artifact_push_seconds"] = round(time.monotonic() - t0, 2)
        row["artifact_pushed"] = True


def _verify(
    client: Any,
    sif: Path,
    sif_sha: str,
    ref: str,
    art_ref: str,
    data: bytes,
    cache: Path,
    tag: str,
    sif_cache: Path | None,
    row: dict,
) -> None:
    """3. verification: the registry holds a layer of the SIF's own sha256 (it checked the
    bytes it received against that digest), so a pull would only bring back these bytes;
    the harness's SIF cache gets them from here instead (what `harness run` would pull).
    An image of another architecture cannot be pulled by Apptainer at all ("could not
    run on the host's"): it is fetched with oras, and never put in the cache."""
    with tempfile.TemporaryDirectory(prefix="lab-verify-", dir=cache) as tmp:
        _, arch = sif_partition(sif)
        if arch == host_arch():
            t0 = time.monotonic()
            row["sif_cached"] = str(fill_sif_cache(sif, ref, f"sha256:{sif_sha}", sif_cache))
            row["pull_seconds"] = round(time.monotonic() - t0, 2)
            row["pull_tool"] = "SIF cache filled from the build"
        else:
            t0 = time.monotonic()
            got = client.pull(target=ref, outdir=str(Path(tmp) / "sif"))
            row["pull_seconds"] = round(time.monotonic() - t0, 2)
            row["pull_tool"] = "oras"
            pulled = Path(got[0]) if len(got) == 1 else Path(tmp) / f"{tag}.sif"
            if not pulled.is_file() or sha256_file(pulled) != sif_sha:
                raise PublishError(f"{tag}: the SIF pulled from {ref} differs from {sif}")
        t0 = time.monotonic()
        files = client.pull(target=art_ref, outdir=str(Path(tmp) / "artifact"))
        row["artifact_pull_seconds"] = round(time.monotonic() - t0, 2)
        if len(files) != 1 or Path(files[0]).read_bytes() != data:
            raise PublishError(f"{tag}: the artifact pulled from {art_ref} differs")
    # the harness's artifact cache serves a reference's artifact once fetched: give it these
    # bytes, or a republished image would be judged by its old artifact
    atomic_write(user_cache("artifacts") / cache_name(art_ref), data)
    row["verified"] = True
    row["artifact_attributes"] = {
        c["name"]: c["attributes"] for c in json.loads(data)["compatibilities"]
    }


def manifest_text(matrix: Matrix, tags: list[str]) -> str:
    images = []
    for tag in tags:
        settings = matrix.run_settings(tag)
        images.append(
            {
                "name": matrix.reference(tag),
                "artifact": matrix.artifact_reference(tag),
                "command": settings["command"],
                "workdir": settings["workdir"],
            }
        )
    header = (
        "# The lab's images and their compatibility artifacts (compspec-go manifest format:\n"
        "# images: [{name, artifact}]), plus how the harness runs each image:\n"
        "# command (argv, run in workdir inside the image).\n"
        "# Written by `harness lab publish` (harness/lab/publish.py)\n"
        "# from containers/lab/images.yaml.\n"
    )
    return header + yaml.safe_dump({"images": images}, sort_keys=False, default_flow_style=None)


def run_publish(
    matrix: Matrix,
    tags: list[str],
    *,
    verify_only: bool,
    cache: Path,
    write_manifest: bool,
    sif_cache: Path | None = None,
) -> int:
    os.environ.setdefault("REQUESTS_CA_BUNDLE", str(SYSTEM_CA_BUNDLE))  # oras: not certifi
    if not shutil.which("apptainer"):
        raise PublishError("apptainer is missing: run scripts/install-deps.sh")
    host, _, _ = split_reference(matrix.reference("x"))
    registry = Registry(host)
    registry.check()
    wanted = [matrix.by_tag(t).tag for t in tags] if tags else [i.tag for i in matrix.images]
    rows, failed = [], {}
    t_start = time.monotonic()
    for tag in wanted:
        try:
            console.print(f"[bold]{tag}[/]: {'verify' if verify_only else 'publish'}")
            rows.append(
                publish_image(
                    matrix, registry, cache, tag, verify_only=verify_only, sif_cache=sif_cache
                )
            )
        except (
            HarnessError,
            requests.RequestException,
            subprocess.TimeoutExpired,
            ValueError,
        ) as exc:
            failed[tag] = str(exc)
            console.print(f"[red]{tag}[/]: {exc}")
    report = {
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mode": "verify" if verify_only else "publish",
        "seconds": round(time.monotonic() - t_start, 1),
        "images": rows,
        "failed": failed,
    }
    name = "verify-report.json" if verify_only else "publish-report.json"
    (cache / name).write_text(json.dumps(report, indent=2) + "\n")
    with (cache / "publish-history.jsonl").open("a") as history:  # every run, for timings
        history.write(json.dumps(report) + "\n")
    if write_manifest and not failed and not tags:
        text = manifest_text(matrix, [i.tag for i in matrix.images])
        if not MANIFEST_FILE.is_file() or MANIFEST_FILE.read_text() != text:
            MANIFEST_FILE.write_text(text)
            console.print(f"wrote {MANIFEST_FILE}")
    table = Table(title=f"lab {'verify' if verify_only else 'publish'} ({report['seconds']:.0f} s)")
    table.add_column("tag", no_wrap=True)
    for col in ("SIF MB", "push s", "pull s", "artifact push s", "artifact pull s"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["tag"],
            f"{r['sif_bytes'] / 1e6:.0f}",
            f"{r['push_seconds']:.1f}" if r.get("sif_pushed") else "held",
            f"{r['pull_seconds']:.1f}",
            f"{r['artifact_push_seconds']:.2f}" if r.get("artifact_pushed") else "held",
            f"{r['artifact_pull_seconds']:.2f}",
        )
    for tag, why in failed.items():
        table.add_row(tag, "[red]FAILED[/]", why[:60], "", "", "")
    console.print(table)
    console.print(f"report: {cache / name}")
    return 1 if failed else 0


def main(argv: list[str] | None = None, prog: str = "harness lab publish") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", action="append", default=[], metavar="TAG", help="only this image (repeatable)"
    )
    parser.add_argument(
        "--verify-only",
        action="store_true",
        help="push nothing; check the registry holds the local images/artifacts",
    )
    parser.add_argument(
        "--no-manifest", action="store_true", help=f"do not write {MANIFEST_FILE.name}"
    )
    parser.add_argument(
        "--matrix", type=Path, default=None, help="the lab matrix (containers/lab/images.yaml)"
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="the lab cache ($HARNESS_LAB_CACHE or default)"
    )
    parser.add_argument(
        "--sif-cache",
        type=Path,
        default=None,
        help="the harness's SIF cache to fill with the built images (`harness run`'s default)",
    )
    args = parser.parse_args(argv)
    try:
        return run_publish(
            load_matrix(args.matrix),
            args.only,
            verify_only=args.verify_only,
            cache=args.cache or cache_dir(),
            write_manifest=not args.no_manifest and not args.verify_only,
            sif_cache=args.sif_cache,
        )
    except HarnessError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2


def verify_main(argv: list[str] | None = None) -> int:
    """harness lab verify."""
    return main(["--verify-only", *(argv or [])], prog="harness lab verify")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
