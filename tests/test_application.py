"""The application as data (harness/data/applications/lammps.yaml): parse_figures on real
LAMMPS output, the figures' units, the data file's checks.

The main excerpt is copied from a Flux Operator lead-broker log of the published experiment
(shared anchors, dev-logs/basic, a successful run of in.reaxc.hns on 4 ranks), including the
Flux line that the broker interleaved into LAMMPS's timing table.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from harness.application import banner_count, figure_units, iter_loop_lines, parse_figures

REAL_RUN = "\n".join(
    [
        "job-manager.err[0]: jobtap: job.new: callback returned error",
        "LAMMPS (29 Sep 2021 - Update 2)",
        "OMP_NUM_THREADS environment is not set. Defaulting to 1 thread. (src/comm.cpp:98)",
        "  using 1 OpenMP thread(s) per MPI task",
        "Reading data file ...",
        "  2 by 1 by 2 MPI processor grid",
        "  2432 atoms",
        "Setting up Verlet run ...",
        "  Unit style    : real",
        "Per MPI rank memory allocation (min/avg/max) = 103.8 | 103.8 | 103.8 Mbytes",
        "Step Temp PotEng Press E_vdwl E_coul Volume ",
        "       0          300   -113.27833    437.52118   -111.57687   -1.7014647    27418.867 ",
        "     100    305.38275   -113.29357     10085.75   -111.59518   -1.6983875    27418.867 ",
        "Loop time of 7.66242 on 4 procs for 100 steps with 2432 atoms",
        "Performance: 0.113 ns/day, 212.845 hours/ns, 13.051 timesteps/s",
        "85.6% CPU use with 4 MPI tasks x 1 OpenMP threads",
        "MPI task timing breakdown:",
        "Section |  min time  |  avg time  |  max time  |%varavg| %total",
        "---------------------------------------------------------------",
        "job-manager.err[0]: jobtap: job.inactive-add: callback returned error",
        "Pair    | 3.641      | 4.1886     | 4.7207     |  19.3 | 54.66",
        "Neighbor list builds = 5",
        "Dangerous builds not checked",
        "Total wall time: 0:00:07",
        "broker.info[0]: rc2.0: flux submit -N 2 -n4 --quiet --watch lmp -v x 2 -v y 2 -v z 2 "
        "-in in.reaxc.hns -nocite Exited (rc=0) 8.6s",
    ]
)


def test_real_reaxff_run():
    assert parse_figures(REAL_RUN) == {
        "lammps_version": "29 Sep 2021 - Update 2",
        "loop_time_s": pytest.approx(7.66242),
        "procs": 4,
        "steps": 100,
        "atoms": 2432,
        "ns_per_day": pytest.approx(0.113),
        "timesteps_per_s": pytest.approx(13.051),
        "pair_s": pytest.approx(4.1886),  # the breakdown's avg time, past the Flux line
        "total_wall_time_s": 7.0,
        "loop_lines": 1,
    }


def test_keys_only_when_found():
    # the failing runs of the experiment never reach LAMMPS: no figure at all
    broker_failed = (
        "flux: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found (required by flux)"
    )
    assert parse_figures(broker_failed) == {}
    assert parse_figures("") == {}
    # banner only (LAMMPS started, then died)
    assert parse_figures("LAMMPS (29 Sep 2021 - Update 2)\nERROR: Unknown pair style") == {
        "lammps_version": "29 Sep 2021 - Update 2"
    }


def test_lj_units_tau_and_matom_steps():
    # LAMMPS's format for lj units (finish.cpp): tau/day, timesteps/s, [kM]atom-step/s
    text = "\n".join(
        [
            "Loop time of 0.0367205 on 1 procs for 250 steps with 4000 atoms",
            "",
            "Performance: 11762228.140 tau/day, 6807.532 timesteps/s, 27.230 Matom-step/s",
            "99.7% CPU use with 1 MPI tasks x no OpenMP threads",
        ]
    )
    figs = parse_figures(text)
    assert figs["tau_per_day"] == pytest.approx(11762228.140)
    assert figs["timesteps_per_s"] == pytest.approx(6807.532)
    assert figs["katom_step_per_s"] == pytest.approx(27230.0)
    assert "ns_per_day" not in figs
    assert "total_wall_time_s" not in figs

    kilo = parse_figures("Performance: 1.5 tau/day, 2.0 timesteps/s, 27.230 katom-step/s")
    assert kilo["katom_step_per_s"] == pytest.approx(27.230)


def test_two_singletons_count_two_loop_lines():
    # mpiexec.mpich launching an Open MPI LAMMPS: every rank is its own 1-proc LAMMPS
    one = "\n".join(
        [
            "LAMMPS (29 Sep 2021)",
            "Loop time of 0.151 on 1 procs for 100 steps with 4000 atoms",
            "Total wall time: 0:00:00",
        ]
    )
    text = one + "\n" + one.replace("0.151", "0.163")
    figs = parse_figures(text)
    assert figs["loop_lines"] == 2
    assert figs["procs"] == 1
    assert figs["loop_time_s"] == pytest.approx(0.163)  # the last run's
    assert [p for p, _ in iter_loop_lines(text)] == [1, 1]
    assert banner_count(text) == 2
    assert [ln for _, ln in iter_loop_lines(text)][0] == (
        "Loop time of 0.151 on 1 procs for 100 steps with 4000 atoms"
    )


def test_wall_time_hours():
    assert parse_figures("Total wall time: 12:03:04")["total_wall_time_s"] == 43384.0


def test_loop_lines_counted_on_real_log():
    assert parse_figures("\n".join([REAL_RUN] * 3))["loop_lines"] == 3


def test_launcher_prefixed_lines():
    # e.g. `flux run --label-io` puts the rank in front of every line
    text = "0: Loop time of 0.5 on 2 procs for 10 steps with 32 atoms\n0: Total wall time: 0:00:01"
    figs = parse_figures(text)
    assert figs["procs"] == 2
    assert figs["total_wall_time_s"] == 1.0
    assert [ln for _, ln in iter_loop_lines(text)] == [
        "0: Loop time of 0.5 on 2 procs for 10 steps with 32 atoms"
    ]


# ----------------------------------------------------------------------------------------------
# the application as data
# ----------------------------------------------------------------------------------------------


def test_lammps_is_described_by_its_data_file():
    from harness.application import Application, available, load

    assert "lammps" in available()
    app = load("lammps")
    assert isinstance(app, Application) and app.name == "lammps"
    assert {"lmp", "lmp_gpu"} <= set(app.executables)  # what the reference experiment ran
    assert set(app.criteria) == {"completed", "run", "process"}
    assert "procs" in app.criteria["run"].regex.groupindex
    for fig in app.figures:
        assert fig.line in app.lines
        # a figure's regex names its value after the figure (a count has none)
        assert fig.regex is None if fig.type == "count" else fig.name in fig.regex.groupindex
    assert load() is app  # parsed once


SECTIONS = ("pair", "bond", "kspace", "neigh", "comm", "output", "modify", "other")


def test_figure_units():
    assert figure_units() == {
        "lammps_version": "",
        "loop_time_s": "s",
        "procs": "procs",
        "steps": "steps",
        "atoms": "atoms",
        "loop_lines": "lines",
        "tau_per_day": "tau/day",
        "ns_per_day": "ns/day",
        "timesteps_per_s": "timesteps/s",
        "katom_step_per_s": "katom-step/s",
        "total_wall_time_s": "s",
        **{f"{section}_s": "s" for section in SECTIONS},
    }
    # every figure parse_figures can return has units
    assert set(parse_figures(REAL_RUN)) <= set(figure_units())


def test_unknown_application():
    from harness.application import load
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="unknown application 'gromacs'"):
        load("gromacs")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["criteria"].pop("run"), "criteria"),
        (lambda d: d["criteria"]["run"].update(regex=r"Loop time of \S+"), "procs"),
        (lambda d: d["figures"][1].update(line="nope"), "'line' must be"),
        (lambda d: d["figures"][1].update(regex=r"Loop time of (?P<x>\d+)"), "named group"),
        (lambda d: d["figures"][1].pop("units"), "units"),
        (lambda d: d["lines"].update(loop=r"Loop (?P<a>time)"), "no named groups"),
        (lambda d: d.pop("run"), "'run' must be"),
        (lambda d: d["run"].update(command="lmp -in in.lj"), "non-empty list of arguments"),
        (lambda d: d["run"].update(ranks=0), "'ranks' must be"),
        (lambda d: d["run"].update(np=2), "'run' must be"),
        (lambda d: d["run"].update(figures_from=["stderr"]), "'figures_from' must be"),
        (lambda d: d.update(rules={"reason": "arch"}), "'rules' must be"),
        (lambda d: d["figures"][0].update(keep="max"), "max, min: numbers"),
        (lambda d: d.update(name="lammps; rm -rf /"), "'name' may hold"),
        (lambda d: d["run"].update(program="lmp"), "'program' must be an absolute path"),
        (lambda d: d["figures"][1].update(better="faster"), "better must be higher or lower"),
        (lambda d: d["figures"][0].update(better="higher"), "numbers only"),
        (lambda d: d["figures"][3].update(column="steps"), "a column needs a label and better"),
        (lambda d: d["gpu"].update(styles=["gpu"]), "'gpu' may hold"),
        (lambda d: d["gpu"].update(gpu_styles="gpu"), "gpu_styles must be a list"),
        (lambda d: d["gpu"].update(kokkos_help_line="KOKKOS ("), "bad regex"),
        (lambda d: d["reference"].pop("gpu_tag"), "'reference' needs"),
    ],
)
def test_application_file_is_checked(edit, message):
    import yaml

    from harness import application
    from harness.errors import HarnessError

    path = Path(application.__file__).parent / "data/applications/lammps.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    with pytest.raises(HarnessError, match=message):
        application.parse(data, "lammps")


def test_published_wall_times_are_what_parse_figures_reads():
    """The reference experiment's published wall times (lammps-times-amd64.csv) are the
    "Total wall time" of its successful runs, per mode."""
    root = _dev_logs()
    with open(root / "lammps-times-amd64.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    checked = 0
    for mode in sorted(p.name for p in root.iterdir() if p.is_dir()):
        published = sorted(
            float(r["wall_time"]) for r in rows if r["experiment"] == mode and r["wall_time"]
        )
        figures = [parse_figures(p.read_text(errors="replace")) for p in root.glob(f"{mode}/*.log")]
        parsed = sorted(f["total_wall_time_s"] for f in figures if "total_wall_time_s" in f)
        assert parsed == published, mode
        checked += len(parsed)
    assert checked > 0


def _dev_logs() -> Path:
    from tests.conftest import shared_dir

    shared = shared_dir()
    root = shared / "anchors" / "lammps-matrix" / "dev-logs" if shared else None
    if root is None or not root.is_dir():
        pytest.skip(
            "shared anchors not found (set HARNESS_SHARED or place 'shared' next to the repo): "
            "no dev-logs to compare the published wall times with"
        )
    return root


def test_netpipe_is_judged_by_its_own_lines():
    """NetPIPE's figures (tests/replay.py: real NPopenmpi output, its main loop on stderr): the
    highest bandwidth of any block, the latency of the smallest; LAMMPS's lines are no NetPIPE
    figures and back."""
    from harness.application import load
    from tests.replay import NETPIPE, NETPIPE_STDERR

    netpipe = load("netpipe")
    assert netpipe.ranks == 2 and netpipe.command[0] in netpipe.executables
    assert netpipe.streams == ("stdout", "stderr") and load("lammps").streams == ("stdout",)
    text = NETPIPE + NETPIPE_STDERR
    assert netpipe.parse_figures(text) == {
        "max_bandwidth_mbps": 669.91,  # block 11's: the last block's (96 bytes) is lower
        "latency_us": 1.08,
        "largest_block_bytes": 96,
        "blocks": 13,
    }
    assert netpipe.parse_figures(REAL_RUN) == {}
    assert parse_figures(text) == {}
    assert netpipe.process_count(text) == 2  # "1: vm", "0: vm"; no block line
    assert [p for p, _ in netpipe.iter_runs(text)] == [2]


def test_what_the_report_and_the_artifact_read_is_data():
    """The image's program, the headline columns with the way each figure improves, what asks
    for a GPU and the reference protocol's command: each application's file says them."""
    from harness.application import known, load

    lammps, netpipe = load("lammps"), load("netpipe")
    assert lammps.program == "/usr/bin/lmp" and netpipe.program == "/usr/bin/NPopenmpi"
    assert [(f.name, f.column) for f in lammps.columns()] == [
        ("loop_time_s", "loop time"),
        ("timesteps_per_s", "timesteps/s"),
    ]
    assert [(f.name, f.column) for f in netpipe.columns()] == [
        ("max_bandwidth_mbps", "max bandwidth"),
        ("latency_us", "latency"),
    ]
    assert lammps.higher_is_better("ns_per_day") and not lammps.higher_is_better("pair_s")
    assert netpipe.higher_is_better("max_bandwidth_mbps")
    assert not netpipe.higher_is_better("latency_us")
    assert not netpipe.higher_is_better("ns_per_day")  # not NetPIPE's figure
    assert "-sf" in lammps.gpu.suffix_switches and netpipe.gpu.suffix_switches == ()
    ref = lammps.reference
    assert ref is not None and netpipe.reference is None
    assert ref.command("ghcr.io/rse-ops/lammps-matrix:intel-mpi-rocky-9-amd64")[0] == "lmp"
    gpu = ref.command("ghcr.io/rse-ops/lammps-matrix:openmpi-ubuntu-gpu-22.04")
    assert gpu[0] == "lmp_gpu" and gpu[-3:] == ("-in", "in.reaxc.hns", "-nocite")
    # a record names an application; only a described one is loaded, never a path
    assert known("netpipe") is netpipe and known("mine") is None and known("/etc/x.yaml") is None
