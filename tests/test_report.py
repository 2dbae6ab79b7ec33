"""harness.report: aggregating records, rates and intervals, report files, several outdirs,
census (per-image table, expected rates, measured-outside flag), comparison, filters, FoM export.
The command line, mode order, report.html and the notebook API: tests/test_report_cli.py."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from rich.console import Console

from harness import report
from harness.errors import HarnessError
from harness.judge.reasons import REASONS
from harness.judge.reasons import reason as reason_of
from harness.records import CENSUS_FILE, CENSUS_SCHEMA, Record, Timings, append, records_path

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def build(*outdirs: Path, **filters) -> report.Summary:
    """The summary of the outdirs' records, as `harness report` builds it."""
    return report.summarize(report.load(list(outdirs), report.Filters.of(**filters)))


def summary(*outdirs: Path, **filters) -> dict:
    """The summary in its JSON form (report.json)."""
    return build(*outdirs, **filters).to_json()


def compared(*outdirs: Path) -> dict:
    """The comparison of the outdirs in its JSON form."""
    return {k: c.to_json() for k, c in report.compare_outdirs(build(*outdirs)).items()}


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


def test_reasons_come_from_the_reasons_data():
    assert report.reason_order([]) == list(REASONS)
    assert "infra" in report.reason_order([])
    assert report.reason_order(["zzz", "aaa"])[-2:] == ["aaa", "zzz"]
    for r in REASONS:
        assert report.reason_colour(r) == reason_of(r).colour
        assert report.reason_help(r) == reason_of(r).description
    # an unknown reason (an old record's) still gets a colour, not one of a known reason
    fallback = report.reason_colour("zzz", ["aaa", "zzz"])
    assert fallback.startswith("#") and fallback not in {reason_of(r).colour for r in REASONS}
    assert report.reason_help("zzz") is None


@pytest.mark.parametrize("events", [[], [{"exit_code": 3, "mode": "x"}]])
def test_same_summary_for_unsorted_and_sorted_lines(tmp_path: Path, events):
    """Lines not written by Record.to_json (other key order) give the same summary."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    for i, reason in enumerate(["success", "success", "gpu"]):
        append(a, rec("basic", i, reason, events=events))
    b.mkdir()
    with records_path(b).open("w") as fh:
        for line in records_path(a).read_text().splitlines():
            d = json.loads(line)
            fh.write(json.dumps(dict(reversed(list(d.items())))) + "\n")
    sa, sb = summary(a), summary(b)
    assert sa["modes"] == {k: {**m, "outdir": "a"} for k, m in sb["modes"].items()}
    assert sa["modes"]["basic"]["reasons"] == {"success": 2, "gpu": 1}
    assert sa["modes"]["basic"]["median_wall_s"] == pytest.approx(1.0)


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
    s = summary(outdir)
    assert s["schema"] == "compat-harness/report/2"
    assert list(s["modes"]) == [
        "random",
        "basic",
        "descriptive-mpi",
        "zeta-experimental",  # modes no modes file names: in the order they were run
        "alpha-experimental",
    ]
    basic = s["modes"]["basic"]
    assert (basic["n"], basic["success"]) == (4, 3)
    assert basic["rate"] == pytest.approx(0.75)
    assert basic["ci95"] == pytest.approx(list(report.wilson(3, 4)))
    assert basic["reasons"] == {"success": 3, "arch": 1}
    assert (basic["runs"], basic["excluded"]) == (4, 0)
    assert basic["median_wall_s"] == pytest.approx(20.0)  # the 0.5 s failure is not counted
    rnd = s["modes"]["random"]
    assert list(rnd["reasons"]) == ["success", "os-abi", "mpi", "timeout"]  # REASONS order
    assert rnd["rate"] == pytest.approx(1 / 7)
    assert s["modes"]["zeta-experimental"]["median_wall_s"] is None
    assert s["modes"]["zeta-experimental"]["rate"] == 0.0
    assert s["outdirs"] == [{"label": "run1", "path": str(outdir), "records": 19}]
    assert "images" not in s and "expected" not in s  # no census in this outdir
    json.dumps(s, allow_nan=False)  # strict JSON: no NaN anywhere


def test_several_outdirs(tmp_path: Path, outdir: Path):
    other = tmp_path / "run2"
    fill(other, "basic", {"success": 1, "gpu": 1})
    fill(other, "platform", {"success": 2})
    s = summary(outdir, other)
    assert [(o["label"], o["records"]) for o in s["outdirs"]] == [("run1", 19), ("run2", 4)]
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
    s = summary(a, b)
    assert set(s["modes"]) == {f"{a}:basic", f"{b}:basic"}


@pytest.mark.parametrize("cut", [700, -1, None])
def test_torn_last_line_is_ignored(outdir: Path, cut):
    line = rec("basic", 99, "success").to_json().encode()
    with records_path(outdir).open("ab") as fh:
        # crash mid-write: part of the line, or all of it but the newline (still valid JSON,
        # but records.repair() cuts it and the run repeats that iteration)
        fh.write(line[:cut] if cut else line)
    s = summary(outdir)
    assert s["outdirs"][0]["records"] == 19
    assert s["modes"]["basic"]["n"] == 4


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
    with pytest.raises(HarnessError, match=r"report: .*run1/records\.jsonl: Permission"):
        report.load([outdir])


def test_write_files(tmp_path: Path, outdir: Path):
    built = build(outdir)
    s = built.to_json()
    dest = tmp_path / "rep"
    written = report.write(built, dest)
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "report.csv",
            "report.md",
            "report.json",
            "report.html",
            "failures.png",
            "failures.svg",
            "walltimes.png",
            "walltimes.svg",
            "verdict.png",
            "verdict.svg",
        ]
    )
    assert sorted(p.name for p in dest.iterdir()) == names  # no temp files left behind
    for p in written:
        assert p.stat().st_size > 0
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG_MAGIC
        if p.suffix == ".svg":
            assert b"<svg" in p.read_bytes()[:2000]
    assert json.loads((dest / "report.json").read_text()) == json.loads(json.dumps(s))
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
    dest = tmp_path / "rep"
    report.write(build(outdir), dest)
    before = {p.name: p.read_bytes() for p in dest.iterdir()}

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", boom)
    s2 = build(outdir)
    s2.modes["basic"].n = 1000
    with pytest.raises(RuntimeError):
        report.write(s2, dest)
    # every file is as it was (the figures are drawn before any file is replaced)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before


def test_write_empty_outdir(tmp_path: Path):
    out = tmp_path / "fresh"
    out.mkdir()
    records_path(out).write_text("")
    s = build(out)
    assert s.modes == {}
    written = report.write(s, out)
    assert (out / "walltimes.png").read_bytes()[:8] == PNG_MAGIC
    assert len(written) == 10


def test_render_tables(outdir: Path, tmp_path: Path):
    other = tmp_path / "run2"
    fill(other, "basic", {"gpu": 2})
    s = build(outdir, other)
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
    s = build(outdir)
    s.modes["random"].reasons["os-abi"] = 123456  # a wide count must not be cut
    console = Console(record=True, width=60)
    report.render(s, console)
    text = console.export_text()
    assert "failures by reason" in text  # counts moved to their own table
    assert "123456" in text
    assert all(len(line) <= 60 for line in text.splitlines())
    basic = s.modes["basic"]  # the time-to-solution moved to its own table, whole
    assert report.formats.tts_ci(basic.median_wall_s, basic.tts_ci95) in text


# --------------------------------------------------------------------------- infra, census

LAB = "127.0.0.1/lab/lammps-matrix:"
A = LAB + "openmpi-debian-12-amd64"
B = LAB + "openmpi-debian-gpu-11-amd64"
C = LAB + "mpich-debian-12-amd64"
D = LAB + "openmpi-debian-13-amd64"
E = LAB + "openmpi-debian-12-arm64"  # a candidate the census never ran
F = LAB + "none-debian-12-amd64"  # only infra failures: no counted census run


def test_infra_is_left_out_of_n(tmp_path: Path):
    out = tmp_path / "run"
    fill(out, "basic", {"success": 3, "gpu": 1, "infra": 2})
    s = summary(out)
    basic = s["modes"]["basic"]
    assert (basic["n"], basic["success"], basic["runs"], basic["excluded"]) == (4, 3, 6, 2)
    assert basic["rate"] == pytest.approx(0.75)
    assert basic["ci95"] == pytest.approx(list(report.wilson(3, 4)))
    assert basic["reasons"] == {"success": 3, "gpu": 1, "infra": 2}
    report.write(build(out), out)
    row = next(csv.DictReader((out / "report.csv").open()))
    assert (row["n"], row["infra"], row["runs"]) == ("4", "2", "6")
    md = (out / "report.md").read_text()
    head = next(line for line in md.splitlines() if line.startswith("| mode |"))
    # its own column, after the counted failures (then time-to-solution, its CI, regret)
    assert head.split(" | ")[-4] == "infra"
    assert "| `basic` | 4 | 3 | 75.0 %" in md
    assert "- `infra`: " in md and "(not counted in n)" in md


def crec(mode: str, i: int, image: str, reason: str, evidence: str = "", **figures) -> Record:
    """A record of `image` with `reason`; successes carry the given figures of merit."""
    return rec(
        mode,
        i,
        reason,
        image=image,
        evidence=evidence or ("Total wall time: 0:00:10" if reason == "success" else reason),
        figures=figures if reason == "success" else {},
    )


CENSUS_RUNS = [
    (A, "success", "", {"loop_time_s": 10.0, "timesteps_per_s": 100.0}),
    (A, "success", "", {"loop_time_s": 12.0, "timesteps_per_s": 50.0}),
    (A, "success", "", {"loop_time_s": 20.0, "timesteps_per_s": 80.0}),
    (B, "success", "", {"loop_time_s": 30.0}),
    (B, "gpu", "GPU package missing", {}),
    (B, "gpu", "GPU package missing", {}),
    (B, "infra", "node lost", {}),
    (C, "mpi-singleton", "ev-1", {}),
    (C, "mpi-singleton", "ev-2", {}),
    (C, "mpi-singleton", "ev-2", {}),
    (D, "success", "", {}),
    (D, "arch", "exec format error", {}),
    (D, "mpi", "MPI_Init failed", {}),
    (D, "mpi", "MPI_Init failed", {}),
    (F, "infra", "registry down", {}),
    (F, "infra", "registry down", {}),
]

CANDIDATES = {
    "random": [A, B, C, D, E, F],
    "basic": [A, B],
    "platform": [B, C, D],
    "platform-version": [],
    "descriptive-basic": None,
    "descriptive-mpi": [A],
    "zz-custom": [E],
}


def write_census(out: Path, runs=CENSUS_RUNS, candidates=CANDIDATES) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for i, (image, reason_, evidence, figures) in enumerate(runs):
        append(out, crec("census", i, image, reason_, evidence, **figures))
    body = {
        "schema": CENSUS_SCHEMA,
        "manifests": "manifests.yaml",
        "host": {"io.archspec.cpu.target": "amd64"},
        "images": [A, B, C, D, E, F],
        "repeat": 3,
        "seed": 11,
        "modes": {
            m: {"candidates": c}
            if c is not None
            else {"candidates": None, "error": "host has no gpu key"}
            for m, c in candidates.items()
        },
    }
    (out / CENSUS_FILE).write_text(json.dumps(body))


def write_sampled(out: Path, mode: str, outcomes: dict[str, int]) -> None:
    """Sampled runs of a mode: successes on A, everything else on B."""
    i = 0
    for reason_, k in outcomes.items():
        for _ in range(k):
            image = A if reason_ == "success" else B
            append(out, crec(mode, i, image, reason_, **{"loop_time_s": 9.0}))
            i += 1


def census_outdir(out: Path) -> Path:
    """A census and three sampled modes."""
    write_census(out)
    write_sampled(out, "random", {"success": 1, "gpu": 9})
    write_sampled(out, "basic", {"success": 6, "arch": 4})
    write_sampled(out, "descriptive-mpi", {"success": 7, "mpi": 3, "infra": 2})
    return out


@pytest.fixture
def census_dir(tmp_path: Path) -> Path:
    return census_outdir(tmp_path / "lab")


def test_binomial_interval_hand_computed():
    # Bin(10, 1/2): P(X <= 1) = 11/1024 = 0.0107 < 2.5 % <= P(X <= 2) = 56/1024; symmetric
    assert report.binomial_interval(10, 0.5) == (2, 8)
    # Bin(20, 0.9): P(X <= 14) = 0.0113, P(X <= 15) = 0.0432; P(X >= 20) = 0.9^20 = 0.1216
    assert report.binomial_interval(20, 0.9) == (15, 20)
    # Bin(30, 0.2): P(X >= 11) = 0.02562 is just above 2.5 %, P(X >= 12) = 0.00949 below
    assert report.binomial_interval(30, 0.2) == (2, 11)
    assert report.binomial_interval(10, 0.0) == (0, 0)
    assert report.binomial_interval(10, 1.0) == (10, 10)
    assert report.binomial_interval(0, 0.3) == (0, 0)
    with pytest.raises(ValueError):
        report.binomial_interval(10, 1.5)


def test_binomial_interval_matches_exact_sums():
    """Against the definition, summed with exact integers, for many n and p."""
    for n in (1, 2, 7, 25, 60):
        for p in (0.01, 0.1, 0.37, 0.5, 0.83, 0.99):
            pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
            lo = min(k for k in range(n + 1) if sum(pmf[: k + 1]) >= 0.025)
            hi = max(k for k in range(n + 1) if sum(pmf[k:]) >= 0.025)
            assert report.binomial_interval(n, p) == (lo, hi), (n, p)


def test_image_sort_key_os_version_then_variant():
    names = [
        LAB + "openmpi-debian-gpu-12-amd64",
        LAB + "openmpi-debian-13-amd64",
        "weird-image",
        LAB + "mpich-debian-12-amd64",
        "ghcr.io/x/lammps:rocky8-openmpi4.1-amd64",
        LAB + "openmpi-debian-11-amd64",
        LAB + "openmpi-debian-12-arm64",
        "ghcr.io/x/lammps:ubuntu22.04-openmpi4.1-amd64",
        "another",
    ]
    order = [report.image_tag(n) for n in sorted(names, key=report.image_sort_key)]
    assert order == [
        "rocky8-openmpi4.1-amd64",
        "openmpi-debian-11-amd64",
        "mpich-debian-12-amd64",  # 12: the variants by the rest of the tag
        "openmpi-debian-12-arm64",
        "openmpi-debian-gpu-12-amd64",
        "openmpi-debian-13-amd64",
        "ubuntu22.04-openmpi4.1-amd64",
        "another",  # no version: by name, last
        "weird-image",
    ]
    assert report.image_os_version(LAB + "openmpi-debian-gpu-12-amd64") == (
        (12,),
        "openmpi-debian-gpu-amd64",
    )
    assert report.image_os_version("lammps:ubuntu-22.04-amd64") == ((22, 4), "ubuntu-amd64")
    assert report.image_os_version("lammps:openmpi-amd64") is None  # the arch is no version


def test_census_expected_rates_hand_computed(census_dir: Path):
    s = summary(census_dir)
    # per-image census fractions, infra left out: A 3/3, B 1/3, C 0/3, D 1/4; E and F none
    exp = s["expected"]
    assert list(exp) == [
        "random",
        "basic",
        "platform",
        "platform-version",
        "descriptive-basic",
        "descriptive-mpi",
        "zz-custom",
    ]
    # random: (1 + 1/3 + 0 + 1/4) / 4 = 19/48, 6 candidates, E and F missing
    assert exp["random"]["rate"] == pytest.approx(19 / 48)
    assert exp["random"]["candidates"] == 6
    assert exp["random"]["missing"] == 2
    assert exp["random"]["missing_images"] == [E, F]
    assert exp["basic"]["rate"] == pytest.approx(2 / 3)  # (1 + 1/3) / 2
    assert exp["basic"]["candidates"] == 2 and exp["basic"]["missing"] == 0
    assert exp["platform"]["rate"] == pytest.approx(7 / 36)  # (1/3 + 0 + 1/4) / 3
    assert exp["platform-version"]["rate"] is None  # no candidate at all
    assert exp["platform-version"]["candidates"] == 0
    assert exp["descriptive-basic"]["rate"] is None  # no candidate set on the census host
    assert exp["descriptive-basic"]["candidates"] is None
    assert exp["descriptive-basic"]["error"] == "host has no gpu key"
    assert exp["descriptive-mpi"]["rate"] == pytest.approx(1.0)
    assert exp["zz-custom"] == {
        **exp["zz-custom"],
        "rate": None,
        "candidates": 1,
        "missing": 1,
        "measured": None,
        "outside": None,
    }


def test_census_images_table(census_dir: Path):
    s = summary(census_dir)
    assert "census" not in s["modes"]  # not a selection mode: not a mode row
    assert list(s["modes"]) == ["random", "basic", "descriptive-mpi"]
    img = s["images"]
    assert list(img) == [B, C, F, A, D]  # OS version 11, 12 (mpich, none, openmpi), 13
    assert (img[A]["n"], img[A]["success"], img[A]["reason"]) == (3, 3, None)
    assert img[A]["loop_time_s"] == pytest.approx(12.0)  # median of 10, 12, 20
    assert img[A]["timesteps_per_s"] == pytest.approx(80.0)  # median of 100, 50, 80
    # each measure's median with its interval: 3 runs give the whole range, which covers 75 %
    loop = img[A]["speed"]["loop_time_s"]
    assert loop == {"n": 3, "median": 12.0, "ci95": [10.0, 20.0], "coverage": 0.75}
    assert img[A]["speed"]["time_to_solution_s"]["n"] == 3
    assert img[B]["speed"]["time_to_solution_s"]["n"] == 1  # one success of three
    assert img[C]["speed"] == {}  # no success, no speed
    b = img[B]
    assert (b["n"], b["success"], b["runs"], b["excluded"]) == (3, 1, 4, 1)
    assert b["reasons"] == {"success": 1, "gpu": 2, "infra": 1}
    assert (b["reason"], b["evidence"]) == ("gpu", "GPU package missing")
    assert b["timesteps_per_s"] is None  # no success reported it
    assert (img[C]["reason"], img[C]["evidence"]) == ("mpi-singleton", "ev-2")  # 2 of 3 lines
    assert img[C]["rate"] == 0.0 and img[C]["loop_time_s"] is None
    assert (img[D]["reason"], img[D]["evidence"]) == ("mpi", "MPI_Init failed")  # 2 > 1 arch
    assert (img[F]["n"], img[F]["rate"], img[F]["reason"]) == (0, None, "infra")
    assert s["census"] == {
        "lab": {
            "manifests": "manifests.yaml",
            "repeat": 3,
            "seed": 11,
            "images": [A, B, C, D, E, F],
        }
    }


def test_measured_beside_expected_and_flag(census_dir: Path):
    exp = summary(census_dir)["expected"]
    # random: 1/10 measured, p = 19/48: P(X <= 0) = 0.0065, P(X <= 1) = 0.0489 -> [1, 7]
    r = exp["random"]
    assert r["measured"] == {"key": "random", "n": 10, "success": 1, "rate": 0.1}
    assert r["interval95_counts"] == [1, 7]
    assert r["interval95"] == pytest.approx([0.1, 0.7])
    assert r["outside"] is False
    # basic: 6/10 measured, p = 2/3 -> [4, 9]: inside
    assert exp["basic"]["interval95_counts"] == [4, 9] and exp["basic"]["outside"] is False
    # descriptive-mpi: p = 1 allows only 10/10; 7/10 (infra runs left out of n) is outside
    d = exp["descriptive-mpi"]
    assert d["measured"]["n"] == 10 and d["interval95_counts"] == [10, 10]
    assert d["outside"] is True
    # a mode without sampled runs has nothing to flag
    assert exp["platform"]["measured"] is None and exp["platform"]["outside"] is None


def test_flag_just_outside(tmp_path: Path):
    out = tmp_path / "lab"
    write_census(out)
    write_sampled(out, "random", {"gpu": 10})  # 0/10 with p = 19/48: P(X <= 0) = 0.0065
    exp = summary(out)["expected"]["random"]
    assert exp["interval95_counts"] == [1, 7] and exp["outside"] is True


def test_main_json_with_census(census_dir: Path, capsys):
    assert report.main([str(census_dir)], as_json=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"modes", "images", "expected"} <= set(data)
    for m in data["modes"].values():
        assert {"n", "success", "reasons"} <= set(m)
    assert data["modes"]["descriptive-mpi"]["reasons"] == {"success": 7, "mpi": 3, "infra": 2}
    assert data["modes"]["descriptive-mpi"]["n"] == 10
    assert "census" not in data["modes"]
    assert data["images"][B] == {**data["images"][B], "n": 3, "success": 1}
    assert data["images"][B]["reasons"] == {"success": 1, "gpu": 2, "infra": 1}
    for e in data["expected"].values():
        assert {"rate", "candidates"} <= set(e)
    assert data["expected"]["random"]["candidates"] == 6
    assert data["expected"]["descriptive-basic"]["rate"] is None
    names = {p.name for p in census_dir.iterdir()}
    assert {"images.png", "images.svg", "failures.png"} <= names
    assert "compare.png" not in names


def test_census_files_and_console(census_dir: Path, tmp_path: Path):
    s = build(census_dir)
    dest = tmp_path / "rep"
    written = {p.name for p in report.write(s, dest)}
    assert {"images.png", "images.svg"} <= written
    md = (dest / "report.md").read_text()
    assert "## Expected success rate from the census" in md
    assert "| `random` | 6 | 2 | 39.6 % | 1/10 = 10.0 % | 1–7 of 10 | inside |" in md
    assert "| `descriptive-mpi` | 1 | 0 | 100.0 % | 7/10 = 70.0 % | 10–10 of 10 | OUTSIDE |" in md
    assert "| `openmpi-debian-gpu-11-amd64` | 4 | 3 | 1 | 33.3 % | gpu |" in md
    assert "| `census`" not in md
    rows = {r["key"]: r for r in csv.DictReader((dest / "report.csv").open())}
    assert "census" not in rows
    assert rows["descriptive-mpi"]["expected_outside"] == "true"
    assert float(rows["basic"]["expected_rate"]) == pytest.approx(2 / 3)
    console = Console(record=True, width=220)
    report.render(s, console)
    text = console.export_text()
    assert "expected success rate from the census" in text and "OUTSIDE" in text
    assert "census, outcome per image" in text and "GPU package missing" in text
    # the images that ran, fastest first: A (3 runs) and B (1 run) take 1.00 s each
    assert "census, speed per image, fastest first" in text
    assert "## Census: speed per image, fastest first" in md
    # B, next, ran once: no interval to tell A from it
    assert "| 3 | 75 % | 1.00 s [1.00–1.00] | – | 12.00 s [10.00–20.00] |" in md


def test_failures_figure_markers_and_images_order(census_dir: Path):
    from matplotlib.container import ErrorbarContainer

    from harness.report import figures

    s = build(census_dir)
    plt, figs = figures.draw(s)
    try:
        ax = figs["failures"].axes[0]
        assert ax.get_xlabel() and ax.get_ylabel()
        assert [t.get_text() for t in ax.get_xticklabels()] == list(s.modes)
        assert all(float(t).is_integer() for t in ax.get_yticks())
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == 1
        line = bars[0].lines[0]
        # expected successes = rate x n: random 19/48 x 10, basic 2/3 x 10, descriptive-mpi 10
        assert list(line.get_ydata()) == pytest.approx([190 / 48, 20 / 3, 10.0])
        img = figs["images"].axes[0]
        assert img.get_xlabel() and img.get_ylabel()
        assert all(float(t).is_integer() for t in img.get_yticks())
        assert [t.get_text() for t in img.get_xticklabels()] == [
            "openmpi-debian-gpu-11-amd64",
            "mpich-debian-12-amd64",
            "none-debian-12-amd64",
            "openmpi-debian-12-amd64",
            "openmpi-debian-13-amd64",
        ]
    finally:
        for f in figs.values():
            plt.close(f)


def test_census_json_that_is_not_one(tmp_path: Path):
    out = tmp_path / "lab"
    write_census(out)
    (out / CENSUS_FILE).write_text('{"schema": "something/else", "modes": {}}')
    with pytest.raises(HarnessError, match=r"census\.json is not a census file"):
        report.load([out])
    (out / CENSUS_FILE).write_text("{not json")
    with pytest.raises(HarnessError, match=r"census\.json is not JSON"):
        report.load([out])


# --------------------------------------------------------------------------- compare


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "before", tmp_path / "after"
    fill(a, "basic", {"success": 3, "arch": 1})
    fill(a, "descriptive-mpi", {"success": 20})
    fill(a, "random", {"gpu": 2})
    fill(b, "basic", {"success": 1, "arch": 3})
    fill(b, "descriptive-mpi", {"success": 2, "mpi": 18, "infra": 5})
    fill(b, "platform", {"success": 1})
    return a, b


def test_compare_deltas_and_overlap(two_runs):
    a, b = two_runs
    c = compared(a, b)
    assert list(c) == ["random", "basic", "platform", "descriptive-mpi"]
    basic = c["basic"]
    assert (basic["baseline_outdir"], basic["other_outdir"]) == ("before", "after")
    assert (basic["baseline"], basic["other"]) == (0.75, 0.25)
    assert basic["delta"] == pytest.approx(-0.5)
    # Wilson: 3/4 -> [0.301, 0.954], 1/4 -> [0.046, 0.699]: they overlap
    assert basic["overlap"] is True
    d = c["descriptive-mpi"]
    # 20/20 -> [0.839, 1], 2/20 (infra left out of n) -> [0.028, 0.301]: they do not
    assert d["other_n"] == 20 and d["delta"] == pytest.approx(-0.9)
    assert d["overlap"] is False
    assert c["platform"]["baseline"] is None and c["platform"]["delta"] is None
    assert c["platform"]["overlap"] is None and c["platform"]["other"] == 1.0
    assert c["random"]["other"] is None and c["random"]["baseline"] == 0.0


def test_compare_three_outdirs_keys(two_runs, tmp_path: Path):
    a, b = two_runs
    c3 = tmp_path / "third"
    fill(c3, "basic", {"success": 4})
    c = compared(a, b, c3)
    assert "after:basic" in c and "third:basic" in c
    assert c["third:basic"]["delta"] == pytest.approx(0.25)
    assert all(v["baseline_outdir"] == "before" for v in c.values())


def test_main_compare(two_runs, tmp_path: Path, capsys):
    a, b = two_runs
    dest = tmp_path / "cmp"
    assert report.main([str(a), str(b)], True, str(dest), compare=True) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["compare"]["basic"] == {
        **data["compare"]["basic"],
        "baseline": 0.75,
        "other": 0.25,
        "delta": -0.5,
        "overlap": True,
    }
    assert json.loads((dest / "report.json").read_text())["compare"] == data["compare"]
    assert (dest / "compare.png").read_bytes()[:8] == PNG_MAGIC
    assert b"<svg" in (dest / "compare.svg").read_bytes()[:2000]
    md = (dest / "report.md").read_text()
    assert (
        "| `descriptive-mpi` | before | after | 100.0 % (n=20) | 10.0 % (n=20) | -90.0 pp | NO |"
        in md
    )
    assert report.main([str(a), str(b)], False, str(dest), compare=True) == 0
    text = capsys.readouterr().out
    assert "comparison" in text and "-50.0 pp" in text
    with pytest.raises(HarnessError, match="--compare needs at least two"):
        report.main([str(a)], False, str(dest), compare=True)


# --------------------------------------------------------------------------- filters, FoM


def test_filter_modes_keeps_census(census_dir: Path):
    s = summary(census_dir, modes=["basic"])
    assert list(s["modes"]) == ["basic"]
    assert list(s["expected"]) == ["basic"]
    assert s["expected"]["basic"]["rate"] == pytest.approx(2 / 3)
    assert s["images"][A]["n"] == 3  # census rows are kept
    assert s["filters"] == {"modes": ["basic"]}
    assert s["outdirs"][0]["records"] == 16 + 10 + 10 + 12
    assert s["outdirs"][0]["kept"] == 16 + 10


def test_filter_images_limits_candidates(census_dir: Path):
    tags = ["openmpi-debian-12-amd64", C]  # a tag or a full name
    s = summary(census_dir, images=tags)
    assert list(s["images"]) == [C, A]
    # random's candidates become A and C: (1 + 0) / 2
    assert s["expected"]["random"]["rate"] == pytest.approx(0.5)
    assert s["expected"]["random"]["candidates"] == 2
    assert s["expected"]["random"]["missing"] == 0
    assert s["expected"]["platform"]["rate"] == 0.0  # only C is left of B, C, D
    # sampled rows: only the successes ran A
    assert (s["modes"]["random"]["n"], s["modes"]["random"]["success"]) == (1, 1)
    assert s["modes"]["descriptive-mpi"]["reasons"] == {"success": 7}


def test_filter_reasons(census_dir: Path):
    s = summary(census_dir, reasons=["success", "gpu"])
    assert s["modes"]["random"]["reasons"] == {"success": 1, "gpu": 9}
    assert s["modes"]["basic"]["rate"] == 1.0  # the arch failures are left out
    assert C not in s["images"]
    assert s["images"][B]["reasons"] == {"success": 1, "gpu": 2}


def test_main_filters(census_dir: Path, tmp_path: Path, capsys):
    report.main([str(census_dir)], True, str(tmp_path / "f"), modes=["random"], reasons=["gpu"])
    data = json.loads(capsys.readouterr().out)
    assert list(data["modes"]) == ["random"]
    assert data["modes"]["random"] == {**data["modes"]["random"], "n": 9, "success": 0}


def test_export_fom_units(census_dir: Path, tmp_path: Path, capsys):
    path = tmp_path / "fom" / "figures.csv"
    report.main([str(census_dir)], True, str(tmp_path / "r"), export_fom=path)
    capsys.readouterr()
    rows = list(csv.DictReader(path.open()))
    assert tuple(rows[0]) == report.FOM_COLUMNS
    # census: A 3 x 2 figures, B 1 x 1 (loop time); sampled successes: 14 x 1 (loop time)
    assert len(rows) == 6 + 1 + 14
    a0 = [r for r in rows if r["mode"] == "census" and r["iteration"] == "0"]
    assert [(r["figure"], r["value"], r["unit"]) for r in a0] == [
        ("loop_time_s", "10.0", "s"),
        ("timesteps_per_s", "100.0", "timesteps/s"),
    ]
    assert a0[0]["outdir"] == "lab" and a0[0]["image"] == A and a0[0]["reason"] == "success"
    # filtered rows are not exported
    report.main([str(census_dir)], True, str(tmp_path / "r"), modes=["basic"], export_fom=path)
    capsys.readouterr()
    modes = {r["mode"] for r in csv.DictReader(path.open())}
    assert modes == {"basic", "census"}


def test_export_fom_successes_unless_asked(tmp_path: Path, capsys):
    """A singleton run prints LAMMPS' figures too (four 1-rank copies): its timings must not
    mix with the successes' unless asked for."""
    out = tmp_path / "run"
    out.mkdir()
    append(out, rec("basic", 0, "success", run_s=10.0))
    single = {"loop_time_s": 2.5, "procs": 1}
    append(out, rec("basic", 1, "mpi-singleton", figures=single))
    path = tmp_path / "fom.csv"
    report.main([str(out)], True, str(tmp_path / "r"), export_fom=path)
    rows = list(csv.DictReader(path.open()))
    assert {r["reason"] for r in rows} == {"success"}
    assert [r["iteration"] for r in rows] == ["0"] * 3  # its three figures
    report.main([str(out)], True, str(tmp_path / "r"), export_fom=path, export_fom_all=True)
    capsys.readouterr()
    rows = list(csv.DictReader(path.open()))
    single_rows = [(r["figure"], r["value"]) for r in rows if r["reason"] == "mpi-singleton"]
    assert single_rows == [("loop_time_s", "2.5"), ("procs", "1")]


def test_export_fom_units_are_the_records_applications(tmp_path: Path):
    """Units come from the record's application's data; an application this harness does not
    describe (a record of --application FILE) has figures without units."""
    out = tmp_path / "run"
    out.mkdir()
    append(out, rec("basic", 0, "success", figures={"loop_time_s": 2.0}))
    append(out, rec("basic", 1, "success", figures={"loop_time_s": 3.0}, application="mine"))
    with report.FomExport(tmp_path / "f.csv") as sink:
        report.load([out], on_record=sink)
        path = sink.commit()
    units = [(r["iteration"], r["figure"], r["unit"]) for r in csv.DictReader(path.open())]
    assert units == [("0", "loop_time_s", "s"), ("1", "loop_time_s", "")]


def test_export_fom_left_unfinished_leaves_nothing(census_dir: Path, tmp_path: Path):
    path = tmp_path / "f.csv"
    path.write_text("the previous export\n")
    with pytest.raises(HarnessError), report.FomExport(path) as sink:
        report.load([census_dir, tmp_path / "missing"], on_record=sink)
    assert path.read_text() == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.csv", "lab"]  # no temp file


def test_two_censuses_keep_their_own_expected_rates(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_census(a)
    # b: the same images, but A fails there too: basic = (0 + 1/3) / 2
    runs = [(A, "arch", "exec format error", {}) if r[0] == A else r for r in CENSUS_RUNS]
    write_census(b, runs=runs)
    s = summary(a, b)
    assert s["expected"]["a:basic"]["rate"] == pytest.approx(2 / 3)
    assert s["expected"]["b:basic"]["rate"] == pytest.approx(1 / 6)
    assert f"a:{A}" in s["images"] and f"b:{A}" in s["images"]
    assert s["images"][f"b:{A}"]["reason"] == "arch"


def test_render_narrow_console_splits_census_tables(census_dir: Path):
    s = build(census_dir)
    console = Console(record=True, width=80)
    report.render(s, console)
    text = console.export_text()
    assert "measured against the expected rate" in text  # its own table when narrow
    assert "census, evidence and figures of merit" in text
    assert "7/10 = 70.0 %" in text and "OUTSIDE" in text and "GPU package missing" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_compare_a_sampled_run_with_a_census_only_outdir(census_dir: Path, tmp_path: Path):
    """The demo's bind run against a hybrid census: the census-only side is compared by its
    expected rates; an all-success mode (Wilson upper bound a hair under 1) draws fine."""
    sampled = tmp_path / "sampled"
    fill(sampled, "basic", {"success": 10})
    dest = tmp_path / "cmp"
    assert report.main([str(sampled), str(census_dir)], False, str(dest), compare=True) == 0
    data = json.loads((dest / "report.json").read_text())
    basic = data["compare"]["basic"]
    assert basic["baseline"] == 1.0 and basic["other"] == pytest.approx(0.6)  # sampled there
    assert basic["other_expected"] == pytest.approx(2 / 3)
    census_only = data["compare"]["platform"]  # no sampled platform runs in either outdir
    assert census_only["other"] is None and census_only["other_expected"] is not None
    assert (dest / "compare.png").read_bytes()[:8] == PNG_MAGIC


def test_values_no_clock_gives_are_left_out(tmp_path: Path):
    """A negative run time, one longer than the time since the epoch, a string among the
    figures: not measurements. The medians and the figures use the others (matplotlib cannot
    lay out an axis of +-1e308)."""
    out = tmp_path / "odd"
    out.mkdir()
    for i, run_s in enumerate([-1e308, 1.7e308, 3.0, 5.0]):
        append(out, rec("basic", i, "success", run_s=run_s))
    figures = {"loop_time_s": "fast", "timesteps_per_s": 1e300}
    append(out, rec("census", 0, "success", figures=figures))
    s = build(out)
    assert s.modes["basic"].median_wall_s == pytest.approx(4.0)
    assert list(s.modes["basic"].run_times) == [3.0, 5.0]
    assert s.modes["basic"].n == 4  # the runs still count
    image = next(iter(s.images.values()))
    assert image.figures == {"loop_time_s": None, "timesteps_per_s": 1e300}
    assert len(report.write(s, tmp_path / "rep")) == 12


def test_time_to_solution_interval_and_regret_against_the_census(tmp_path: Path):
    """A mode's median time-to-solution comes with its order-statistic interval, and its regret
    is that median minus the fastest census image's median (successes only)."""
    out = tmp_path / "run"
    times = [5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 8.0, 7.0, 6.0, 10.0, 0.1]
    fill(out, "basic", {"success": 10, "gpu": 1}, run_s=times)
    for i, (image, t) in enumerate([("fast", 2.5), ("fast", 1.5), ("slow", 6.0), ("dead", 0.2)]):
        reason = "gpu" if image == "dead" else "success"
        append(out, rec("census", i, reason, run_s=t, image=f"ghcr.io/lab/lammps:{image}"))
    basic = summary(out)["modes"]["basic"]
    assert basic["median_wall_s"] == pytest.approx(5.5)
    # 10 values: [x(1), x(8)] (0-based) holds the median with 1 - 2 P(B <= 1) = 97.9 %
    assert basic["tts_ci95"] == pytest.approx([2.0, 9.0])
    assert basic["tts_coverage"] == pytest.approx(0.9785, abs=1e-4)
    assert basic["regret_s"] == pytest.approx(5.5 - 2.0)  # "fast": median of 2.5 and 1.5
    without = tmp_path / "no-census"
    fill(without, "basic", {"success": 2})
    assert summary(without)["modes"]["basic"]["regret_s"] is None


def test_a_mode_against_its_baseline_mode(tmp_path: Path):
    """descriptive-performance names descriptive-mpi as its baseline (modes.yaml `against`): the
    report gives the shift of its time-to-solution with the interval, in every file, from the
    successes only; a mode without a baseline gets none."""
    out = tmp_path / "run"
    picked = [*[1.6, 1.61] * 2, *[2.0] * 6, 0.1, 0.1]
    fill(out, "descriptive-mpi", {"success": 10, "mpi": 2}, run_s=picked)
    fill(out, "descriptive-performance", {"success": 10}, run_s=[1.6 + i / 1000 for i in range(10)])
    built = build(out)
    row = built.to_json()["modes"]["descriptive-performance"]
    assert row["against"] == "descriptive-mpi"
    shift = row["shift"]
    assert (shift["n"], shift["n_baseline"]) == (10, 10)  # the failures' 0.1 s left out
    assert shift["verdict"] == "faster" and shift["ci"][1] < 0
    assert built.to_json()["modes"]["descriptive-mpi"]["shift"] is None
    dest = tmp_path / "report"
    report.write(built, dest)
    assert "Time-to-solution against a baseline mode" in (dest / "report.md").read_text()
    csv_row = {r["mode"]: r for r in csv.DictReader((dest / "report.csv").open())}
    assert csv_row["descriptive-performance"]["against"] == "descriptive-mpi"
    assert float(csv_row["descriptive-performance"]["shift_ci95_hi"]) < 0
    assert csv_row["descriptive-mpi"]["shift_s"] == ""
    console = Console(record=True, width=100)
    report.render(built, console)
    text = console.export_text()
    table = text[text.index("against a baseline mode") :]
    line = next(x for x in table.splitlines() if x.strip().startswith("descriptive-performance"))
    assert "descriptive-mpi" in line and line.rstrip().endswith("faster")
    narrow = Console(record=True, width=60)
    report.render(built, narrow)
    text = narrow.export_text()
    assert all(len(x) <= 60 for x in text.splitlines())
    assert report.formats.shift_cells(built.modes["descriptive-performance"])[2] in text
