"""What keeps selection fast at 100,000 images without changing its answers: every artifact read
once per run and parsed once per digest, a cache directory's files not read again while their
stat is unchanged, large loads kept away from the cycle collector.
Speed itself is measured by benchmarks/bench_selection.py, never asserted here."""

from __future__ import annotations

import gc
import json
import os

import pytest

from harness.errors import HarnessError
from harness.select import artifact_index, artifacts, bulk, manifest, matching, modes
from harness.select.artifacts import READ_SIZE, ArtifactStore, cache_name

ARCH = "io.archspec.cpu.target"


def spec(arch: str, padding: int = 0) -> str:
    body = {
        "kind": "CompatibilitySpec",
        "metadata": {"note": "x" * padding},
        "compatibilities": [{"name": "io.archspec", "attributes": {"cpu.target": arch}}],
    }
    return json.dumps(body)


@pytest.fixture
def store_of(tmp_path):
    """A compspec-go cache directory holding the given reference -> text, and its store."""

    def make(texts: dict[str, str], **options) -> ArtifactStore:
        cache = tmp_path / "cache"
        cache.mkdir(exist_ok=True)
        for ref, text in texts.items():
            (cache / cache_name(ref)).write_text(text)
        return ArtifactStore(cache=cache, **options)

    return make


def test_an_artifact_larger_than_one_read_is_read_whole(store_of):
    text = spec("arm64", padding=3 * READ_SIZE)
    artifact = store_of({"r/big": text}).get("img", "r/big")
    assert artifact.attributes == {"io.archspec.cpu.target": "arm64"}
    assert len(text) > 3 * READ_SIZE


def test_artifacts_alike_are_parsed_once_and_keep_their_own_reference(store_of, monkeypatch):
    store = store_of({f"r/{i}": spec("amd64" if i % 2 else "arm64") for i in range(6)})
    parsed = []

    def counted(data, where, parse=artifacts.parse):
        parsed.append(where)
        return parse(data, where)

    monkeypatch.setattr(artifacts, "parse", counted)
    got = [store.get(f"img-{i}", f"r/{i}") for i in range(6)]
    assert len(parsed) == 2  # two distinct contents
    assert [a.ref for a in got] == [f"r/{i}" for i in range(6)]
    assert got[0].attributes is got[2].attributes
    assert {a.digest for a in got[1::2]} != {a.digest for a in got[::2]}


def test_read_all_fails_on_the_first_bad_artifact_or_skips_it(store_of, tmp_path):
    texts = {"r/a": spec("amd64"), "r/b": "{not json", "r/c": spec("amd64")}
    path = tmp_path / "m.yaml"
    path.write_text("images:\n" + "".join(f"- {{name: {r}, artifact: '{r}'}}\n" for r in texts))
    images = manifest.load(path)
    with pytest.raises(HarnessError, match=r"^image r/b: artifact is not JSON$"):
        store_of(texts).read_all(images)
    lenient = store_of(texts, skip_invalid=True)
    allowed = matching.candidates(images, modes.resolve("basic"), {ARCH: "amd64"}, lenient)
    assert [v.image.name for v in allowed] == ["r/a", "r/c"]
    assert list(lenient.skipped) == ["r/b"]


def test_a_large_load_is_frozen_a_small_one_is_not(monkeypatch):
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with bulk.gc_paused():
        assert not gc.isenabled()
        small = [[] for _ in range(100)]
    assert gc.isenabled() and gc.get_freeze_count() == frozen
    monkeypatch.setattr(bulk, "FREEZE_ABOVE", 1000)
    with bulk.gc_paused():
        large = [[] for _ in range(5000)]
    assert gc.get_freeze_count() >= frozen + len(large) and gc.isenabled()
    gc.unfreeze()  # give the test process its collector back whole
    assert small and large


def test_the_collector_stays_off_if_it_was_off():
    gc.disable()
    try:
        with bulk.gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


# The index of a cache directory: a later selection stats each file instead of reading it


@pytest.fixture
def indexed(tmp_path, monkeypatch, store_of):
    """Selections of any size indexed, every file old enough to be remembered; the images of
    six artifacts; the parse calls counted."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(artifact_index, "MIN_FILES", 1)
    monkeypatch.setattr(artifact_index, "RACY_NS", -(10**18))
    texts = {f"r/{i}": spec("amd64" if i % 2 else "arm64", padding=i) for i in range(6)}
    store_of(texts)
    path = tmp_path / "m.yaml"
    path.write_text("images:\n" + "".join(f"- {{name: {r}, artifact: '{r}'}}\n" for r in texts))
    parsed = []

    def counted(data, where, parse=artifacts.parse):
        parsed.append(where)
        return parse(data, where)

    monkeypatch.setattr(artifacts, "parse", counted)
    return manifest.load(path), tmp_path / "cache", parsed


def selection(images, cache) -> list[tuple]:
    store = ArtifactStore(cache=cache)
    store.read_all(images)
    return [(a.ref, a.digest, a.attributes, a.source) for a in store._memo.values()]


def test_a_later_selection_reads_no_unchanged_file(indexed):
    images, cache, parsed = indexed
    first = selection(images, cache)
    assert len(parsed) == 6
    assert selection(images, cache) == first and len(parsed) == 6


def test_a_changed_file_is_read_again(indexed):
    images, cache, parsed = indexed
    first = selection(images, cache)
    changed = cache / cache_name("r/1")
    changed.write_text(spec("arm64", padding=1))  # same size, other content
    os.utime(changed, ns=(1, 1))
    (cache / cache_name("r/2")).write_text(spec("amd64"))  # another size
    again = selection(images, cache)
    assert len(parsed) == 8
    assert again[1][2] == {ARCH: "arm64"} and again[1][1] != first[1][1]
    assert again[2][2] == {ARCH: "amd64"}
    assert selection(images, cache) == again and len(parsed) == 8


def test_a_file_changed_just_before_it_was_read_is_not_remembered(indexed, monkeypatch):
    images, cache, parsed = indexed
    monkeypatch.setattr(artifact_index, "RACY_NS", 10**18)
    selection(images, cache)
    selection(images, cache)
    assert len(parsed) == 12


def test_a_missing_or_bad_file_is_reported_as_without_the_index(indexed):
    images, cache, _ = indexed
    selection(images, cache)
    (cache / cache_name("r/3")).write_text("{not json")
    with pytest.raises(HarnessError, match=r"^image r/3: artifact is not JSON$"):
        selection(images, cache)
    (cache / cache_name("r/3")).unlink()
    with pytest.raises(HarnessError, match=r"^image r/3: artifact r/3 is not in cache "):
        selection(images, cache)
