"""The two keys of each lab image that decide what is rebuilt (see harness.lab.build): the
rootfs key and the image key, each over the content it is built from and the code that builds it.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import textwrap
from typing import Any

from harness.lab.matrix import Matrix
from harness.lab.rootfs import (
    RECIPES,
    apt_install,
    debootstrap,
    make_rootfs,
    prune_styles,
    unpack_foreign_debs,
    write_files,
)
from harness.lab.sif import build_sif, finish_image


def _code(*functions: Any) -> str:
    """The functions' code as syntax trees: formatting and comments do not count."""
    return "\n".join(ast.dump(ast.parse(textwrap.dedent(inspect.getsource(f)))) for f in functions)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def compute_keys(matrix: Matrix) -> dict[str, dict[str, str]]:
    keys: dict[str, dict[str, str]] = {}
    for image in matrix.images:
        code = [make_rootfs, write_files]
        if image.parent is None:
            code.append(debootstrap)
        if image.foreign:
            code.append(unpack_foreign_debs)
        if image.install:
            code.append(apt_install)
        if image.recipe in RECIPES:
            code.append(RECIPES[image.recipe])
        if image.styles:
            code.append(prune_styles)
        rootfs_key = _digest(
            {
                "entry": {k: v for k, v in image.image_fields().items()},
                "code": _code(*code),
                "parent": keys[image.parent]["rootfs"] if image.parent else None,
            }
        )
        lab_files = {
            name: hashlib.sha256(path.read_bytes()).hexdigest()
            for name, path in sorted(matrix.lab_files.items())
        }
        image_key = _digest(
            {
                "rootfs": rootfs_key,
                "workdir": matrix.workdir,
                "lab_files": lab_files,
                "command": list(image.command),
                "code": _code(finish_image, build_sif),
            }
        )
        keys[image.tag] = {"rootfs": rootfs_key, "image": image_key}
    return keys
