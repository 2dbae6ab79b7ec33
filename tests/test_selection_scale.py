"""What keeps selection fast at 100,000 images without changing its answers: every artifact read
once per run and parsed once per digest, large loads kept away from the cycle collector.
Speed itself is measured by benchmarks/bench_selection.py, never asserted here."""

from __future__ import annotations

import gc
import json

import pytest

from harness.errors import HarnessError
from harness.select import artifacts, bulk, manifest, matching, modes
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
