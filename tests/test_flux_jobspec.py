"""Jobspecs for the oldest Flux the harness meets: the Flux Operator's views ship flux-core 0.55.0.

The stand-in below has the signature and attribute semantics of flux-core 0.55.0's
`JobspecV1` (src/bindings/python/flux/job/Jobspec.py at tag v0.55.0): `from_command` takes only
the resource shape, everything else is set afterwards (its setters: duration, cwd,
environment, stdout/stderr; `setattr` prefixes "attributes."). Newer releases accept the same
calls (tests/test_flux.py runs them against a real instance where flux-core is installed), so
the harness builds every jobspec this way; this test keeps that path honest in CI, where no
flux-core exists.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.run.executors import flux as fluxexec
from harness.run.executors import flux_jobspec
from harness.run.executors.base import Job
from harness.run.executors.core import job_name
from tests.conftest import ROOT


def _set_treedict(d: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for part in parents:
        d = d.setdefault(part, {})
    d[last] = value


class JobspecV1_0_55:
    """What flux-core 0.55.0's JobspecV1 accepts (no keyword beyond the resource shape)."""

    def __init__(self, resources, tasks, **kwargs):
        self.jobspec = {"resources": resources, "tasks": tasks, "version": 1, **kwargs}

    @classmethod
    def from_command(
        cls,
        command,
        num_tasks=1,
        cores_per_task=1,
        gpus_per_task=None,
        num_nodes=None,
        exclusive=False,
    ):
        if not isinstance(num_tasks, int) or num_tasks < 1:
            raise ValueError("task count must be a integer >= 1")
        core = {"type": "core", "count": cores_per_task}
        if num_nodes is not None:
            slot = {"type": "slot", "count": math.ceil(num_tasks / num_nodes), "label": "task"}
            slot["with"] = [core]
            resources = [{"type": "node", "count": num_nodes, "with": [slot]}]
            count = {"total": num_tasks} if num_tasks % num_nodes else {"per_slot": 1}
        else:
            resources = [{"type": "slot", "count": num_tasks, "label": "task", "with": [core]}]
            count = {"per_slot": 1}
        tasks = [{"command": command, "slot": "task", "count": count}]
        return cls(resources, tasks, attributes={"system": {"duration": 0}})

    def setattr(self, key, val):
        if not key.startswith("attributes."):
            key = "attributes." + key
        _set_treedict(self.jobspec, key, val)

    def setattr_shell_option(self, key, val):
        self.setattr("system.shell.options." + key, val)

    @property
    def duration(self):
        return self.jobspec["attributes"]["system"]["duration"]

    @duration.setter
    def duration(self, value):
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError("duration must be a non-negative number here")
        self.setattr("system.duration", float(value))

    @property
    def cwd(self):
        return self.jobspec["attributes"]["system"].get("cwd")

    @cwd.setter
    def cwd(self, value):
        if not isinstance(value, str):
            raise ValueError("cwd must be a string")
        self.setattr("system.cwd", value)

    @property
    def environment(self):
        return self.jobspec["attributes"]["system"].get("environment")

    @environment.setter
    def environment(self, value):
        self.setattr("system.environment", value)

    def _set_io_path(self, iotype, stream, path):
        self.setattr_shell_option(f"{iotype}.{stream}.type", "file")
        self.setattr_shell_option(f"{iotype}.{stream}.path", os.fspath(path))

    stdout = property(None, lambda self, path: self._set_io_path("output", "stdout", path))
    stderr = property(None, lambda self, path: self._set_io_path("output", "stderr", path))


@pytest.fixture
def flux055(monkeypatch):
    stand_in = SimpleNamespace(job=SimpleNamespace(JobspecV1=JobspecV1_0_55))
    monkeypatch.setattr(flux_jobspec, "bindings", lambda: stand_in)
    return stand_in


def test_jobspec_for_builds_on_the_0_55_signature(flux055):
    js = flux_jobspec.jobspec_for(
        ["apptainer", "exec", "x.sif", "lmp"],
        num_tasks=4,
        num_nodes=2,
        duration=300,
        environment={"A": "1"},
        cwd="/results",
        name="harness-basic-iter-0000.ab12",
        stdout="/results/logs/basic/iter-0000.ab12.out",
        stderr="/results/logs/basic/iter-0000.ab12.err",
    )
    system = js.jobspec["attributes"]["system"]
    assert system["duration"] == 300.0 and system["cwd"] == "/results"
    assert system["environment"] == {"A": "1"}
    assert system["job"] == {"name": "harness-basic-iter-0000.ab12"}
    output = system["shell"]["options"]["output"]
    assert output["stdout"] == {"type": "file", "path": "/results/logs/basic/iter-0000.ab12.out"}
    assert output["stderr"]["path"].endswith(".err")
    (node,) = js.jobspec["resources"]
    assert node["type"] == "node" and node["count"] == 2


def test_the_executors_jobspec_on_0_55(flux055, tmp_path):
    ex = fluxexec.FluxExecutor(output="file", nodes=1)
    ex._preflighted, ex._runtime, ex._pmi = True, "/usr/bin/apptainer", None
    job = Job(
        Path("/sif/x.sif"),
        ("lmp", "-in", "in.lj"),
        2,
        "/opt/lab",
        "hybrid",
        60.0,
        tmp_path / "iter-0001.aa.out",
        tmp_path / "iter-0001.aa.err",
        flux={"shell_options": {"pmi": "pmix"}},
    )
    spec = ex.jobspec(job).jobspec
    (task,) = spec["tasks"]
    assert task["command"][:2] == ["/usr/bin/apptainer", "exec"]
    assert task["command"][-3:] == ["lmp", "-in", "in.lj"]
    system = spec["attributes"]["system"]
    assert system["shell"]["options"]["pmi"] == "pmix"
    assert system["job"]["name"] == job_name(job.stdout)
    assert system["environment"]["PATH"] == os.environ["PATH"]
    assert system["duration"] == 60.0


def test_no_other_jobspec_construction():
    """Every jobspec goes through jobspec_for: a keyword of newer releases cannot creep back."""
    calls = []
    for path in (ROOT / "harness").rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"JobspecV1\s*\.\s*from_\w+\(|JobspecV1\(", line):
                calls.append(f"{path.relative_to(ROOT)}:{n}")
    assert len(calls) == 1 and calls[0].startswith("harness/run/executors/flux_jobspec.py"), calls
