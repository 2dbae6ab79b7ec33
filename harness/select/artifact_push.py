"""`harness artifact push IMAGE ARTIFACT`: store a compatibility artifact beside its image.

The artifact goes to the registry as compspec-go expects to find it: one layer of compspec-go's
media type in a manifest at `<image tag>-compspec` (or a reference given), through ORAS.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from harness.errors import HarnessError
from harness.files import read_input
from harness.select.artifacts import MEDIA_TYPES, oras_client, parse, probe_registry

MEDIA_TYPE = MEDIA_TYPES[0]  # the reference experiment's (and compspec-go 0517146's) type


def artifact_reference(image: str) -> str:
    """Where compspec-go looks for an image's artifact: the image's tag + `-compspec`."""
    name = image.removeprefix("oras://").removeprefix("docker://")
    last = name.rsplit("/", 1)[-1]
    if "@" in last or ":" not in last:
        raise HarnessError(f"image {image}: give a reference with a tag (registry/name:tag)")
    return f"{name}-compspec"


def push(image: str, artifact: Path, target: str | None = None) -> str:
    """Push `artifact` (a CompatibilitySpec JSON file) for `image`; returns the reference."""
    text = read_input(artifact, "artifact")
    parse(text.encode(), f"artifact {artifact}")  # a CompatibilitySpec, or one line why not
    ref = target or artifact_reference(image)
    probe_registry(ref)
    upload(json.dumps(json.loads(text), indent=2).encode() + b"\n", ref)
    return ref


def upload(data: bytes, ref: str) -> None:
    """Store artifact bytes at `ref` as one layer of compspec-go's media type."""
    with tempfile.TemporaryDirectory(prefix="compspec-") as tmp:
        path = Path(tmp) / "compspec.json"
        path.write_bytes(data)
        try:
            oras_client().push(
                files=[f"{path}:{MEDIA_TYPE}"],
                target=ref,
                disable_path_validation=True,
            )
        except Exception as exc:  # requests/oras raise many types; the user needs one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HarnessError(f"artifact push to {ref}: {first}") from None
