"""harness.report: loading records, rates and Wilson intervals, report files, several outdirs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from harness import report
from harness.classify import REASONS
from harness.errors import HarnessError
from harness.records import Record, Timings, append, records_path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rec(mode: str, i: int, reason: str, run_s: float = 1.0, **kw) -> Record:
    ok = reason == "success"
    fields = dict(
        iteration=i,
        mode=mode,
        seed=7 + i,
        host={
            "hostname": "node001",
            "arch": "x86_64",
            "os": "Debian GNU/Linux 12",
            "glibc": "2.36",
            "mpi": "Open MPI 4.1.4",
        },
        candidates=["ghcr.io/lab/lammps:ubuntu22.04-openmpi", "ghcr.io/lab/lammps:rocky8-mpich"],
        image="ghcr.io/lab/lammps:ubuntu22.04-openmpi",
        artifact="ghcr.io/lab/compspec:ubuntu22.04-openmpi",
        artifact_digest="sha256:" + "a" * 64,
        image_digest="sha256:" + "b" * 64,
        executor="apptainer",
        launcher="mpirun",
        mpi_model="hybrid",
        np=4,
        argv=["mpirun", "-np", "4", "apptainer", "exec", "x.sif", "lmp", "-in", "in.lj"],
        exit_code=0 if ok else 1,
        signal=None,
        timed_out=reason == "timeout",
        pulled=True,
        timings=Timings(select_s=0.01, pull_s=2.0, run_s=run_s, wrapper_s=run_s + 0.5),
        stdout_path="stdout.txt",
        stderr_path="stderr.txt",
        figures={
            "total_wall_time_s": run_s - 0.2,
            "loop_time_s": run_s - 0.4,
            "version": "2Aug2023",
        }
        if ok
        else {},
        reason=reason,
        evidence="Total wall time: 0:00:01" if ok else "error line",
        started_at="2025-11-25T12:00:00+00:00",
        # an event with keys that also exist at top level must not confuse the loader
        events=[{"what": "exit", "exit_code": 99, "mode": "bogus", "reason": "bogus"}],
    )
    fields.update(kw)
    return Record(**fields)


def fill(outdir: Path, mode: str, reasons: dict[str, int], run_s=None) -> None:
    outdir.mkdir(parents=True, exist_ok=True)
    i = 0
    for reason, k in reasons.items():
        for _ in range(k):
            t = run_s[i] if run_s else 1.0 + i
            append(outdir, rec(mode, i, reason, run_s=t))
            i += 1


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    out = tmp_path / "run1"
    fill(out, "basic", {"success": 3, "arch": 1}, run_s=[10.0, 20.0, 40.0, 0.5])
    fill(out, "random", {"success": 1, "mpi": 2, "os-abi": 3, "timeout": 1})
    fill(out, "descriptive-mpi", {"success": 5})
    fill(out, "zeta-experimental", {"unknown": 2})
    fill(out, "alpha-experimental", {"pull": 1})
    return out


def test_reasons_come_from_classify():
    assert report.reason_order([])[: len(REASONS)] == list(REASONS)
    assert report.reason_order(["zzz", "aaa"])[-2:] == ["aaa", "zzz"]


def test_load_columns_and_values(outdir: Path):
    df = report.load([outdir])
    assert list(df.columns) == list(report.COLUMNS)
    assert len(df) == 4 + 7 + 5 + 2 + 1
    assert set(df["outdir"].astype(str)) == {"run1"}
    basic = df[df["mode"] == "basic"].sort_values("iteration")
    assert basic["reason"].astype(str).tolist() == ["success"] * 3 + ["arch"]
    assert basic["run_s"].tolist() == [10.0, 20.0, 40.0, 0.5]
    assert basic["wrapper_s"].tolist() == [10.5, 20.5, 40.5, 1.0]
    assert basic["exit_code"].tolist() == [0, 0, 0, 1]
    assert basic["total_wall_time_s"].iloc[0] == pytest.approx(9.8)
    assert basic["loop_time_s"].iloc[0] == pytest.approx(9.6)
    assert math.isnan(basic["total_wall_time_s"].iloc[3])  # failures have no figures
    assert (df["pull_s"] == 2.0).all()
    assert basic["image"].iloc[0] == "ghcr.io/lab/lammps:ubuntu22.04-openmpi"


@pytest.mark.parametrize("events", [[], [{"exit_code": 3, "mode": "x"}]])
def test_load_same_result_for_unsorted_and_sorted_lines(tmp_path: Path, events):
    """Lines not written by Record.to_json (other key order) take the full-parse path."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    for i, reason in enumerate(["success", "success", "gpu"]):
        append(a, rec("basic", i, reason, events=events))
    b.mkdir()
    with records_path(b).open("w") as fh:
        for line in records_path(a).read_text().splitlines():
            d = json.loads(line)
            fh.write(json.dumps(dict(reversed(list(d.items())))) + "\n")
    cols = ["mode", "iteration", "reason", "exit_code", "run_s", "pull_s"]
    da, db = report.load([a])[cols], report.load([b])[cols]
    assert da.astype(str).values.tolist() == db.astype(str).values.tolist()


def test_wilson_hand_computed():
    # 8 of 10, z = 1.959964: centre = (0.8 + z²/20) / (1 + z²/10) = 0.716740,
    # half = z·sqrt(0.016 + z²/400) / (1 + z²/10) = 0.226578  ->  [0.490162, 0.943318]
    lo, hi = report.wilson(8, 10)
    assert lo == pytest.approx(0.4901625, abs=1e-6)
    assert hi == pytest.approx(0.9433178, abs=1e-6)
    lo, hi = report.wilson(0, 4)
    assert lo == 0.0
    assert hi == pytest.approx(0.4898908, abs=1e-6)  # z²/(n+z²) for 0 successes
    assert report.wilson(5, 5)[1] == pytest.approx(1.0)
    assert report.wilson(0, 0) == (0.0, 1.0)


def test_summarize_counts_rates_order(outdir: Path):
    s = report.summarize(report.load([outdir]))
    assert s["schema"] == "compat-harness/report/1"
    assert list(s["modes"]) == [
        "random",
        "basic",
        "descriptive-mpi",
        "alpha-experimental",
        "zeta-experimental",
    ]
    basic = s["modes"]["basic"]
    assert (basic["n"], basic["success"]) == (4, 3)
    assert basic["rate"] == pytest.approx(0.75)
    assert basic["ci95"] == pytest.approx(list(report.wilson(3, 4)))
    assert basic["reasons"] == {"success": 3, "arch": 1}
    assert basic["median_wall_s"] == pytest.approx(20.0)  # the 0.5 s failure is not counted
    rnd = s["modes"]["random"]
    assert list(rnd["reasons"]) == ["success", "os-abi", "mpi", "timeout"]  # REASONS order
    assert rnd["rate"] == pytest.approx(1 / 7)
    assert s["modes"]["zeta-experimental"]["median_wall_s"] is None
    assert s["modes"]["zeta-experimental"]["rate"] == 0.0
    assert s["outdirs"] == [{"label": "run1", "path": str(outdir), "records": 19}]
    json.dumps(s, allow_nan=False)  # strict JSON: no NaN anywhere


def test_several_outdirs(tmp_path: Path, outdir: Path):
    other = tmp_path / "run2"
    fill(other, "basic", {"success": 1, "gpu": 1})
    fill(other, "platform", {"success": 2})
    df = report.load([outdir, other])
    assert df["outdir"].astype(str).value_counts().to_dict() == {"run1": 19, "run2": 4}
    s = report.summarize(df)
    keys = list(s["modes"])
    assert "run1:basic" in keys and "run2:basic" in keys and "basic" not in keys
    assert "platform" in keys and "random" in keys  # modes in one outdir only stay plain
    assert keys.index("run1:basic") < keys.index("run2:basic")  # outdirs in the given order
    assert s["modes"]["run2:basic"]["reasons"] == {"success": 1, "gpu": 1}
    assert s["modes"]["run1:basic"]["n"] == 4
    assert [o["label"] for o in s["outdirs"]] == ["run1", "run2"]


def test_outdirs_with_same_name_stay_distinct(tmp_path: Path):
    a, b = tmp_path / "x" / "out", tmp_path / "y" / "out"
    fill(a, "basic", {"success": 1})
    fill(b, "basic", {"arch": 1})
    s = report.summarize(report.load([a, b]))
    assert set(s["modes"]) == {f"{a}:basic", f"{b}:basic"}


@pytest.mark.parametrize("cut", [700, -1, None])
def test_torn_last_line_is_ignored(outdir: Path, cut):
    line = rec("basic", 99, "success").to_json().encode()
    with records_path(outdir).open("ab") as fh:
        # crash mid-write: part of the line, or all of it but the newline (still valid JSON,
        # but records.repair() cuts it and the run repeats that iteration)
        fh.write(line[:cut] if cut else line)
    df = report.load([outdir])
    assert len(df) == 19
    assert report.summarize(df)["modes"]["basic"]["n"] == 4


def test_missing_or_bad_outdir(tmp_path: Path):
    with pytest.raises(HarnessError, match="nope"):
        report.load([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match=r"empty.*records\.jsonl|records\.jsonl.*empty"):
        report.load([tmp_path / "empty"])
    bad = tmp_path / "bad"
    bad.mkdir()
    records_path(bad).write_text('{"iteration": 1}\n')
    with pytest.raises(HarnessError, match="bad"):
        report.load([bad])
    (tmp_path / "list").mkdir()
    records_path(tmp_path / "list").write_text("[1, 2]\n")
    with pytest.raises(HarnessError):
        report.load([tmp_path / "list"])


def test_unreadable_records(outdir: Path, monkeypatch):
    real_open = Path.open

    def denied(self, *a, **k):
        if self.name == "records.jsonl":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *a, **k)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(HarnessError, match=r"cannot read .*run1/records\.jsonl: Permission"):
        report.load([outdir])


def test_write_files(tmp_path: Path, outdir: Path):
    df = report.load([outdir])
    s = report.summarize(df)
    dest = tmp_path / "rep"
    written = report.write(df, s, dest)
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "report.csv",
            "report.md",
            "report.json",
            "failures.png",
            "failures.svg",
            "walltimes.png",
            "walltimes.svg",
        ]
    )
    assert sorted(p.name for p in dest.iterdir()) == names  # no temp files left behind
    for p in written:
        assert p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG_MAGIC
        if p.suffix == ".svg":
            assert b"<svg" in p.read_bytes()[:2000]
    assert json.loads((dest / "report.json").read_text()) == s
    rows = list(csv.DictReader((dest / "report.csv").open()))
    assert [r["key"] for r in rows] == list(s["modes"])
    basic = next(r for r in rows if r["key"] == "basic")
    assert (basic["n"], basic["success"], basic["arch"], basic["mpi"]) == ("4", "3", "1", "0")
    assert float(basic["rate"]) == pytest.approx(0.75)
    assert float(basic["ci95_lo"]) == pytest.approx(report.wilson(3, 4)[0], abs=1e-6)
    assert float(basic["median_wall_s"]) == pytest.approx(20.0)
    assert all(r in rows[0] for r in REASONS)
    md = (dest / "report.md").read_text()
    assert "| `basic` | 4 | 3 | 75.0 %" in md
    assert "Wilson" in md
    assert "| mode |" in md and "timeout" in md


def test_write_is_atomic_on_error(tmp_path: Path, outdir: Path, monkeypatch):
    df = report.load([outdir])
    s = report.summarize(df)
    dest = tmp_path / "rep"
    report.write(df, s, dest)
    before = (dest / "failures.png").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", boom)
    s2 = report.summarize(report.load([outdir]))
    s2["modes"]["basic"]["n"] = 1000
    with pytest.raises(RuntimeError):
        report.write(df, s2, dest)
    assert (dest / "failures.png").read_bytes() == before  # old file intact
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # temp files removed


def test_write_empty_outdir(tmp_path: Path):
    out = tmp_path / "fresh"
    out.mkdir()
    records_path(out).write_text("")
    df = report.load([out])
    s = report.summarize(df)
    assert s["modes"] == {}
    written = report.write(df, s, out)
    assert (out / "walltimes.png").read_bytes()[:8] == PNG_MAGIC
    assert len(written) == 7


def test_render_tables(outdir: Path, tmp_path: Path):
    other = tmp_path / "run2"
    fill(other, "basic", {"gpu": 2})
    s = report.summarize(report.load([outdir, other]))
    console = Console(record=True, width=200)
    report.render(s, console)
    text = console.export_text()
    assert "run1" in text and "run2" in text
    assert "75.0 % [" in text  # rate with its interval
    assert "descriptive-mpi" in text and "os-abi" in text
    assert "20.00 s" in text


def test_main_json_and_default_dest(outdir: Path, tmp_path: Path, capsys):
    assert report.main([str(outdir)], as_json=True, dest=None) == 0
    out = capsys.readouterr().out
    data = json.loads(out)  # nothing but the JSON on stdout
    assert data["modes"]["basic"]["success"] == 3
    assert (outdir / "report.json").exists() and (outdir / "failures.svg").exists()
    dest = tmp_path / "elsewhere"
    assert report.main([str(outdir)], as_json=False, dest=str(dest)) == 0
    assert "basic" in capsys.readouterr().out
    assert (dest / "walltimes.png").exists()


def test_render_narrow_console_keeps_numbers_whole(outdir: Path):
    s = report.summarize(report.load([outdir]))
    s["modes"]["random"]["reasons"]["os-abi"] = 123456  # a wide count must not be cut
    console = Console(record=True, width=60)
    report.render(s, console)
    text = console.export_text()
    assert "failures by reason" in text  # counts moved to their own table
    assert "123456" in text
    assert all(len(line) <= 60 for line in text.splitlines())
