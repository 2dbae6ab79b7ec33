"""Manifest parsing: compspec-go's format as is, run fields, and bad input named precisely."""

from __future__ import annotations

import datetime
import json
import shutil
import time

import pytest
import yaml

from harness.errors import HarnessError
from harness.select import manifest, manifest_cache
from tests.conftest import ROOT


def test_reference_manifest_has_the_18_images():
    images = manifest.load(ROOT / "manifests.yaml")
    assert len(images) == 18
    assert sum(i.name.endswith("-amd64") for i in images) == 10
    assert all(i.artifact == i.name + "-compspec" for i in images)


def test_compspec_go_format_is_accepted_as_is(tmp_path, anchors):
    images = manifest.load(anchors / "manifests.yaml")
    assert len(images) == 18
    # no command: the application's (harness run --application, LAMMPS by default)
    assert images[0].command is None and images[0].workdir is None


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


# ---------------------------------------------------------------------------------------------
# Large manifests: parsed once, then loaded from a cache keyed by their content


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """A private user cache, and every manifest counted as large."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(manifest_cache, "MIN_BYTES", 0)
    return tmp_path / "xdg" / "compat-harness" / "manifests"


def big_manifest(path, n: int = 50, **extra) -> None:
    images = [
        {"name": f"reg/lammps:img-{i}", "artifact": f"reg/lammps:img-{i}-compspec", **extra}
        for i in range(n)
    ]
    images[1] = {
        "name": "local",
        "artifact": "specs/local.json",  # relative: resolved against the manifest's directory
        "command": ["lmp", "-in", "in.lj", 4],
        "workdir": "/opt/lab",
        "mpi_model": "hybrid",
        "flux": {"shell_options": {"pmi": "pmix"}, "env": {"A": "1"}, "bind_pmi": False},
        "runtime_options": ["--nv"],
        "launcher_options": ["--bind-to", "none"],
    }
    path.write_text(yaml.safe_dump({"images": images}, sort_keys=False))


def test_a_cached_manifest_loads_the_same_images_without_parsing(tmp_path, cache_home, monkeypatch):
    path = tmp_path / "m.yaml"
    big_manifest(path)
    parsed = manifest.load(path)
    assert len(list(cache_home.glob("*.json"))) == 1
    monkeypatch.setattr(manifest, "_rows", lambda *a: pytest.fail("parsed again"))
    cached = manifest.load(path)
    assert cached == parsed
    assert cached[1].command == ("lmp", "-in", "in.lj", "4")
    assert cached[1].flux == {
        "shell_options": {"pmi": "pmix"},
        "env": {"A": "1"},
        "bind_pmi": False,
    }
    assert cached[1].launcher_options == ("--bind-to", "none")
    # the same text elsewhere: the same entry, its relative artifact resolved from there
    elsewhere = tmp_path / "other" / "m.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(path.read_text())
    (moved,) = [i for i in manifest.load(elsewhere) if i.name == "local"]
    assert moved.artifact == str(tmp_path / "other" / "specs" / "local.json")


def test_an_edited_manifest_is_parsed_again(tmp_path, cache_home):
    path = tmp_path / "m.yaml"
    big_manifest(path)
    manifest.load(path)
    path.write_text(path.read_text().replace("img-7-compspec", "img-7-other"))
    assert manifest.load(path)[7].artifact == "reg/lammps:img-7-other"
    assert len(list(cache_home.glob("*.json"))) == 2


def test_an_invalid_manifest_is_never_cached(tmp_path, cache_home):
    path = tmp_path / "m.yaml"
    big_manifest(path, mpi_model="magic")
    for _ in range(2):
        with pytest.raises(HarnessError, match=r"images\[0\] field 'mpi_model' must be one of"):
            manifest.load(path)
    path.write_text("images:\n- {name: a}\n- [\n")
    with pytest.raises(HarnessError, match=r"m.yaml: line 4 is not valid YAML"):
        manifest.load(path)
    assert not cache_home.exists() or not list(cache_home.glob("*.json"))


def test_what_json_cannot_hold_exactly_is_not_cached(tmp_path, cache_home):
    path = tmp_path / "m.yaml"
    big_manifest(path, flux={"env": {"SINCE": datetime.date(2024, 2, 5)}})
    images = manifest.load(path)
    assert images[0].flux == {"env": {"SINCE": datetime.date(2024, 2, 5)}}
    assert manifest.load(path) == images
    assert not list(cache_home.glob("*.json"))


def test_a_damaged_or_unwritable_cache_costs_only_time(tmp_path, cache_home):
    path = tmp_path / "m.yaml"
    big_manifest(path)
    images = manifest.load(path)
    (entry,) = cache_home.glob("*.json")
    entry.write_bytes(b"{half")
    assert manifest.load(path) == images
    assert json.loads(entry.read_bytes())[0][0] == "reg/lammps:img-0"  # written anew
    shutil.rmtree(cache_home)
    cache_home.parent.mkdir(parents=True, exist_ok=True)
    cache_home.write_text("a file where the cache directory would be")
    assert manifest.load(path) == images


def test_the_cache_keeps_the_most_recently_used_entries(tmp_path, cache_home, monkeypatch):
    monkeypatch.setattr(manifest_cache, "KEEP", 2)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"m{i}.yaml")
        big_manifest(paths[-1], n=10 + i)
        manifest.load(paths[-1])
        time.sleep(0.01)  # distinct modification times
    assert len(list(cache_home.glob("*.json"))) == 2
    monkeypatch.setattr(manifest, "_rows", lambda *a: pytest.fail("parsed again"))
    manifest.load(paths[2])


def test_without_libyaml_the_pure_python_loader_says_so(tmp_path, cache_home, monkeypatch, capsys):
    path = tmp_path / "m.yaml"
    big_manifest(path)
    with_libyaml = manifest.load(path)
    shutil.rmtree(cache_home)
    monkeypatch.setattr(manifest, "SafeLoader", yaml.SafeLoader)
    manifest._warn_without_libyaml.cache_clear()
    assert manifest.load(path) == with_libyaml
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "PyYAML has no libyaml here" in err and str(path) in err
