""" "It worked better": medians with intervals, the microarchitecture rule, the isa reason from a
genuine illegal instruction, and descriptive-performance choosing from a census written here.

The loop runs through the replay executor (tests/replay.py): real runner, real records, real
matching; only the jobs' outputs are recorded ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from harness import records
from harness.judge.classify import classify
from harness.lab.matrix import cache_dir
from harness.run import runner
from harness.select import performance
from harness.select.performance import spread
from tests.conftest import ROOT, cli, require
from tests.replay import SUCCESS
from tests.test_records import make
from tests.test_runner import config as runner_config
from tests.test_runner import write_setup

HOST = {
    "io.archspec.cpu.target": "amd64",
    "io.archspec.cpu.microarchitecture": "x86_64_v4",
    "org.supercontainers.os.vendor": "debian",
    "org.supercontainers.os.version": "12",
    "org.supercontainers.hardware.gpu.available": "no",
    "org.supercontainers.mpi.implementation": "OpenMPI",
}
HASWELL = ROOT / "examples" / "hosts" / "debian-12-amd64-haswell.yaml"
# image -> the microarchitecture its artifact declares
IMAGES = {"plain": "x86_64", "opt": "x86_64", "v3": "x86_64_v3", "v4": "x86_64_v4"}


# --- medians and their intervals ---------------------------------------------------------------


def test_spread_of_ten_runs_is_an_order_statistic_interval():
    s = spread([5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 9.0, 8.0, 7.0, 6.0])
    assert s.median == 5.5
    # x(2) and x(9) of 10 cover the median with 1 - 2 P(B <= 1) = 97.85 % (B ~ binomial(10, .5))
    assert (s.low, s.high, s.coverage) == (2.0, 9.0, pytest.approx(0.9785, abs=1e-4))


def test_few_runs_give_the_whole_range_and_say_how_little_it_covers():
    assert spread([3.0, 1.0, 2.0]) == performance.Spread(3, 2.0, 1.0, 3.0, 0.75)
    five = spread([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (five.low, five.high, five.coverage) == (1.0, 5.0, 0.9375)
    assert spread([4.2]).coverage == 0.0
    with pytest.raises(ValueError):
        spread([])


def test_faster_than_the_next_is_the_shift_not_the_medians_intervals():
    """Five runs each: the medians' intervals (the whole ranges) overlap, yet every pair of runs
    but one says the second image is slower; an image like the next is not told apart."""
    times = {"a": [1.0, 1.1, 1.2, 1.3, 2.05], "b": [2.0, 2.1, 2.2, 2.3, 2.4], "c": [2.1, 2.2, 2.3]}
    ranked = performance.fastest_first({k: spread(v) for k, v in times.items()}, times)
    assert [r.name for r in ranked] == ["a", "b", "c"]
    a, b = ranked[0].spread, ranked[1].spread
    assert a.low <= b.high and b.low <= a.high  # the intervals overlap
    assert ranked[0].clear_of_next is True and ranked[0].to_next.estimate == pytest.approx(1.0)
    assert ranked[1].clear_of_next is False  # 2.2 against 2.2: not told apart
    assert ranked[2].to_next is None and ranked[2].clear_of_next is None
    few = {"x": [1.0], "y": [2.0, 2.1]}
    ranked = performance.fastest_first({k: spread(v) for k, v in few.items()}, few)
    assert ranked[0].to_next is None


# --- the census and descriptive-performance ----------------------------------------------------


def four_images(tmp_path: Path) -> dict:
    """Four runnable images (local SIF files, never executed) with their artifacts."""
    debian = {
        "os.vendor": "debian",
        "os.version": "12",
        "hardware.gpu.available": "no",
        "mpi.implementation": "OpenMPI",
    }
    images = {
        name: (debian, {"cpu.target": "amd64", "cpu.microarchitecture": level}, {"stdout": SUCCESS})
        for name, level in IMAGES.items()
    }
    return write_setup(tmp_path, images, HOST)


def config(setup: dict, outdir: Path, **kw) -> runner.RunConfig:
    return runner_config(setup, outdir, **{"mode": "descriptive-performance", "iters": 6, **kw})


def write_census(outdir: Path, setup: dict, seconds: dict[str, list[float]], host=HOST) -> None:
    """A census as `harness census` leaves it: census.json and one record per run, with the
    given times-to-solution (successes), interleaved pass by pass."""
    outdir.mkdir(parents=True, exist_ok=True)
    names = [str(setup["manifest"].parent / f"{n}.sif") for n in IMAGES]
    body = {"schema": records.CENSUS_SCHEMA, "host": host, "images": names, "modes": {}}
    (outdir / records.CENSUS_FILE).write_text(json.dumps(body))
    i = 0
    for k in range(max(len(v) for v in seconds.values())):
        for name, runs in seconds.items():
            if k >= len(runs):
                continue
            rec = replace(
                make(i, records.CENSUS),
                seed=1,
                host=host,
                candidates=names,
                image=str(setup["manifest"].parent / f"{name}.sif"),
                executor="replay",
                mpi_model="bind",
                timings=records.Timings(run_s=runs[k]),
                figures={},
                evidence="Loop time of 1.5 on 2 procs",
            )
            records.append(outdir, rec)
            i += 1


def images_run(outdir: Path, mode: str) -> set[str]:
    return {Path(r.image).stem for r in (r for r in records.read(outdir) if r.mode == mode)}


def test_performance_mode_takes_the_census_fastest(replay, tmp_path):
    setup = four_images(tmp_path)
    out = tmp_path / "out"
    # opt is the fastest by its median; v4 has the single fastest run, and the slowest median
    write_census(
        out,
        setup,
        {
            "plain": [4.0, 4.2, 4.1],
            "opt": [2.9, 3.0, 3.1],
            "v3": [3.5, 3.6, 3.4],
            "v4": [2.0, 9, 8],
        },
    )
    exp = runner.prepare(config(setup, out))
    assert [Path(n).stem for n in exp.ranking] == ["opt", "v3", "plain", "v4"]
    assert "chooses by time_to_solution_s" in exp.chosen_by
    runner.execute(exp)
    assert images_run(out, "descriptive-performance") == {"opt"}
    recs = [r for r in records.read(out) if r.mode == "descriptive-performance"]
    assert len(recs[0].candidates) == 4  # the mode's candidate set is kept in every record
    # descriptive-mpi, the random compatible pick, spreads over all four
    runner.run(config(setup, out, mode="descriptive-mpi", iters=12))
    assert len(images_run(out, "descriptive-mpi")) > 1


def test_census_elsewhere_or_of_another_host(replay, tmp_path):
    setup = four_images(tmp_path)
    census = tmp_path / "census"
    write_census(census, setup, {"plain": [1.0], "opt": [2.0], "v3": [3.0], "v4": [4.0]})
    exp = runner.prepare(config(setup, tmp_path / "a", census=census))
    assert Path(exp.ranking[0]).stem == "plain"  # --census OUTDIR
    other = dict(HOST, **{"org.supercontainers.os.version": "13"})
    write_census(tmp_path / "b", setup, {"plain": [1.0], "opt": [2.0]}, host=other)
    exp = runner.prepare(config(setup, tmp_path / "b"))
    # not this host's census: the declared microarchitecture decides, highest level first
    assert "is not this host's: its host has org.supercontainers.os.version=13" in exp.chosen_by
    assert Path(exp.ranking[0]).stem == "v4"


def test_without_census_the_highest_level_this_cpu_runs(replay, tmp_path):
    setup = four_images(tmp_path)
    exp = runner.prepare(config(setup, tmp_path / "a"))
    assert [Path(n).stem for n in exp.ranking[:2]] == ["v4", "v3"]
    assert "no census" in exp.chosen_by
    # an older CPU (Haswell: x86_64_v3, no AVX-512): the v4 build is no candidate at all
    exp = runner.prepare(config(setup, tmp_path / "b", host_file=HASWELL))
    assert [Path(v.image.name).stem for v in exp.allowed] == ["plain", "opt", "v3"]
    assert Path(exp.ranking[0]).stem == "v3"


def test_explain_names_the_microarchitecture_that_excludes_the_v4_build(tmp_path):
    setup = four_images(tmp_path)
    proc = cli(
        "explain",
        "--manifests",
        str(setup["manifest"]),
        "--mode",
        "descriptive-performance",
        "--host",
        str(HASWELL),
    )
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "v4.sif" in out and "haswell" in out and "x86_64_v4" in out
    assert "out: cpu.microarchitecture" in out
    assert "3 of 4 images are candidates" in out


def test_census_repeats_are_interleaved_in_a_seeded_order(replay, tmp_path):
    names = [f"i{k}" for k in range(5)]
    passes = [runner.census_order(names, 7, p) for p in range(4)]
    assert all(sorted(p) == names for p in passes)
    assert len({tuple(p) for p in passes}) > 1  # each pass has its own order
    assert passes[0] == runner.census_order(names, 7)  # the first pass as before --repeats
    setup = four_images(tmp_path)
    cfg = runner.census_config(config(setup, tmp_path / "out", mode=runner.CENSUS, repeat=3))
    runner.run(cfg)
    recs = [r for r in records.read(tmp_path / "out") if r.mode == records.CENSUS]
    assert len(recs) == 12
    for p in range(3):  # every image once in each pass of four
        assert {r.image for r in recs[4 * p : 4 * p + 4]} == {r.image for r in recs}
    census = performance.read_census(tmp_path / "out")
    assert census is not None and {s.n for s in census.speeds.values()} == {3}
    body = json.loads((tmp_path / "out" / records.CENSUS_FILE).read_text())
    assert body["repeat"] == 3
    assert body["modes"]["descriptive-performance"]["choose"]["measure"] == "time_to_solution_s"


def test_census_repeats_option_and_its_old_spelling(replay, tmp_path):
    setup = four_images(tmp_path)
    for flag in ("--repeats", "--repeat"):
        out = tmp_path / flag.strip("-")
        proc = cli(
            "census",
            "--manifests",
            str(setup["manifest"]),
            "--host",
            str(setup["host"]),
            "--outdir",
            str(out),
            flag,
            "0",
        )
        assert proc.returncode == 2 and "must be at least 1" in proc.stderr


def test_records_carry_the_application_and_overhead_times(replay, tmp_path):
    setup = four_images(tmp_path)
    runner.run(config(setup, tmp_path / "out", mode="random", iters=2))
    for rec in (r for r in records.read(tmp_path / "out") if r.mode == "random"):
        # the recorded output says "Total wall time: 0:00:01"
        assert rec.timings.app_s == 1.0
        assert rec.timings.overhead_s == pytest.approx(rec.timings.run_s - 1.0)


# --- the isa reason ----------------------------------------------------------------------------

# Programs that each execute one instruction of an x86 extension, by /proc/cpuinfo flag with
# gcc's switch for it: no x86 CPU reports all three (no Intel CPU has SSE4a or FMA4, no AMD Zen
# has FMA4), so an illegal instruction is there to produce on either vendor.
ISA_PROGRAMS = {
    "avx512_fp16": ("-mavx512fp16", r"""
#include <immintrin.h>
#include <stdio.h>
int main(int argc, char **argv) {
    volatile _Float16 x = (_Float16)argc;
    __m512h v = _mm512_set1_ph(x);
    v = _mm512_add_ph(v, v);
    printf("%f\n", (double)_mm512_reduce_add_ph(v));
    return 0;
}
"""),
    "sse4a": ("-msse4a", r"""
#include <x86intrin.h>
#include <stdio.h>
int main(int argc, char **argv) {
    volatile long long x = argc;
    __m128i v = _mm_extracti_si64(_mm_cvtsi64_si128(x), 8, 0);
    printf("%lld\n", (long long)_mm_cvtsi128_si64(v));
    return 0;
}
"""),
    "fma4": ("-mfma4", r"""
#include <x86intrin.h>
#include <stdio.h>
int main(int argc, char **argv) {
    volatile float x = (float)argc;
    __m128 v = _mm_set1_ps(x);
    printf("%f\n", (double)_mm_cvtss_f32(_mm_macc_ps(v, v, v)));
    return 0;
}
"""),
}  # fmt: skip


def cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def illegal_program(tmp_path: Path) -> Path:
    """A program built for the first extension of ISA_PROGRAMS this CPU lacks (skip where it
    has them all, or where gcc cannot build for the one it lacks)."""
    flags = cpu_flags()
    lacking = [flag for flag in ISA_PROGRAMS if flag not in flags]
    if not lacking:
        pytest.skip(f"this CPU has {', '.join(ISA_PROGRAMS)}: no illegal instruction to produce")
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    switch, source = ISA_PROGRAMS[lacking[0]]
    (tmp_path / "isa.c").write_text(source)
    build = subprocess.run(
        ["gcc", "-O1", switch, "-o", str(tmp_path / "isa"), str(tmp_path / "isa.c")],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        pytest.skip(f"gcc cannot build for {lacking[0]} here: {build.stderr.strip()[-200:]}")
    return tmp_path / "isa"


def test_isa_reason_from_a_genuine_illegal_instruction(tmp_path):
    """The CPU raises SIGILL on the first instruction of an extension it lacks; the shell that
    started the program reports it, and the classifier names `isa`."""
    program = illegal_program(tmp_path)
    proc = subprocess.run(
        ["bash", "-c", f"{program}; exit $?"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 132  # 128 + SIGILL
    verdict = classify(proc.stdout + proc.stderr, exit_code=proc.returncode, ranks=1)
    assert verdict.reason == "isa" and "Illegal instruction" in verdict.evidence, proc.stderr


@pytest.mark.lab
def test_isa_reason_under_mpirun_and_apptainer(lab, tmp_path):
    """The same program in a lab image under the host's mpirun, as `harness run` launches
    images: Open MPI reports the rank's death by signal 4."""
    program = illegal_program(tmp_path)
    sif = cache_dir() / "sif" / "none-debian-12-amd64.sif"
    require("the lab's none-debian-12-amd64 image", None if sif.is_file() else f"no {sif}")
    argv = ["mpirun", "--allow-run-as-root", "-n", "2", "apptainer", "exec", "--bind"]
    argv += [f"{tmp_path}:{tmp_path}", str(sif), str(program)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    verdict = classify(proc.stdout + proc.stderr, exit_code=proc.returncode, ranks=2)
    assert verdict.reason == "isa", (proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize(
    "line",
    [
        # glibc's loader, for a program whose "x86 ISA needed" is above the CPU's level
        "/usr/bin/lmp: error while loading shared libraries: /usr/bin/lmp: CPU ISA level is "
        "lower than required",
        # Open MPI's mpirun when a rank dies of SIGILL
        "mpirun noticed that process rank 0 with PID 0 on node vm exited on signal 4 "
        "(Illegal instruction).",
        "srun: error: node1: task 0: Illegal instruction (core dumped)",
        "Fatal glibc error: CPU does not support x86-64-v4",
    ],
)
def test_isa_rule_lines(line):
    assert classify(line + "\n", exit_code=132, ranks=2).reason == "isa"


def test_census_ends_with_its_images_fastest_first_and_how_sure(tmp_path, capsys):
    from harness.commands.run import _speeds

    setup = four_images(tmp_path)
    five = {
        "plain": [4.0, 4.2, 4.1, 4.3, 4.0],
        "opt": [2.9, 3.0, 3.1, 3.0, 2.95],
        "v3": [3.05, 2.8, 3.2, 3.1, 3.1],  # a higher median than opt's, an interval that overlaps
        "v4": [1.0, 1.1, 1.2, 1.05, 1.15],
    }
    write_census(tmp_path / "c", setup, five)
    _speeds(tmp_path / "c")
    lines = capsys.readouterr().err.splitlines()
    assert "fastest first" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["v4.sif", "opt.sif", "v3.sif", "plain.sif"]
    # 5 runs: the whole range, which covers the median with 94 %; opt's runs 1.90 s above v4's
    # (the shift: the median of the 25 differences), its interval [D(3), D(23)] 97 %
    assert "1.10 s [1.00–1.20] (covers 94%)" in lines[1]
    assert lines[1].endswith("faster than the next by 1.90 s [1.75–2.00]")
    assert lines[2].endswith("not told apart from the next") and "n=5" in lines[2]
    assert lines[3].endswith("faster than the next by 1.05 s [0.90–1.30]")
    assert lines[4].endswith("n=5")


def test_the_direction_of_a_measure_is_its_applications():
    """A census ranks by its records' application's figures: higher first where the file says
    `better: higher` (a bandwidth, a rate), lower first for a time or a figure it does not know."""

    def census(measure: str, app: str) -> performance.Census:
        speeds = {"a": spread([1.0]), "b": spread([3.0]), "c": spread([2.0])}
        return performance.Census(Path("."), {}, {}, speeds, measure, app)

    names = ["a", "b", "c", "never"]
    assert performance.ranking(names, census("max_bandwidth_mbps", "netpipe"), {}) == [
        "b",
        "c",
        "a",
        "never",
    ]
    assert performance.ranking(names, census("latency_us", "netpipe"), {})[:3] == ["a", "c", "b"]
    assert performance.ranking(names, census("timesteps_per_s", "lammps"), {})[0] == "b"
    assert performance.ranking(names, census("timesteps_per_s", "netpipe"), {})[0] == "a"
    assert performance.ranking(names, census("max_bandwidth_mbps", "mine"), {})[0] == "a"


def test_a_census_of_one_run_each_gives_times_but_no_interval(tmp_path, capsys):
    from harness.commands.run import _speeds

    setup = four_images(tmp_path)
    write_census(tmp_path / "c", setup, {"plain": [4.0], "opt": [3.0], "v3": [3.5], "v4": [1.0]})
    _speeds(tmp_path / "c")
    lines = capsys.readouterr().err.splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["v4.sif", "opt.sif", "v3.sif", "plain.sif"]
    assert all(line.endswith("n=1") and "[" not in line for line in lines)
