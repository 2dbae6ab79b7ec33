"""`harness manifest init IMAGE... -o M`: a compspec-go manifest for a list of images.

Each image is paired with its artifact where compspec-go looks for it (`<tag>-compspec` in the
same repository), or, for a local SIF file, a JSON file beside it (`X.sif` -> `X.json`, as
`harness artifact create X.sif -o X.json` writes it).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harness import application
from harness.errors import HarnessError
from harness.files import atomic_write
from harness.select.artifact_push import artifact_reference


def entry(image: str, command: list[str] | None, workdir: str | None) -> dict:
    if image.endswith(".sif") and ":" not in image.rsplit("/", 1)[-1]:
        sif = Path(image).resolve()
        if not sif.is_file():
            raise HarnessError(f"{image}: no such SIF file")
        found = {"name": str(sif), "artifact": str(sif.with_suffix(".json"))}
    else:
        found = {"name": image, "artifact": artifact_reference(image)}
    if command:
        found["command"] = list(command)
    if workdir:
        found["workdir"] = workdir
    return found


def write(images: list[str], out: Path, command: list[str] | None, workdir: str | None) -> None:
    if not images:
        raise HarnessError("manifest init: name at least one image")
    if len(set(images)) != len(images):
        raise HarnessError("manifest init: an image is named twice")
    body = {"images": [entry(i, command, workdir) for i in images]}
    app = application.load()
    header = (
        "# compspec-go manifest (images: [{name, artifact}]) written by `harness manifest "
        "init`;\n# run fields (command, workdir, runtime_options, ...) are the harness's own. "
        f"Default command: the application's (--application; {app.name}: {' '.join(app.command)})\n"
    )
    atomic_write(out, (header + yaml.safe_dump(body, sort_keys=False)).encode())
