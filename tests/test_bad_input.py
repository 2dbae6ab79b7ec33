"""Malformed input of every kind: one line on stderr naming the cause, exit 2, no traceback,
nothing created or half-written. The replay executor (tests/replay.py) stands in for the
runtime, so every check below runs without Apptainer or MPI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import cli, records
from tests.test_records import make
from tests.test_runner import HOST

SPEC = {
    "kind": "CompatibilitySpec",
    "compatibilities": [{"name": "io.archspec", "attributes": {"cpu.target": "amd64"}}],
}


@pytest.fixture
def base(tmp_path, replay):
    """A valid setup: a local image with its artifact, a host file; each case spoils one part."""
    (tmp_path / "a.sif").write_bytes(b"SIF")
    (tmp_path / "a.json").write_text(json.dumps(SPEC))
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        json.dumps({"images": [{"name": str(tmp_path / "a.sif"), "artifact": "a.json"}]})
    )
    host = tmp_path / "host.json"
    host.write_text(json.dumps(HOST))
    return tmp_path


def run_args(d: Path, *extra: str, mode: str = "random", outdir: str = "out") -> list[str]:
    return [
        "run", "--manifests", str(d / "m.yaml"), "--host", str(d / "host.json"),
        "--mode", mode, "--iters", "1", "--outdir", str(d / outdir), "--executor", "replay",
        *extra,
    ]  # fmt: skip


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def manifest_case(content):
    return lambda d: (write(d / "m.yaml", content), run_args(d))[1]


def host_case(content):
    return lambda d: (write(d / "host.json", content), run_args(d))[1]


def mode_file_case(content):
    return lambda d: (
        write(d / "modes.yaml", content),
        run_args(d, "--mode-file", str(d / "modes.yaml")),
    )[1]  # noqa: E501


def artifact_case(content):
    return lambda d: (write(d / "a.json", content), run_args(d, mode="basic"))[1]


def records_case(content):
    def setup(d):
        (d / "out").mkdir()
        write(d / "out" / "records.jsonl", content)
        return run_args(d)

    return setup


def image(**fields):
    return manifest_case(json.dumps({"images": [{"name": "x.sif", **fields}]}))


GOOD = make(0, "random").to_json()
CASES = {
    # manifests
    "manifest not UTF-8": (manifest_case(b"images:\n- name: \xff\xfe\n"), "not UTF-8"),
    "manifest binary": (manifest_case(b"\x00\x01images"), "binary"),
    "manifest empty": (manifest_case(""), "'images' list"),
    "manifest bad YAML": (manifest_case("images: [\n"), "not valid YAML"),
    "manifest images not a list": (manifest_case("images: {a: 1}"), "'images' list"),
    "manifest images empty": (manifest_case("images: []"), "'images' is empty"),
    "manifest entry not a mapping": (manifest_case("images: [3]"), "must be a mapping"),
    "manifest unknown field": (image(colour="red"), "unknown field(s): colour"),
    "manifest no name": (manifest_case('{"images": [{"artifact": "a"}]}'), "'name'"),
    "manifest empty name": (image(name=" "), "'name'"),
    "manifest artifact not a string": (image(artifact=3), "'artifact'"),
    "manifest command empty": (image(command=[]), "'command'"),
    "manifest command not a list": (image(command="lmp -in x"), "'command'"),
    "manifest workdir not a path": (image(workdir=[1]), "'workdir'"),
    "manifest bad mpi_model": (image(mpi_model="magic"), "'mpi_model'"),
    "manifest flux not a mapping": (image(flux=[1]), "'flux' must be a mapping"),
    "manifest flux unknown key": (image(flux={"nope": 1}), "unknown key(s): nope"),
    "manifest duplicate names": (
        manifest_case('{"images": [{"name": "x.sif"}, {"name": "x.sif"}]}'),
        "listed twice",
    ),
    "manifest is a directory": (
        lambda d: ((d / "m.yaml").unlink(), (d / "m.yaml").mkdir(), run_args(d))[2],
        "is a directory",
    ),
    "manifest missing": (lambda d: ((d / "m.yaml").unlink(), run_args(d))[1], "no such file"),
    # host files
    "host not UTF-8": (host_case(b"\xff: x"), "not UTF-8"),
    "host a list": (host_case("[1, 2]"), "flat mapping"),
    "host unknown key": (host_case('{"cpu": "amd64"}'), "unknown host key(s): cpu"),
    "host nested value": (
        host_case('{"io.archspec.cpu.target": {"a": 1}}'),
        "must be a scalar",
    ),
    "host bad YAML": (host_case("a: [\n"), "neither JSON nor YAML"),
    "host is a directory": (
        lambda d: ((d / "host.json").unlink(), (d / "host.json").mkdir(), run_args(d))[2],
        "is a directory",
    ),
    # mode files
    "mode file not UTF-8": (mode_file_case(b"modes: \xff"), "not UTF-8"),
    "mode file no modes": (mode_file_case("other: 1"), "'modes' mapping"),
    "mode file mode without keys": (mode_file_case("modes: {m: {}}"), "needs a 'keys' list"),
    "mode file unknown key": (mode_file_case("modes: {m: {keys: [cpu]}}"), "unknown attribute"),
    "mode file unsafe name": (mode_file_case('modes: {"../x": {keys: []}}'), "mode name"),
    "mode file NUL in a name": (mode_file_case('modes: {"a\\0b": {keys: []}}'), "mode name"),
    "mode file bad YAML": (mode_file_case("modes: [\n"), "not valid YAML"),
    # options
    "unknown mode": (lambda d: run_args(d, mode="nope"), "unknown mode 'nope'"),
    "unsafe mode name": (lambda d: run_args(d, mode="../x"), "mode name '../x'"),
    "timeout nan": (lambda d: run_args(d, "--timeout", "nan"), "--timeout"),
    "timeout inf": (lambda d: run_args(d, "--timeout", "inf"), "--timeout"),
    "timeout negative": (lambda d: run_args(d, "--timeout", "-1"), "--timeout"),
    "iters zero": (lambda d: run_args(d, "--iters", "0"), "--iters must be at least 1"),
    "np zero": (lambda d: run_args(d, "--np", "0"), "--np must be at least 1"),
    "max-concurrent zero": (
        lambda d: run_args(d, "--max-concurrent", "0"),
        "--max-concurrent must be at least 1",
    ),
    "another executor's option": (
        lambda d: run_args(d, "--flux-uri", "local:///x"),
        "--flux-uri applies to --executor flux only",
    ),
    "census repeat zero": (
        lambda d: [
            "census",
            "--manifests",
            str(d / "m.yaml"),
            "--host",
            str(d / "host.json"),
            "--outdir",
            str(d / "out"),
            "--executor",
            "replay",
            "--repeat",
            "0",
        ],  # fmt: skip
        "--repeat must be at least 1",
    ),
    "seed beyond 64 bits": (lambda d: run_args(d, "--seed", str(2**70)), "--seed"),
    "seed below 64 bits": (lambda d: run_args(d, "--seed", str(-(2**63) - 1)), "out of range"),
    "outdir empty": (lambda d: [*run_args(d), "--outdir", ""], "the outdir is empty"),
    # artifacts
    "artifact not JSON": (artifact_case("{not json"), "artifact is not JSON"),
    "artifact not a spec": (artifact_case('{"kind": "Other"}'), "not a CompatibilitySpec"),
    "artifact not UTF-8": (artifact_case(b'{"kind": "\xff"}'), "not UTF-8"),
    "artifact binary": (artifact_case(b"\x00\x01"), "binary"),
    "artifact missing": (
        lambda d: ((d / "a.json").unlink(), run_args(d, mode="basic"))[1],
        "a.json",
    ),
    # records of an earlier run
    "records a JSON list": (records_case("[1]\n"), "line 1: not a harness record"),
    "records a bare mode": (records_case('{"mode": "random"}\n'), "missing field"),
    "records iteration a list": (
        records_case(GOOD.replace('"iteration": 0', '"iteration": [0]') + "\n"),
        "wrong type",
    ),
    "records bad middle line": (records_case(GOOD + "\n{oops\n" + GOOD + "\n"), "line 2"),
    "records duplicate": (records_case(GOOD + "\n" + GOOD + "\n"), "line 2: a second record"),
    "records a directory": (
        lambda d: ((d / "out" / "records.jsonl").mkdir(parents=True), run_args(d))[1],
        "not a file",
    ),
    # --application NAME|FILE
    "application unknown": (
        lambda d: run_args(d, "--application", "gromacs"),
        "unknown application 'gromacs' (known: lammps, netpipe)",
    ),
    "application file missing": (
        lambda d: run_args(d, "--application", str(d / "app.yaml")),
        "app.yaml: no such file",
    ),
    "application file bad YAML": (
        lambda d: (
            write(d / "app.yaml", "name: [\n"),
            run_args(d, "--application", str(d / "app.yaml")),
        )[1],
        "app.yaml: not valid YAML",
    ),
    "application file without run": (
        lambda d: (
            write(d / "app.yaml", "name: x\n"),
            run_args(d, "--application", str(d / "app.yaml")),
        )[1],
        "'run' must be a mapping",
    ),
    "application on ranks it cannot run on": (
        lambda d: run_args(d, "--application", "netpipe", "--np", "3"),
        "application netpipe runs on exactly 2 ranks",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_leaves_nothing(base, capsys, case):
    setup, fragment = CASES[case]
    args = setup(base)
    existed = (base / "out").exists()
    before = sorted(p.name for p in (base / "out").iterdir()) if existed else None
    code = cli.main(args)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    assert fragment in lines[0], lines[0]
    # nothing created, nothing half-written
    if existed:
        assert sorted(p.name for p in (base / "out").iterdir()) == before
    else:
        assert not (base / "out").exists()


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40


def test_report_names_the_bad_line(tmp_path, capsys):
    records.append(tmp_path, make(0, "random"))
    with records.records_path(tmp_path).open("a") as fh:
        fh.write("{}\n")
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 2" in err[0] and "records repair" in err[0]
    assert not (tmp_path / "report.md").exists()
