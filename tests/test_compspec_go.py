"""The compspec-go matcher (harness/compspec_go.py) and its parity with the native matcher.

Two groups:
- output parsing, argv and errors, with a stand-in `compspec` script: these run everywhere;
- the real `compspec match` against the lab registry's artifacts, for every lab host profile
  and every built-in mode but random, next to `harness candidates --json` (native). These run
  where compspec-go is installed and skip elsewhere: the Go module proxy refuses
  github.com/compspec/compspec-go (403 "This module version is not available"), so neither the
  setup nor CI can `go install` it.

Parity rule. compspec-go intersects exact string matches. Where the host spells every value of
a mode's keys as the artifacts do, both matchers must give the same set. Where a profile spells
a value the way uname or a tool does (x86_64, openmpi, 12.0, Debian, false), the native matcher
deliberately normalises: the test prints both answers side by side and asserts compspec-go's is
the exact-string answer while the native one equals the answer for the canonical spelling.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.select import compspec_go, modes
from tests.conftest import ROOT

LAB_MANIFEST = ROOT / "containers" / "lab" / "manifests.yaml"
LAB_REGISTRY = "https://127.0.0.1"
NOT_INSTALLED = (
    "compspec-go is not installed (no `compspec` on PATH, $HARNESS_COMPSPEC unset): the Go module "
    "proxy refuses github.com/compspec/compspec-go (403 'This module version is not available'), "
    "so setup/CI cannot `go install` it; build ./cmd/compspec from source (commit 0517146 for "
    "the lab's media type) and put it on PATH to run these"
)

ARCH = "io.archspec.cpu.target"
VENDOR = "org.supercontainers.os.vendor"
VERSION = "org.supercontainers.os.version"
GPU = "org.supercontainers.hardware.gpu.available"
MPI = "org.supercontainers.mpi.implementation"

# ---------------------------------------------------------------------------------------------
# Parsing, argv, errors (a stand-in script plays compspec; no Go, no registry)


FOUND = """Graph /tmp/g.json already exists, will not overwrite
map[127.0.0.1/lab/lammps-matrix:a:true 127.0.0.1/lab/lammps-matrix:b:true]
 --- Found matches ---
127.0.0.1/lab/lammps-matrix:a
127.0.0.1/lab/lammps-matrix:b
"""


def test_parse_reads_the_images_after_the_marker():
    result = compspec_go.parse(["compspec", "match", "-i", "m"], 0, FOUND, "")
    assert result.matches == ("127.0.0.1/lab/lammps-matrix:a", "127.0.0.1/lab/lammps-matrix:b")


def test_parse_no_criteria_lists_every_image():
    out = "No field criteria provided, all images are matches.\n --- Found matches ---\nx\ny\n"
    assert compspec_go.parse(["compspec", "match"], 0, out, "").matches == ("x", "y")


@pytest.mark.parametrize(
    "stderr",
    [
        "2026/11/25 15:23:58 Field io.archspec.cpu.target=x86_64 is not known and cannot be "
        "matched.\n",
        "2026/11/25 15:23:58 Adding field org.supercontainers.os.version=11 empties match set, "
        "no possible\n",
    ],
)
def test_parse_no_match_is_nomatch_one_line(stderr):
    with pytest.raises(compspec_go.NoMatch) as exc:
        compspec_go.parse(["compspec", "match"], 1, "map[]\n", stderr)
    msg = str(exc.value)
    assert "\n" not in msg and "2026/" not in msg
    assert msg.startswith("compspec-go found no candidate: ")


def test_parse_failure_is_one_line_with_the_reason():
    stderr = (
        '2026/11/25 15:23:52 Get "https://raw.githubusercontent.com/x.json": dial tcp: '
        "lookup raw.githubusercontent.com: no such host\n"
    )
    with pytest.raises(HarnessError) as exc:
        compspec_go.parse(["compspec", "match"], 1, "", stderr)
    assert not isinstance(exc.value, compspec_go.NoMatch)
    assert str(exc.value).startswith("compspec-go `match` failed (exit 1): Get ")


@pytest.mark.parametrize("stdout", ["", "Usage: compspec ...\n", " --- Found matches ---\n"])
def test_parse_unparseable_output_is_an_error(stdout):
    with pytest.raises(HarnessError) as exc:
        compspec_go.parse(["compspec", "match"], 0, stdout, "")
    assert not isinstance(exc.value, compspec_go.NoMatch)
    assert "\n" not in str(exc.value)


def test_missing_binary_says_not_installed(monkeypatch, tmp_path):
    monkeypatch.delenv(compspec_go.ENV_BINARY, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(HarnessError, match=r"^compspec-go is not installed: no `compspec` on PATH"):
        compspec_go.binary()
    monkeypatch.setenv(compspec_go.ENV_BINARY, str(tmp_path / "nope"))
    with pytest.raises(HarnessError, match=r"^compspec-go is not installed: \$HARNESS_COMPSPEC="):
        compspec_go.binary()


def test_criteria_are_the_mode_keys_with_host_values_verbatim():
    host = {ARCH: "x86_64", VENDOR: "Debian", VERSION: "12.0", GPU: "no", MPI: "Open MPI"}
    mode = modes.resolve("platform-version")
    assert compspec_go.criteria(mode, host) == [
        "io.archspec.cpu.target=x86_64",
        "org.supercontainers.os.vendor=Debian",
        "org.supercontainers.os.version=12.0",
    ]
    with pytest.raises(HarnessError, match="lacks .*org.supercontainers.mpi.implementation$"):
        compspec_go.criteria(modes.resolve("descriptive-mpi"), {ARCH: "amd64"})


def fake_compspec(
    tmp_path: Path, stdout: str, rc: int = 0, stderr: str = "", printed: str = ""
) -> Path:
    """A `compspec` stand-in that records its argv and whether the graph file existed.

    `match --print` prints `printed` (the image mapping) and exits 0.
    """
    script = tmp_path / "compspec"
    record = tmp_path / "argv.json"
    out, err, mapping = tmp_path / "out.txt", tmp_path / "err.txt", tmp_path / "print.txt"
    out.write_text(stdout)
    err.write_text(stderr)
    mapping.write_text(printed)
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "argv = sys.argv[1:]\n"
        "if '--print' in argv:\n"
        f"    sys.stdout.write(open({str(mapping)!r}).read())\n"
        "    sys.exit(0)\n"
        "graph = argv[argv.index('--cache-graph') + 1] if '--cache-graph' in argv else None\n"
        "seen = json.load(open(graph)) if graph and os.path.exists(graph) else None\n"
        f"json.dump({{'argv': argv, 'graph': seen}}, open({str(record)!r}, 'w'))\n"
        f"sys.stdout.write(open({str(out)!r}).read())\n"
        f"sys.stderr.write(open({str(err)!r}).read())\n"
        f"sys.exit({rc})\n"
    )
    script.chmod(0o755)
    return script


def test_candidates_runs_compspec_match_with_an_argv_list(tmp_path, monkeypatch):
    exe = fake_compspec(tmp_path, FOUND)
    monkeypatch.setenv(compspec_go.ENV_BINARY, str(exe))
    manifest = tmp_path / "m.yaml"
    manifest.write_text("images: []\n")
    host = {ARCH: "amd64", VENDOR: "debian", VERSION: "12", GPU: "no", MPI: "Open MPI"}
    got = compspec_go.candidates(manifest, modes.resolve("descriptive-mpi"), host)
    assert got == ["127.0.0.1/lab/lammps-matrix:a", "127.0.0.1/lab/lammps-matrix:b"]
    seen = json.loads((tmp_path / "argv.json").read_text())
    argv = seen["argv"]
    assert argv[:3] == ["match", "-i", str(manifest.resolve())]
    assert argv[argv.index("--match") :] == [
        "--match",
        "io.archspec.cpu.target=amd64",
        "--match",
        "org.supercontainers.os.vendor=debian",
        "--match",
        "org.supercontainers.os.version=12",
        "--match",
        "org.supercontainers.hardware.gpu.available=no",
        "--match",
        "org.supercontainers.mpi.implementation=Open MPI",  # one argv item, space and all
    ]
    # the schema graph existed when compspec ran: no download of the schemas
    assert set(seen["graph"]["nodes"]) >= {"compspec-root", "io.archspec", "org.supercontainers"}


def test_candidates_no_match_names_the_mode(tmp_path, monkeypatch):
    stderr = "2026/11/25 15:23:58 Field io.archspec.cpu.target=x86_64 is not known and cannot "
    stderr += "be matched.\n"
    exe = fake_compspec(tmp_path, "map[]\n", rc=1, stderr=stderr)
    manifest = tmp_path / "m.yaml"
    manifest.write_text("images: []\n")
    with pytest.raises(compspec_go.NoMatch) as exc:
        compspec_go.candidates(manifest, modes.resolve("basic"), {ARCH: "x86_64"}, exe=str(exe))
    assert str(exc.value) == (
        "mode basic: compspec-go found no candidate: "
        "Field io.archspec.cpu.target=x86_64 is not known and cannot be matched."
    )


@pytest.mark.parametrize(
    ("printed", "nomatch"),
    [
        (" -- Mapping for Images\n  image: reg/x:a\n  nodes:\n  -  compspec-root\n", True),
        (" -- Mapping for Images\n", False),  # x:a read as an empty spec
    ],
)
def test_empty_answer_from_unread_artifacts_says_media_type(tmp_path, printed, nomatch):
    stderr = "2026/11/25 15:27:39 Field io.archspec.cpu.target=amd64 is not known and cannot be "
    stderr += "matched.\n"
    exe = fake_compspec(tmp_path, "map[]\n", rc=1, stderr=stderr, printed=printed)
    manifest = tmp_path / "m.yaml"
    manifest.write_text("images:\n- {name: 'reg/x:a', artifact: 'reg/x:a-compspec'}\n")
    with pytest.raises(HarnessError) as exc:
        compspec_go.candidates(manifest, modes.resolve("basic"), {ARCH: "amd64"}, exe=str(exe))
    assert isinstance(exc.value, compspec_go.NoMatch) is nomatch
    if not nomatch:
        assert "read no attributes for 1 image(s) (e.g. reg/x:a)" in str(exc.value)
        assert "media type" in str(exc.value) and "\n" not in str(exc.value)


def echo_compspec(tmp_path: Path, picks: str) -> Path:
    """A `compspec` stand-in that keeps each manifest it is given and matches its images whose
    name contains `picks`."""
    script = tmp_path / "compspec"
    script.write_text(
        f"#!{sys.executable}\n"
        "import pathlib, sys, yaml\n"
        "argv = sys.argv[1:]\n"
        "given = pathlib.Path(argv[argv.index('-i') + 1])\n"
        f"seen = pathlib.Path({str(tmp_path)!r}) / 'given'\n"
        "seen.mkdir(exist_ok=True)\n"
        "(seen / str(len(list(seen.iterdir())))).write_text(given.read_text())\n"
        "names = [i['name'] for i in yaml.safe_load(given.read_text())['images']]\n"
        "print(' --- Found matches ---')\n"
        f"print('\\n'.join(n for n in names if {picks!r} in n))\n"
    )
    script.chmod(0o755)
    return script


def test_compspec_go_is_given_one_image_per_distinct_artifact(tmp_path, monkeypatch):
    """Twelve images, three artifact contents (two of them under several references): compspec
    match sees three images, and its answer covers every image of a matched artifact."""
    from harness.select import manifest as manifest_mod
    from harness.select import matching
    from harness.select.artifacts import ArtifactStore, cache_name

    cache = tmp_path / "cache"
    cache.mkdir()
    specs = [
        {
            "kind": "CompatibilitySpec",
            "compatibilities": [{"name": "io.archspec", "attributes": {"cpu.target": arch}}],
        }
        for arch in ("amd64", "arm64", "ppc64le")
    ]
    images = []
    for i in range(12):
        name, ref = f"reg/x:{i}-{('amd', 'arm', 'ppc')[i % 3]}", f"reg/x:{i}-compspec"
        images.append({"name": name, "artifact": ref})
        (cache / cache_name(ref)).write_text(json.dumps(specs[i % 3]))
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"images": images}, sort_keys=False))
    exe = echo_compspec(tmp_path, "-arm")
    store = ArtifactStore(cache=cache)
    loaded = manifest_mod.load(path)
    got = compspec_go.candidates(
        path, modes.resolve("basic"), {ARCH: "arm64"}, exe=str(exe), images=loaded, store=store
    )
    assert got == [f"reg/x:{i}-arm" for i in (1, 4, 7, 10)]
    (given,) = (tmp_path / "given").iterdir()
    assert yaml.safe_load(given.read_text())["images"] == images[:3]
    # the run's path: the manifest's order, each image with its own artifact's digest
    monkeypatch.setenv(compspec_go.ENV_BINARY, str(exe))
    verdicts = matching.select(
        "compspec-go", path, loaded, modes.resolve("basic"), {ARCH: "arm64"}, store
    )
    assert [v.image.name for v in verdicts] == got
    assert len({v.artifact_digest for v in verdicts}) == 1


def test_images_skipped_for_their_artifact_are_not_given_to_compspec_go(tmp_path):
    from harness.select import manifest as manifest_mod
    from harness.select.artifacts import ArtifactStore, cache_name

    cache = tmp_path / "cache"
    cache.mkdir()
    spec = {"kind": "CompatibilitySpec", "compatibilities": []}
    (cache / cache_name("reg/x:good-compspec")).write_text(json.dumps(spec))
    (cache / cache_name("reg/x:bad-compspec")).write_text("{not json")
    path = tmp_path / "m.yaml"
    path.write_text(
        "images:\n- {name: 'reg/x:good', artifact: 'reg/x:good-compspec'}\n"
        "- {name: 'reg/x:bad', artifact: 'reg/x:bad-compspec'}\n"
    )
    exe = echo_compspec(tmp_path, "reg/")
    loaded, mode = manifest_mod.load(path), modes.resolve("random")
    strict = ArtifactStore(cache=cache)
    with pytest.raises(HarnessError, match=r"^image reg/x:bad: artifact is not JSON$"):
        compspec_go.candidates(path, mode, {}, exe=str(exe), images=loaded, store=strict)
    lenient = ArtifactStore(cache=cache, skip_invalid=True)
    got = compspec_go.candidates(path, mode, {}, exe=str(exe), images=loaded, store=lenient)
    assert got == ["reg/x:good"] and list(lenient.skipped) == ["reg/x:bad"]
    only_bad = tmp_path / "bad.yaml"
    only_bad.write_text("images:\n- {name: 'reg/x:bad', artifact: 'reg/x:bad-compspec'}\n")
    with pytest.raises(HarnessError, match="^mode random: no image has a usable artifact$"):
        compspec_go.candidates(
            only_bad, mode, {}, exe=str(exe), images=manifest_mod.load(only_bad), store=lenient
        )


# ---------------------------------------------------------------------------------------------
# The real compspec-go against the lab registry


def compspec_missing() -> str | None:
    try:
        compspec_go.binary()
    except HarnessError as exc:
        return NOT_INSTALLED if os.environ.get(compspec_go.ENV_BINARY) is None else str(exc)
    return None


@functools.cache
def lab_missing() -> str | None:
    """Why the lab's images and artifacts cannot be read here, or None."""
    if not LAB_MANIFEST.is_file():
        return f"{LAB_MANIFEST.relative_to(ROOT)} is not written yet (harness lab publish)"
    import requests

    from harness.select.artifacts import tls_verify

    try:
        tags = requests.get(
            f"{LAB_REGISTRY}/v2/lab/lammps-matrix/tags/list", timeout=10, verify=tls_verify()
        ).json()["tags"]
    except Exception as exc:  # connection refused, TLS, no such repository...
        return f"lab registry {LAB_REGISTRY} cannot list lab/lammps-matrix ({type(exc).__name__})"
    wanted = {p["artifact"].rsplit(":", 1)[1] for p in lab_pairs()}
    absent = sorted(wanted - set(tags or []))
    if absent:
        return f"lab registry lacks artifact tag(s) {', '.join(absent)} (harness lab publish)"
    return None


@pytest.fixture
def real_compspec() -> str:
    why = compspec_missing()
    if why:
        pytest.skip(why)
    why = lab_missing()
    if why:
        if os.environ.get("HARNESS_REQUIRE_LAB") == "1":
            pytest.fail(f"the lab is required here but {why}")
        pytest.skip(why)
    return compspec_go.binary()


@functools.cache
def lab_pairs() -> tuple[dict, ...]:
    data = yaml.safe_load(LAB_MANIFEST.read_text())
    return tuple({"name": i["name"], "artifact": i["artifact"]} for i in data["images"])


@functools.cache
def workdir() -> Path:
    """One directory for the session: the shared manifest and the native artifact cache."""
    import atexit
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="test-compspec-go-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def manifest() -> Path:
    """The lab's image/artifact pairs, the one manifest both matchers read.

    Only `name` and `artifact` are kept (compspec-go's format; the lab's run fields play no part
    in selection).
    """
    path = workdir() / "lab-manifest.yaml"
    path.write_text(yaml.safe_dump({"images": list(lab_pairs())}, sort_keys=False))
    return path


@functools.cache
def artifact_attrs() -> dict[str, dict[str, str]]:
    """Image name -> its artifact's flattened attributes, read from the registry."""
    from harness.select.artifacts import ArtifactStore

    store = ArtifactStore(registry_cache=workdir() / "exact-cache")
    return {p["name"]: store.get(p["name"], p["artifact"]).attributes for p in lab_pairs()}


def exact_answer(host: dict[str, str], mode: modes.Mode) -> frozenset[str]:
    """compspec-go's semantics, computed here: every key's value is the same string."""
    return frozenset(
        name
        for name, attrs in artifact_attrs().items()
        if all(attrs.get(k) == host[k] for k in mode.keys)
    )


DEB12 = {ARCH: "amd64", VENDOR: "debian", VERSION: "12", GPU: "no", MPI: "OpenMPI"}
DEB11_GPU = dict(DEB12, **{VERSION: "11", GPU: "yes"})
DEB12_ARM = dict(DEB12, **{ARCH: "arm64"})
DEB12_MPICH = dict(DEB12, **{MPI: "mpich"})
# name -> (host, canonical twin): a profile with a twin spells some values otherwise.
PROFILES: dict[str, tuple[dict[str, str] | None, str | None]] = {
    "this-machine": (None, None),  # `harness host --json`
    "debian12-amd64-openmpi": (DEB12, None),
    "debian12-amd64-mpich": (DEB12_MPICH, None),
    "debian11-amd64-openmpi-gpu": (DEB11_GPU, None),
    "debian12-arm64-openmpi": (DEB12_ARM, None),
    "debian13-amd64-openmpi": (dict(DEB12, **{VERSION: "13"}), None),
    "uname:x86_64": (dict(DEB12, **{ARCH: "x86_64"}), "debian12-amd64-openmpi"),
    "uname:aarch64": (dict(DEB12_ARM, **{ARCH: "aarch64"}), "debian12-arm64-openmpi"),
    "mpi:openmpi": (dict(DEB12, **{MPI: "openmpi"}), "debian12-amd64-openmpi"),
    "mpi:MPICH": (dict(DEB12_MPICH, **{MPI: "MPICH"}), "debian12-amd64-mpich"),
    "mpi:Open MPI+gpu:true": (
        dict(DEB11_GPU, **{MPI: "Open MPI", GPU: "true"}),
        "debian11-amd64-openmpi-gpu",
    ),
    "os.version:12.0": (dict(DEB12, **{VERSION: "12.0"}), "debian12-amd64-openmpi"),
    "vendor:Debian+gpu:false": (
        dict(DEB12, **{VENDOR: "Debian", GPU: "false"}),
        "debian12-amd64-openmpi",
    ),
    "all-tool-spellings": (
        {ARCH: "x86_64", VENDOR: "Debian", VERSION: "12.0", GPU: "false", MPI: "openmpi"},
        "debian12-amd64-openmpi",
    ),
}
MODES = [m for m in modes.builtin() if modes.builtin()[m].keys]  # every built-in mode but random


@functools.cache
def profile_host(name: str) -> dict[str, str]:
    host, _ = PROFILES[name]
    if host is not None:
        return host
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "host", "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        pytest.skip(f"`harness host --json` failed here: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


@functools.cache
def go_answer(profile: str, mode_name: str) -> frozenset[str]:
    try:
        return frozenset(
            compspec_go.candidates(manifest(), modes.resolve(mode_name), profile_host(profile))
        )
    except compspec_go.NoMatch:
        return frozenset()


@functools.cache
def native_answer(profile: str, mode_name: str) -> frozenset[str]:
    host_file = workdir() / f"host-{list(PROFILES).index(profile)}.json"
    host_file.write_text(json.dumps(profile_host(profile)))
    env = dict(os.environ, XDG_CACHE_HOME=str(workdir() / "xdg"))  # fetched once per session
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "candidates",
            "--manifests",
            str(manifest()),
            "--mode",
            mode_name,
            "--host",
            str(host_file),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    if proc.returncode != 0:
        assert "no candidate for this host" in proc.stderr, proc.stderr
        return frozenset()
    return frozenset(json.loads(proc.stdout))


def short(names: frozenset[str]) -> str:
    return "{" + ", ".join(sorted(n.rsplit(":", 1)[1] for n in names)) + "}" if names else "{}"


def differs(profile: str, mode: modes.Mode) -> bool:
    """Whether the profile spells a value of the mode's keys unlike its canonical twin."""
    twin = PROFILES[profile][1]
    if twin is None:
        return False
    host, canonical = profile_host(profile), profile_host(twin)
    return any(host[k] != canonical[k] for k in mode.keys)


def test_compspec_go_reads_every_lab_artifact(real_compspec):
    """Every image has attributes in compspec-go: its artifact's media type is the one it expects.

    A compspec-go after the 2024-02 rename expects application/org.compspec, loads the lab's
    application/org.supercontainers.compspec layers as empty specs, silently, and would list
    none of the images here.
    """
    mapped = compspec_go.mapped_images(manifest())
    assert sorted(mapped) == sorted(p["name"] for p in lab_pairs())


def test_no_criteria_gives_every_image_like_native_random(real_compspec):
    got = compspec_go.run(manifest(), []).matches
    assert sorted(got) == sorted(p["name"] for p in lab_pairs())
    assert frozenset(got) == native_answer("debian12-amd64-openmpi", "random")


@pytest.mark.parametrize("mode_name", MODES)
@pytest.mark.parametrize("profile", list(PROFILES))
def test_parity_with_native(real_compspec, profile, mode_name):
    mode = modes.resolve(mode_name)
    host = profile_host(profile)
    go, native = go_answer(profile, mode_name), native_answer(profile, mode_name)
    # compspec-go's semantics are exact strings: the answer computed from the artifacts here.
    assert go == exact_answer(host, mode)
    if not differs(profile, mode):
        assert native == go, f"{profile} {mode_name}: native {short(native)} != go {short(go)}"
        return
    twin = PROFILES[profile][1]
    print(
        f"\n{profile} / {mode_name}: compspec-go (exact) {short(go)}  |  "
        f"native (normalised) {short(native)}  |  "
        f"compspec-go on {twin} {short(go_answer(twin, mode_name))}"
    )
    assert native == native_answer(twin, mode_name) == go_answer(twin, mode_name)


def test_parity_table(real_compspec):
    """One table of every profile and mode: compspec-go, native, and whether they agree."""
    names = [p["name"] for p in lab_pairs()]
    letter = {n: chr(ord("A") + i) for i, n in enumerate(names)}

    def letters(found: frozenset[str]) -> str:
        return "".join(letter[n] for n in names if n in found) or "-"

    rows = [("profile", "mode", "compspec-go", "native", "")]
    spelled_apart = 0
    for profile in PROFILES:
        for mode_name in MODES:
            mode = modes.resolve(mode_name)
            go, native = go_answer(profile, mode_name), native_answer(profile, mode_name)
            if go == native:
                mark = "same"
            elif differs(profile, mode):
                mark = "normalised"
                spelled_apart += 1
            else:
                mark = "MISMATCH"
            rows.append((profile, mode_name, letters(go), letters(native), mark))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    print("\n" + "  ".join(f"{letter[n]}={n.rsplit(':', 1)[1]}" for n in names))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    assert not [r for r in rows if r[4] == "MISMATCH"]
    assert spelled_apart > 0, "no profile shows the native matcher's normalisation"


def test_lab_registry_failure_is_one_line(real_compspec, tmp_path):
    """An artifact compspec-go cannot fetch: one line, exit status and the registry's reason."""
    bad = tmp_path / "m.yaml"
    name = lab_pairs()[0]["name"]
    bad.write_text(
        yaml.safe_dump({"images": [{"name": name, "artifact": name + "-no-such-compspec"}]})
    )
    with pytest.raises(HarnessError) as exc:
        compspec_go.candidates(bad, modes.resolve("basic"), DEB12)
    msg = str(exc.value)
    assert not isinstance(exc.value, compspec_go.NoMatch)
    assert msg.startswith("compspec-go `match` failed (exit 1): ") and "\n" not in msg


def test_images_sharing_an_artifact_are_matched_alike(real_compspec, tmp_path):
    """`harness candidates --matcher compspec-go` on the lab's pairs plus a twin of each (another
    name, the same artifact): compspec match is given each artifact once, and its answer holds
    every twin of the images it matched, in the manifest's order."""
    pairs = list(lab_pairs())
    twins = [{"name": p["name"] + "-twin", "artifact": p["artifact"]} for p in pairs]
    path = tmp_path / "twins.yaml"
    path.write_text(yaml.safe_dump({"images": pairs + twins}, sort_keys=False))
    host = tmp_path / "host.json"
    host.write_text(json.dumps(DEB12))
    env = dict(os.environ, XDG_CACHE_HOME=str(workdir() / "xdg"))
    for mode_name in MODES:
        proc = subprocess.run(
            [sys.executable, "-m", "harness.cli", "candidates", "--manifests", str(path)]
            + ["--mode", mode_name, "--host", str(host), "--matcher", "compspec-go", "--json"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        exact = exact_answer(DEB12, modes.resolve(mode_name))
        want = [p["name"] for p in pairs if p["name"] in exact]
        assert json.loads(proc.stdout) == want + [name + "-twin" for name in want]
