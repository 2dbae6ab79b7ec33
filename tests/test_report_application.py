"""The report's census columns are the application's headline figures of merit, read from the
application its records name (harness/data/applications/NAME.yaml `column`): a NetPIPE census
shows NetPIPE's figures, a LAMMPS one LAMMPS', a record without one (before record/3) LAMMPS'."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from harness import report
from harness.records import CENSUS_FILE, CENSUS_SCHEMA, append, records_path
from harness.report.markdown import markdown
from tests.test_report import rec

IMAGE = "ghcr.io/lab/lammps:openmpi-debian-12-amd64"
NETPIPE_RUNS = [
    {"max_bandwidth_mbps": 50000.0, "latency_us": 1.2, "blocks": 32},
    {"max_bandwidth_mbps": 54000.0, "latency_us": 1.0, "blocks": 32},
    {"max_bandwidth_mbps": 60000.0, "latency_us": 1.1, "blocks": 32},
]


def census(out: Path, app: str, runs: list[dict]) -> Path:
    """A census of one image written as `harness census --application APP` writes it."""
    out.mkdir(parents=True)
    for i, figures in enumerate(runs):
        append(out, rec("census", i, "success", image=IMAGE, figures=figures, application=app))
    body = {"schema": CENSUS_SCHEMA, "manifests": "m.yaml", "host": {}, "images": [IMAGE]}
    body |= {"repeat": len(runs), "seed": 1, "modes": {"basic": {"candidates": [IMAGE]}}}
    (out / CENSUS_FILE).write_text(json.dumps(body))
    return out


def rendered(summary: report.Summary) -> tuple[str, str]:
    """The report's markdown and its console tables."""
    console = Console(record=True, width=250)
    report.render(summary, console)
    return markdown(summary), console.export_text()


def test_netpipe_census_shows_netpipe_figures(tmp_path: Path):
    s = report.summarize(report.load([census(tmp_path / "np", "netpipe", NETPIPE_RUNS)]))
    row = s.images[IMAGE]
    assert row.application == "netpipe"
    assert row.figures == {"max_bandwidth_mbps": 54000.0, "latency_us": 1.1}  # medians
    body = s.to_json()["images"][IMAGE]
    assert body["max_bandwidth_mbps"] == 54000.0 and body["latency_us"] == 1.1
    assert "loop_time_s" not in body and "timesteps_per_s" not in body
    md, text = rendered(s)
    assert "max bandwidth (median)" in md and "latency (median)" in md
    assert "| 5.4e+04 | 1.1 |" in md
    assert "max bandwidth" in text and "latency" in text
    for lammps in ("loop time", "timesteps/s"):
        assert lammps not in md and lammps not in text


def test_lammps_census_and_old_records_keep_lammps_columns(tmp_path: Path):
    runs = [{"loop_time_s": 10.0, "timesteps_per_s": 100.0}, {"loop_time_s": 12.0}]
    out = census(tmp_path / "lmp", "lammps", runs)
    # a record from before record/3 has no application: it ran LAMMPS
    path = records_path(out)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[1].pop("application")
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    s = report.summarize(report.load([out]))
    body = s.to_json()["images"][IMAGE]
    assert body["loop_time_s"] == 11.0 and body["timesteps_per_s"] == 100.0  # JSON keys kept
    md, text = rendered(s)
    assert "loop time (median)" in md and "| 11.00 s | 100 |" in md
    assert "timesteps/s" in text and "max bandwidth" not in md + text


def test_two_applications_side_by_side(tmp_path: Path):
    """Two outdirs, one per application: each image row has its own figures, the markdown
    table the columns of both, a dash where an application has no such figure."""
    netpipe = census(tmp_path / "np", "netpipe", NETPIPE_RUNS)
    lammps = census(tmp_path / "lmp", "lammps", [{"loop_time_s": 3.0, "timesteps_per_s": 9.0}])
    s = report.summarize(report.load([netpipe, lammps]))
    labels = [c.label for c in s.columns]
    assert labels == ["max bandwidth", "latency", "loop time", "timesteps/s"]
    md, _ = rendered(s)
    assert "| 5.4e+04 | 1.1 | – | – |" in md and "| – | – | 3.00 s | 9 |" in md
