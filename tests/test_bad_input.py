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


def cmd_case(command: str, *extra: str):
    """Another command over the same valid setup, spoiled by `extra`."""
    selection = {"candidates", "explain", "predict"}

    def setup(d):
        argv = [command, "--manifests", str(d / "m.yaml"), "--host", str(d / "host.json")]
        if command in selection:
            return [*argv, *extra]
        return [*argv, "--outdir", str(d / "out"), "--executor", "replay", *extra]

    return setup


def outdir_case(command: str, content: str | None, *extra: str):
    """A command reading an outdir whose records file holds `content` (no file when None)."""

    def setup(d):
        (d / "out").mkdir()
        if content is not None:
            write(d / "out" / "records.jsonl", content)
        return [*command.split(), str(d / "out"), *extra]

    return setup


def loop_case(d):
    (d / "m.yaml").unlink()
    (d / "m.yaml").symlink_to(d / "loop")
    (d / "loop").symlink_to(d / "m.yaml")
    return run_args(d)


BAD_NUMBERS = {"word": "many", "empty": "", "fraction": "1.5", "exponent": "1e3"}
for _option in ("--iters", "--np", "--max-concurrent", "--seed"):
    for _kind, _value in BAD_NUMBERS.items():
        CASES[f"{_option} {_kind}"] = (
            lambda d, o=_option, v=_value: run_args(d, o, v),
            f"argument {_option}",
        )
for _kind, _value in {"word": "soon", "empty": "", "negative": "-5", "zero": "0"}.items():
    CASES[f"--timeout {_kind}"] = (lambda d, v=_value: run_args(d, "--timeout", v), "--timeout")

CASES.update(
    {
        # manifests, further
        "manifest symlink loop": (loop_case, "symbolic links"),
        "manifest surrogate escape": (
            manifest_case('{"images": [{"name": "\\ud800.sif"}]}'),
            "lone UTF-16 surrogate",
        ),
        "manifest a bare string": (manifest_case("just words"), "'images' list"),
        "manifest a list": (manifest_case("[1, 2]"), "'images' list"),
        "manifest images a string": (manifest_case("images: x.sif"), "'images' list"),
        "manifest name a number": (image(name=3), "'name'"),
        "manifest name a list": (image(name=["a"]), "'name'"),
        "manifest name with a newline": (image(name="a\nb.sif"), "control character"),
        "manifest name with a tab": (image(name="a\tb.sif"), "control character"),
        "manifest name with an escape": (image(name="a\x1b[31m.sif"), "control character"),
        "manifest docker reference with a space": (
            image(name="docker://a b:1"),
            "not an image reference",
        ),
        "manifest oras reference with a semicolon": (
            image(name="oras://r/x;rm -rf ~"),
            "not an image reference",
        ),
        "manifest artifact empty": (image(artifact=""), "'artifact'"),
        "manifest artifact with a newline": (image(artifact="a\n.json"), "'artifact'"),
        "manifest artifact a list": (image(artifact=["a.json"]), "'artifact'"),
        "manifest command a mapping": (image(command={"a": 1}), "'command'"),
        "manifest command holds a list": (image(command=["lmp", ["-in"]]), "'command'"),
        "manifest command holds null": (image(command=["lmp", None]), "'command'"),
        "manifest workdir a number": (image(workdir=3), "'workdir'"),
        "manifest mpi_model a list": (image(mpi_model=["bind"]), "'mpi_model'"),
        "manifest runtime_options a string": (image(runtime_options="--nv"), "runtime_options"),
        "manifest runtime_options empty string": (image(runtime_options=[""]), "runtime_options"),
        "manifest launcher_options numbers": (image(launcher_options=[1]), "launcher_options"),
        "manifest images null": (manifest_case("images:"), "'images' list"),
        "manifest tab-indented": (manifest_case("images:\n\t- name: a"), "not valid YAML"),
        # host files, further
        "host empty": (host_case(""), "flat mapping"),
        "host a string": (host_case("amd64"), "flat mapping"),
        "host surrogate escape": (
            host_case('{"io.archspec.cpu.target": "\\udc00"}'),
            "lone UTF-16 surrogate",
        ),
        "host list value": (host_case('{"io.archspec.cpu.target": ["amd64"]}'), "scalar"),
        "host binary": (host_case(b"\x00\x01"), "binary"),
        "host missing": (lambda d: ((d / "host.json").unlink(), run_args(d))[1], "no such file"),
        # mode files, further
        "mode file key a list": (mode_file_case("modes: {m: {keys: [[a]]}}"), "not a string"),
        "mode file against itself": (
            mode_file_case("modes: {m: {keys: [], against: m}}"),
            "'against' must name another mode",
        ),
        "mode file against a list": (
            mode_file_case("modes: {m: {keys: [], against: [random]}}"),
            "'against' must name another mode",
        ),
        "mode file against no mode": (
            mode_file_case("modes: {m: {keys: [], against: descriptve-mpi}}"),
            "measured against 'descriptve-mpi', which is not a mode",
        ),
        "mode file key a mapping": (mode_file_case("modes: {m: {keys: [{a: 1}]}}"), "not a string"),
        "mode file key a number": (mode_file_case("modes: {m: {keys: [3]}}"), "not a string"),
        "mode file keys a string": (mode_file_case("modes: {m: {keys: a}}"), "'keys' list"),
        "mode file modes a list": (mode_file_case("modes: [a, b]"), "'modes' mapping"),
        "mode file a list": (mode_file_case("[1]"), "'modes' mapping"),
        "mode file empty": (mode_file_case(""), "'modes' mapping"),
        "mode file name a list": (mode_file_case("modes: {[a]: {keys: []}}"), "not valid YAML"),
        "mode file name with a space": (mode_file_case('modes: {"a b": {keys: []}}'), "mode name"),
        "mode file name with a newline": (
            mode_file_case('modes: {"a\\nb": {keys: []}}'),
            "mode name",
        ),
        "mode file surrogate": (mode_file_case('{"modes": {"\\ud800": {}}}'), "surrogate"),
        "mode file missing": (
            lambda d: run_args(d, "--mode-file", str(d / "none.yaml")),
            "no such file",
        ),
        "mode file a directory": (
            lambda d: run_args(d, "--mode-file", str(d)),
            "is a directory",
        ),
        # options, further
        "mode empty": (lambda d: run_args(d, mode=""), "mode"),
        "mode with a newline": (lambda d: run_args(d, mode="a\nb"), "mode"),
        "mode with a slash": (lambda d: run_args(d, mode="a/b"), "mode name"),
        "unknown option": (lambda d: run_args(d, "--colour"), "unrecognized arguments"),
        "unknown executor": (lambda d: run_args(d, "--executor", "pbs"), "invalid choice"),
        "unknown mpi model": (lambda d: run_args(d, "--mpi-model", "magic"), "invalid choice"),
        "unknown matcher": (lambda d: run_args(d, "--matcher", "regex"), "invalid choice"),
        "seed a word": (lambda d: run_args(d, "--seed", "lucky"), "--seed"),
        "slurm option on local": (lambda d: run_args(d, "--partition", "debug"), "--partition"),
        "outdir a file": (
            lambda d: (write(d / "f", "x"), [*run_args(d), "--outdir", str(d / "f")])[1],
            "Not a directory",
        ),
        "outdir with a NUL": (lambda d: [*run_args(d), "--outdir", "a\0b"], "outdir"),
        "sif cache a file": (
            lambda d: (write(d / "f", "x"), run_args(d, "--sif-cache", str(d / "f")))[1],
            "not a directory",
        ),
        "artifact cache missing": (
            lambda d: run_args(d, "--cache", str(d / "none"), mode="basic"),
            "not a directory",
        ),
        # artifacts, further
        "artifact a directory": (
            lambda d: ((d / "a.json").unlink(), (d / "a.json").mkdir(), run_args(d, mode="basic"))[
                2
            ],
            "is a directory",
        ),
        "artifact path without .json missing": (
            lambda d: (
                write(
                    d / "m.yaml",
                    json.dumps({"images": [{"name": str(d / "a.sif"), "artifact": "spec"}]}),
                ),
                run_args(d, mode="basic"),
            )[1],
            "artifact file",
        ),
        "artifact a JSON list": (artifact_case("[1]"), "CompatibilitySpec"),
        "artifact compatibilities a string": (
            artifact_case('{"kind": "CompatibilitySpec", "compatibilities": "x"}'),
            "artifact",
        ),
        "artifact empty": (artifact_case(""), "artifact"),
        # other commands over the same setup
        "census unknown executor": (cmd_case("census", "--executor", "pbs"), "invalid choice"),
        "census np zero": (cmd_case("census", "--np", "0"), "--np"),
        "census timeout nan": (cmd_case("census", "--timeout", "nan"), "--timeout"),
        "census bad mode file": (cmd_case("census", "--mode-file", "/nonexistent"), "mode file"),
        "candidates unknown mode": (cmd_case("candidates", "--mode", "nope"), "unknown mode"),
        "candidates no mode": (cmd_case("candidates"), "--mode"),
        "explain unknown mode": (cmd_case("explain", "--mode", "nope"), "unknown mode"),
        "predict iters zero": (cmd_case("predict", "--iters", "0"), "--iters"),
        "predict unknown protocol": (cmd_case("predict", "--protocol", "x"), "invalid choice"),
        "predict measured missing": (
            cmd_case("predict", "--measured", "/nonexistent"),
            "/nonexistent",
        ),
        # commands that read an outdir
        "status of nothing": (lambda d: ["status", str(d / "none")], "none"),
        "status bad records": (outdir_case("status", "{oops\n"), "line 1"),
        "report of nothing": (lambda d: ["report", str(d / "none")], "none"),
        "report empty records": (outdir_case("report", ""), "no records"),
        "report bad records": (outdir_case("report", "[1]\n"), "line 1"),
        "report unknown mode filter": (
            outdir_case("report", GOOD + "\n", "--mode", "typo"),
            "typo",
        ),
        "report unknown image filter": (
            outdir_case("report", GOOD + "\n", "--image", "typo"),
            "typo",
        ),
        "report unknown reason filter": (
            outdir_case("report", GOOD + "\n", "--reason", "typo"),
            "typo",
        ),
        "records check bad line": (outdir_case("records check", GOOD + "\n{\n"), "line 2"),
        "records check of nothing": (lambda d: ["records", "check", str(d / "none")], "none"),
        "classify missing log": (lambda d: ["classify", str(d / "none.log")], "none.log"),
        "classify a directory": (lambda d: ["classify", str(d / "adir")], "adir"),
        "manifest init no images": (lambda d: ["manifest", "init", "-o", str(d / "x.yaml")], ""),
    }
)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_leaves_nothing(base, capsys, case):
    setup, fragment = CASES[case]
    args = setup(base)
    existed = (base / "out").exists()
    before = sorted(p.name for p in (base / "out").iterdir()) if existed else None
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse's own usage errors end the process (exit 2)
        code = exc.code
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


def test_there_are_at_least_150_cases():
    assert len(CASES) >= 150


def test_report_names_the_bad_line(tmp_path, capsys):
    records.append(tmp_path, make(0, "random"))
    with records.records_path(tmp_path).open("a") as fh:
        fh.write("{}\n")
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 2" in err[0] and "records repair" in err[0]
    assert not (tmp_path / "report.md").exists()
