"""Manifest parsing: compspec-go's format as is, run fields, and bad input named precisely."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.select import manifest
from tests.conftest import ROOT


def test_reference_manifest_has_the_18_images():
    images = manifest.load(ROOT / "manifests.yaml")
    assert len(images) == 18
    assert sum(i.name.endswith("-amd64") for i in images) == 10
    assert all(i.artifact == i.name + "-compspec" for i in images)


def test_compspec_go_format_is_accepted_as_is(tmp_path, anchors):
    images = manifest.load(anchors / "manifests.yaml")
    assert len(images) == 18
    assert images[0].command == manifest.DEFAULT_COMMAND and images[0].workdir is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("images: [", "line"),
        ("nothing: here", "expected a mapping with an 'images' list"),
        ("images: []", "'images' is empty"),
        ("images:\n  - artifact: a\n", "images[0] field 'name' must be a non-empty string"),
        (
            "images:\n  - {name: a, artifact: b}\n  - {name: c, colour: d}\n",
            "images[1] has unknown field(s): colour",
        ),
        ("images:\n  - {name: a, command: lmp}\n", "images[0] field 'command' must be a non-empty"),
        ("images:\n  - {name: a}\n  - {name: a}\n", "images[1] name 'a' is listed twice"),
        (
            "images:\n  - {name: a, mpi_model: magic}\n",
            "images[0] field 'mpi_model' must be one of",
        ),
    ],
)
def test_bad_manifest_names_entry_and_field(tmp_path, text, message):
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(HarnessError, match=None) as err:
        manifest.load(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_manifest(tmp_path):
    with pytest.raises(HarnessError, match="no such file"):
        manifest.load(tmp_path / "absent.yaml")


def test_per_image_flux_settings_are_checked(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("images:\n  - {name: a, flux: {shell_options: {pmi: pmix}, bind_pmi: false}}\n")
    (image,) = manifest.load(path)
    assert image.flux == {"shell_options": {"pmi": "pmix"}, "bind_pmi": False}
    path.write_text("images:\n  - {name: a, flux: {colour: red}}\n")
    with pytest.raises(
        HarnessError, match=r"images\[0\] field 'flux' has unknown key\(s\): colour"
    ):
        manifest.load(path)


def test_local_artifact_is_relative_to_the_manifest(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "m.yaml").write_text("images:\n  - {name: a, artifact: specs/a.json}\n")
    (image,) = manifest.load(tmp_path / "m.yaml")
    assert image.artifact == str(tmp_path / "specs" / "a.json")
