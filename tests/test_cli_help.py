"""Every option of every subcommand has help text, and the progress a person sees."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess

import pytest
import yaml

from harness import cli
from tests.conftest import ROOT


def subparsers(parser: argparse.ArgumentParser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from subparsers(sub, (*path, name))


def own_parsers():
    """The subcommands that parse their own arguments: catch the parser they build."""
    from harness.lab import build, publish
    from harness.run import prepull
    from harness.select import artifact_create

    mains = {
        "artifact create": artifact_create.main,
        "lab build": build.main,
        "lab publish": publish.main,
        "lab verify": publish.verify_main,
        "prepull": prepull.main,
    }
    for name, main in mains.items():
        caught = []

        def parse_args(self, args=None, namespace=None, caught=caught):
            caught.append(self)
            raise SystemExit(0)

        original = argparse.ArgumentParser.parse_args
        argparse.ArgumentParser.parse_args = parse_args
        try:
            with pytest.raises(SystemExit):
                main(["--help"])
        finally:
            argparse.ArgumentParser.parse_args = original
        yield name, caught[0]


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    return [
        "/".join(a.option_strings) or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
        and a.dest != "rest"
        and not (a.help or "").strip()
    ]


def test_every_option_of_every_subcommand_has_help():
    missing = {}
    for path, parser in subparsers(cli.build_parser()):
        if bad := undocumented(parser):
            missing[" ".join(path) or "harness"] = bad
    for name, parser in own_parsers():
        if bad := undocumented(parser):
            missing[name] = bad
    assert missing == {}


def test_lab_verify_help_names_itself():
    ((_, parser),) = [(n, p) for n, p in own_parsers() if n == "lab verify"]
    assert parser.prog == "harness lab verify"


def test_mode_help_lists_the_modes():
    (run,) = [p for path, p in subparsers(cli.build_parser()) if path == ("run",)]
    (mode,) = [a for a in run._actions if "--mode" in a.option_strings]
    for name in ("random", "basic", "platform-version", "descriptive-mpi"):
        assert name in mode.help


def one_image_manifest(tmp_path):
    entries = yaml.safe_load((ROOT / "containers/lab/manifests.yaml").read_text())["images"]
    (entry,) = [e for e in entries if e["name"].endswith(":openmpi-debian-12-amd64")]
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"images": [entry]}))
    return path


@pytest.mark.lab
def test_progress_names_the_image_and_step_on_a_terminal(lab, tmp_path):
    if shutil.which("script") is None:
        pytest.skip("`script` (util-linux) is needed for a pseudo-terminal")
    args = ["run", "--manifests", str(one_image_manifest(tmp_path)), "--mode", "random"]
    args += ["--iters", "1", "--outdir", str(tmp_path / "out")]
    command = " ".join([str(ROOT / ".venv/bin/python"), "-m", "harness.cli", *args])
    proc = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "160"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "openmpi-debian-12-amd64 running" in proc.stdout
    assert "Report: harness report" in proc.stdout


@pytest.mark.lab
def test_one_line_per_iteration_when_not_a_terminal(lab, tmp_path):
    args = ["run", "--manifests", str(one_image_manifest(tmp_path)), "--mode", "random"]
    args += ["--iters", "2", "--outdir", str(tmp_path / "out")]
    proc = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-m", "harness.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [["random", "1/2"], ["random", "2/2"]]
    assert all("openmpi-debian-12-amd64 success" in line for line in lines)
    # the time left, from the iterations so far: none after the last
    assert [line.split()[2:4] for line in lines][-1] == ["(eta", "0:00:00)"]
    assert lines[0].split()[2] == "(eta" and lines[0].split()[3] != "0:00:00)"
    recs = [json.loads(x) for x in (tmp_path / "out/records.jsonl").read_text().splitlines()]
    assert len(recs) == 2


def every_command() -> list[tuple[str, ...]]:
    paths = [path for path, _ in subparsers(cli.build_parser()) if path]
    own = [tuple(name.split()) for name, _ in own_parsers()]
    return sorted(set(paths) | set(own))


def test_every_subcommand_has_its_own_help():
    from tests.conftest import cli as run_cli

    for path in every_command():
        proc = run_cli(*path, "--help")
        assert proc.returncode == 0, (path, proc.stderr)
        assert proc.stdout.startswith(f"usage: harness {' '.join(path)} "), (path, proc.stdout)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["run"], "required: --mode"),
        (["run", "--mode", "basic", "--iters", "abc"], "--iters: invalid int value"),
        (["report"], "required: outdirs"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["records"], "required: records_command"),
        (["census", "--np"], "--np: expected one argument"),
    ],
)
def test_usage_errors_are_one_line(argv, fragment):
    from tests.conftest import cli as run_cli

    proc = run_cli(*argv)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("harness: error: ") and fragment in line, line
    assert "usage:" not in proc.stderr
