"""What asks an application for a GPU, and which program says an image's architecture and MPI:
both read from the application's data (harness/data/applications/NAME.yaml), the mechanism
(following wrappers, reading ELF files in a SIF) in harness.select.gpu_use/artifact_create."""

from __future__ import annotations

import pytest

from harness import application
from harness.lab.matrix import cache_dir
from harness.select import artifact_create
from harness.select.gpu_use import command_gpu_switches, input_file, input_gpu_commands
from tests.conftest import require

LAMMPS = application.load("lammps")
NETPIPE = application.load("netpipe")


@pytest.mark.parametrize(
    ("argv", "asks", "kokkos"),
    [
        (["lmp", "-in", "in.lj"], [], []),
        (["lmp", "-sf", "gpu", "-in", "in.lj"], ["-sf gpu"], []),
        (["lmp", "-sf", "hybrid", "gpu", "omp"], ["-sf hybrid gpu omp"], []),
        (["lmp", "-suffix", "opt", "-in", "in.lj"], [], []),
        (["lmp", "-pk", "gpu", "2"], ["-pk gpu 2"], []),
        (["lmp", "-k", "on", "g", "4", "-sf", "kk"], ["-k on g 4"], ["-sf kk"]),
        (["lmp", "-kokkos", "on", "t", "4"], [], ["-kokkos on"]),
        (["lmp", "-k", "on", "gpus", "0"], [], ["-k on g 0"]),
    ],
)
def test_lammps_switches_that_ask_for_a_gpu(argv, asks, kokkos):
    assert command_gpu_switches(argv, LAMMPS.gpu) == (asks, kokkos)


def test_an_application_without_gpu_data_asks_for_none():
    """NetPIPE says nothing about GPUs: only a GPU runtime its program links could."""
    assert command_gpu_switches(["lmp", "-sf", "gpu", "-pk", "gpu", "1"], NETPIPE.gpu) == ([], [])
    assert input_gpu_commands("package gpu 1\n", NETPIPE.gpu) == ([], [])
    assert input_file(["NPopenmpi", "-in", "x"], NETPIPE.gpu) is None


def test_input_script_commands():
    script = "units lj\npackage gpu 1 & \n  neigh yes\npair_style lj/cut/gpu 2.5\nsuffix kk\n"
    asks, kokkos = input_gpu_commands(script, LAMMPS.gpu)
    assert asks == ["package gpu 1 neigh", "pair_style lj/cut/gpu 2.5"]
    assert kokkos == ["suffix kk"]
    assert input_gpu_commands("pair_style gpu/x 2.5  # gpu/x is no style\n", LAMMPS.gpu) == (
        [],
        [],
    )
    assert input_file(["lmp", "-i", "in.x"], LAMMPS.gpu) == "in.x"


def lab_sif(name: str):
    sif = cache_dir() / "sif" / f"{name}.sif"
    require("the lab's images", None if sif.is_file() else f"no {sif} (make lab)")
    return sif


@pytest.mark.lab
def test_the_application_program_says_arch_and_mpi():
    """One image with LAMMPS and NetPIPE: each application's artifact reads its own program."""
    sif = lab_sif("openmpi-debian-12-amd64")
    for app, program in ((LAMMPS, "/usr/bin/lmp"), (NETPIPE, "/usr/bin/NPopenmpi")):
        ex = artifact_create.extract(sif, run=False, app=app)
        assert ex.fields["system.arch.name"] == "amd64"
        assert ex.provenance["system.arch.name"] == f"ELF machine of {program}"
        assert ex.fields["library.mpi.variant"] == "OpenMPI"
        assert ex.provenance["library.mpi.variant"].startswith(f"{program} needs libmpi.so")


@pytest.mark.lab
def test_gpu_image_asks_lammps_for_a_gpu_and_netpipe_for_none():
    sif = lab_sif("openmpi-debian-gpu-12-amd64")
    gpu = artifact_create.extract(sif, run=False, app=LAMMPS)
    assert gpu.fields["custom.gpu.available"] == "yes", gpu.provenance["custom.gpu.available"]
    ping = artifact_create.extract(sif, run=False, command=list(NETPIPE.command), app=NETPIPE)
    assert ping.fields["custom.gpu.available"] == "no", ping.provenance["custom.gpu.available"]


@pytest.mark.lab
def test_artifact_create_takes_an_application(capsys):
    sif = lab_sif("none-debian-12-amd64")
    assert artifact_create.main([str(sif), "--application", "nope"]) == 2
    assert "unknown application 'nope'" in capsys.readouterr().err
    assert artifact_create.main([str(sif), "--application", "netpipe", "--explain"]) == 0
    assert "CompatibilitySpec" in capsys.readouterr().out
