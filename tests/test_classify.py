"""The failure classifier: real error texts, precedence rules, and the published experiment.

Texts marked "LAB" are what the programs printed on the lab machine (shared LAB.md); texts
marked "dev-logs" are copied from the Flux Operator lead-broker logs of the published
experiment (shared anchors).  Every test checks the reason AND the evidence line.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from harness.judge import reasons
from harness.judge.classify import (
    INFRA_PREFIX,
    REASONS,
    Classification,
    classify,
    classify_file,
)
from harness.judge.faults import KINDS, Fault

# ----------------------------------------------------------------------------------------------
# real texts
# ----------------------------------------------------------------------------------------------

# dev-logs: the preamble every Flux Operator run prints, with its misleading lines
FLUX_PREAMBLE = [
    "/flux_operator/wait-0.sh: line 23: curl: command not found",
    "Flux install root: /mnt/flux/view",
    "PATH is /usr/local/bin:/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:"
    "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/mnt/flux/view/bin",
    "/opt/intel/mpi/latest/env/vars.sh: line 53: ps: command not found",
    "Flags for flux are -N 2 -n4  ",
    "job-manager.info[0]: restart: 0 running jobs",
    "job-manager.info[0]: restart: checkpoint.job-manager not found",
    "broker.info[0]: quorum-full: quorum->run 0.310733s",
    "job-manager.err[0]: jobtap: job.new: callback returned error",
]

# dev-logs: the end of a successful run (4 ranks)
LAMMPS_OK = [
    "LAMMPS (29 Sep 2021 - Update 2)",
    "  2 by 1 by 2 MPI processor grid",
    "Loop time of 7.66242 on 4 procs for 100 steps with 2432 atoms",
    "Performance: 0.113 ns/day, 212.845 hours/ns, 13.051 timesteps/s",
    "85.6% CPU use with 4 MPI tasks x 1 OpenMP threads",
    "job-manager.err[0]: jobtap: job.inactive-add: callback returned error",
    "Dangerous builds not checked",
    "Total wall time: 0:00:07",
    "broker.info[0]: rc2.0: flux submit -N 2 -n4 --quiet --watch lmp -v x 2 -v y 2 -v z 2 "
    "-in in.reaxc.hns -nocite Exited (rc=0) 8.6s",
]

GLIBC_FLUX = (
    "flux: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found (required by flux)"
)
GLIBCXX_BROKER = (
    "/opt/software/linux-ubuntu22.04-x86_64/gcc-11.4.0/flux-core-0.55.0-q3jyqnvbwaeu3crvofbneaejdpvu4pjm"
    "/libexec/flux/cmd/flux-broker: /lib64/libstdc++.so.6: version `GLIBCXX_3.4.30' not found "
    "(required by /opt/software/linux-ubuntu22.04-x86_64/gcc-11.4.0/"
    "libzmq-4.3.4-vazhs2bn5rochoj7mrefpvvyjuprubkt/lib/libzmq.so.5)"
)
LIBCUDA = (
    "lmp_gpu: error while loading shared libraries: libcuda.so.1: cannot open shared object file: "
    "No such file or directory"
)
MPICH_INIT = (
    "Abort(1090959) on node 0 (rank 0 in comm 0): Fatal error in PMPI_Init: Other MPI error, "
    "error stack:"
)


def lines(*parts) -> str:
    out: list[str] = []
    for p in parts:
        out.extend([p] if isinstance(p, str) else p)
    return "\n".join(out)


def test_reasons_order():
    # The exact strings and order are a contract of `harness classify` and `harness report`.
    expected = (
        "success arch isa os-abi gpu mpi mpi-singleton missing-binary application pull timeout "
        "infra unknown"
    )
    assert " ".join(REASONS) == expected


def test_classification_is_frozen():
    c = classify(lines(LAMMPS_OK))
    assert isinstance(c, Classification)
    with pytest.raises(AttributeError):
        c.reason = "unknown"  # type: ignore[misc]


# --- LAB texts --------------------------------------------------------------------------------


def test_lab_glibc_in_container_is_os_abi():
    err = (
        "/usr/bin/lmp: /lib/x86_64-linux-gnu/libc.so.6: version 'GLIBC_2.34' not found "
        "(required by /lib/x86_64-linux-gnu/libmpi.so.40)"
    )
    assert classify(err, exit_code=1, ranks=2) == Classification("os-abi", err)


def test_lab_no_accelerator_is_gpu():
    err = "ERROR: Could not find/initialize a specified accelerator device (src/GPU/gpu_extra.h:35)"
    text = lines("LAMMPS (24 Dec 2020)", "  using 1 OpenMP thread(s) per MPI task", err)
    assert classify(text, exit_code=1, ranks=2) == Classification("gpu", err)


def test_lab_gpu_suffix_without_gpu_package_is_gpu():
    err = "ERROR: Using suffix gpu without GPU package installed"
    text = lines("LAMMPS (29 Sep 2021)", err)
    assert classify(text, exit_code=1, ranks=2) == Classification("gpu", err)


def test_lab_executable_not_in_path_is_missing_binary():
    err = 'FATAL:   "lmp_gpu": executable file not found in $PATH'
    assert classify(err, exit_code=255) == Classification("missing-binary", err)


def test_lab_foreign_architecture_is_arch():
    err = (
        "FATAL:   While checking container encryption: could not open image X.sif: "
        "the image's architecture (arm64) could not run on the host's (amd64)"
    )
    assert classify(err, exit_code=255, ranks=2) == Classification("arch", err)


def test_lab_chroot_exec_format_error_is_arch():
    err = "chroot: failed to run command '/bin/sh': Exec format error"
    assert classify(err, exit_code=126) == Classification("arch", err)


def test_lab_contain_pmi_failure_is_mpi():
    err = "PMI_Init [/build/openmpi/opal/mca/pmix/flux/pmix_flux.c:389:flux_init]: Operation failed"
    text = lines(err, "pmix init failed")
    assert classify(text, exit_code=1, ranks=2) == Classification("mpi", err)


SINGLETON = [
    "LAMMPS (29 Sep 2021)",
    "  1 by 1 by 1 MPI processor grid",
    "Loop time of 0.151562 on 1 procs for 100 steps with 4000 atoms",
    "Total wall time: 0:00:00",
    "LAMMPS (29 Sep 2021)",
    "  1 by 1 by 1 MPI processor grid",
    "Loop time of 0.153417 on 1 procs for 100 steps with 4000 atoms",
    "Total wall time: 0:00:00",
]


def test_lab_singletons_with_ranks():
    c = classify(lines(SINGLETON), exit_code=0, ranks=2)
    assert c == Classification(
        "mpi-singleton", "Loop time of 0.151562 on 1 procs for 100 steps with 4000 atoms"
    )


def test_singletons_detected_without_ranks():
    # two banners, every run on 1 proc: the ranks never formed one MPI job
    c = classify(lines(SINGLETON))
    assert c.reason == "mpi-singleton"
    assert c.evidence == "Loop time of 0.151562 on 1 procs for 100 steps with 4000 atoms"


def test_one_proc_asked_one_proc_ran_is_success():
    one = SINGLETON[:4]
    assert classify(lines(one), exit_code=0, ranks=1) == Classification("success", one[2])


def test_lab_hybrid_run_with_harmless_btl_warning_is_success():
    text = lines(
        "LAMMPS (4 Feb 2025)",
        "[host:01234] btl_tcp_proc.c:266:mca_btl_tcp_proc_create_interface_graph] "
        "Unable to find reachable pairing between local and remote interfaces",
        "Loop time of 0.152 on 2 procs for 100 steps with 4000 atoms",
        "Total wall time: 0:00:00",
    )
    assert classify(text, exit_code=0, ranks=2) == Classification(
        "success", "Loop time of 0.152 on 2 procs for 100 steps with 4000 atoms"
    )


# --- dev-logs texts ---------------------------------------------------------------------------


def test_devlog_success_despite_noise():
    text = lines(FLUX_PREAMBLE, LAMMPS_OK)
    expected = Classification(
        "success", "Loop time of 7.66242 on 4 procs for 100 steps with 2432 atoms"
    )
    assert classify(text) == expected
    assert classify(text, exit_code=0, ranks=4) == expected


def test_devlog_procs_short_of_ranks_is_not_success():
    loop = "Loop time of 7.66242 on 4 procs for 100 steps with 2432 atoms"
    # one 4-proc run when 8 ranks were asked: neither success nor singletons
    c = classify(lines(FLUX_PREAMBLE, LAMMPS_OK), exit_code=0, ranks=8)
    assert c == Classification("unknown", loop)
    # two 4-proc runs (two LAMMPS, each on half the ranks) are singleton-like
    two = classify(lines(LAMMPS_OK, LAMMPS_OK), exit_code=0, ranks=8)
    assert two == Classification("mpi-singleton", loop)


def test_devlog_flux_view_glibc_is_os_abi():
    text = lines(
        FLUX_PREAMBLE[:3],
        GLIBC_FLUX,
        "flux: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.33' not found (required by flux)",
    )
    # Flux itself (the operator's, bound into the image) cannot load there: a program of the
    # stack that runs inside the image failing to load is the image's ABI failure
    assert classify(text) == Classification("os-abi", GLIBC_FLUX, source="application")


def test_devlog_flux_broker_glibcxx_is_os_abi():
    text = lines(FLUX_PREAMBLE[1:5], GLIBCXX_BROKER)
    # the line is longer than the evidence limit: evidence is its first 300 characters
    assert len(GLIBCXX_BROKER) > 300
    assert classify(text) == Classification("os-abi", GLIBCXX_BROKER[:300], source="application")


def test_devlog_missing_libcuda_is_gpu_not_os_abi_nor_missing_binary():
    text = lines(
        FLUX_PREAMBLE,  # starts with "curl: command not found"
        [LIBCUDA] * 4,
        "job-manager.err[0]: jobtap: job.inactive-add: callback returned error",
        "broker.err[0]: rc2.0: flux submit -N 2 -n4 --quiet --watch lmp_gpu -v x 2 -v y 2 -v z 2 "
        "-in in.reaxc.hns -nocite Exited (rc=127) 0.5s",
        "broker.info[0]: rc2-fail: run->cleanup 0.509925s",
    )
    assert classify(text) == Classification("gpu", LIBCUDA)


def test_devlog_mpich_pmpi_init_is_mpi():
    text = lines(
        FLUX_PREAMBLE,
        [MPICH_INIT] * 2,
        "MPIR_Init_thread(176)........: ",
        "MPID_Init(1525)..............: ",
        "MPIDI_OFI_mpi_init_hook(1478): ",
        "(unknown)(): Other MPI error",
        "job.exception: type=exec severity=0 MPI_Abort: aborted",
        "broker.err[0]: rc2.0: flux submit -N 2 -n4 --quiet --watch lmp -v x 2 -v y 2 -v z 2 "
        "-in in.reaxc.hns -nocite Exited (rc=143) 0.9s",
    )
    assert classify(text) == Classification("mpi", MPICH_INIT)


def test_devlog_noise_only_failure_is_unknown_with_first_real_suspicious_line():
    rc = (
        "broker.err[0]: rc2.0: flux submit -N 2 -n4 --quiet --watch lmp -v x 2 -v y 2 -v z 2 "
        "-in in.reaxc.hns -nocite Exited (rc=1) 0.5s"
    )
    text = lines(FLUX_PREAMBLE, rc, "broker.info[0]: goodbye: goodbye->exit 0.02199ms")
    # the application printed nothing suspicious: the first suspicious line is Flux's own
    assert classify(text, exit_code=1) == Classification(
        "unknown", INFRA_PREFIX + rc, source="infrastructure"
    )


# --- precedence and other signatures ----------------------------------------------------------


def test_first_real_failure_beats_later_mpi_abort():
    err = "ERROR: Could not find/initialize a specified accelerator device (src/GPU/gpu_extra.h:35)"
    text = lines(
        "LAMMPS (24 Dec 2020)",
        err,
        "application called MPI_Abort(MPI_COMM_WORLD, 1) - process 0",
        "It looks like MPI_INIT failed for some reason",
    )
    assert classify(text, exit_code=1, ranks=2) == Classification("gpu", err)


def test_harmless_openmpi_plugin_warning_does_not_hide_the_real_cause():
    mca = (
        "[host:00042] mca_base_component_repository_open: unable to open mca_btl_smcuda: "
        "libcuda.so.1: cannot open shared object file: No such file or directory (ignored)"
    )
    err = "ERROR: Using suffix gpu without GPU package installed"
    text = lines(mca, "LAMMPS (29 Sep 2021)", err)
    assert classify(text, exit_code=1, ranks=2) == Classification("gpu", err)
    # ... is harmless when LAMMPS completes
    ok = lines(mca, LAMMPS_OK)
    assert classify(ok, exit_code=0, ranks=4).reason == "success"
    # ... and is the only lead when nothing else is printed
    assert classify(lines(mca, "Killed"), exit_code=137) == Classification("mpi", mca)


def test_openmpi_init_failures_are_mpi():
    first = "It looks like opal_init failed for some reason; your parallel process is"
    text = lines(
        "--------------------------------------------------------------------------",
        first,
        "likely to abort.  There are many reasons that a parallel process can",
        "*** An error occurred in MPI_Init",
    )
    assert classify(text, exit_code=1) == Classification("mpi", first)
    err = "*** An error occurred in MPI_Init"
    assert classify(lines("[n01:123] *** Process received signal ***", err)) == (
        Classification("mpi", err)
    )


def test_flux_start_failed_is_missing_binary():
    err = (
        "3.416s: flux-shell[0]: FATAL: task 0 (host fluke120): start failed: "
        "/g/g0/garlick/nosuchcommand: No such file or directory"
    )
    text = lines(err, "flux-job: task(s) exited with exit code 127")
    assert classify(text, exit_code=127) == Classification("missing-binary", err)


def test_shell_command_not_found_is_missing_binary_but_helper_script_is_not():
    err = "bash: line 1: lmp: command not found"
    assert classify(lines(FLUX_PREAMBLE[0], err), exit_code=127) == Classification(
        "missing-binary", err
    )
    # only a helper script's missing command: not a missing LAMMPS binary
    assert classify(FLUX_PREAMBLE[0], exit_code=1).reason == "unknown"


@pytest.mark.parametrize(
    "err",
    [
        "FATAL:   While pulling image from oras registry: failed to get checksum for "
        "oras://127.0.0.1:5000/lammps-matrix:nope: manifest unknown",
        "FATAL:   Unable to handle docker://ghcr.io/rse-ops/lammps-matrix:nope uri: "
        "failed to get checksum for docker://ghcr.io/rse-ops/lammps-matrix:nope",
    ],
)
def test_pull_failures(err):
    assert classify(lines("INFO:    Converting OCI blobs to SIF format", err), exit_code=255) == (
        Classification("pull", err)
    )


def test_timeout_flag_and_text():
    text = lines("LAMMPS (29 Sep 2021)", "Step Temp E_pair", "     100   1.1   -6.7")
    assert classify(text, timed_out=True) == Classification(
        "timeout", "100   1.1   -6.7", source="harness"
    )
    slurm = (
        "slurmstepd: error: *** JOB 1234 ON n01 CANCELLED AT 2024-02-07T03:40:00 "
        "DUE TO TIME LIMIT ***"
    )
    assert classify(lines(text, slurm), exit_code=143) == Classification("timeout", slurm)
    # a timeout after LAMMPS completed is still a timeout (the harness killed it)
    assert classify(lines(LAMMPS_OK), timed_out=True).reason == "timeout"


def test_exit_code_zero_is_not_enough_for_success():
    text = "LAMMPS (29 Sep 2021)\nReading data file ..."
    assert classify(text, exit_code=0, ranks=2) == Classification(
        "unknown", "Reading data file ..."
    )


def test_completed_but_nonzero_exit_is_unknown():
    text = lines(LAMMPS_OK, "Segmentation fault (core dumped)", "")
    assert classify(text, exit_code=139, ranks=4) == Classification(
        "unknown", "Segmentation fault (core dumped)"
    )


def test_evidence_is_truncated_and_empty_text_is_unknown():
    long_err = (
        "lmp: /lib64/libc.so.6: version `GLIBC_2.38' not found (required by " + "x" * 500 + ")"
    )
    c = classify(long_err, exit_code=1)
    assert c.reason == "os-abi"
    assert c.evidence == long_err[:300]
    assert classify("", exit_code=1) == Classification("unknown", "")


def test_classify_file_reads_undecodable_bytes(tmp_path):
    p = tmp_path / "run.log"
    p.write_bytes(b"\xff\xfe garbage\n" + LIBCUDA.encode() + b"\n")
    assert classify_file(p) == Classification("gpu", LIBCUDA)


# ----------------------------------------------------------------------------------------------
# provenance: a MiniCluster's wrapper lines around the application's output
# ----------------------------------------------------------------------------------------------

# LAB texts ("Outcomes observed"): what the application printed
LAB_OK = [
    "LAMMPS (29 Sep 2021)",
    "  1 by 1 by 2 MPI processor grid",
    "Loop time of 0.152 on 2 procs for 100 steps with 4000 atoms",
    "Performance: 2842105.263 tau/day, 6578.947 timesteps/s",
    "Total wall time: 0:00:00",
]
LAB_GPU = "ERROR: Could not find/initialize a specified accelerator device (src/GPU/gpu_extra.h:35)"
LAB_GLIBC = (
    "/usr/bin/lmp: /lib/x86_64-linux-gnu/libc.so.6: version 'GLIBC_2.34' not found "
    "(required by /lib/x86_64-linux-gnu/libmpi.so.40)"
)

# The operator's helper binary on a node of another architecture, as bash and as the wait
# script's own helper report it (the Flux view is the operator's, not the image's).
HELPER_BASH = (
    "/flux_operator/wait-0.sh: line 31: /mnt/flux/view/bin/wait-fs: "
    "cannot execute binary file: Exec format error"
)
HELPER_WAITFS = (
    "\U0001f7e7\ufe0f  wait-fs: fork/exec /mnt/flux/view/bin/fs-check: exec format error"
)
SUBMIT = (
    "\U0001f300 Submit Mode: flux start -o --config /mnt/flux/view/etc/flux/config "
    "-Stbon.fanout=256 -Slog-stderr-level=6 -Slog-stderr-mode=local  "
    "flux submit  -N 2 -n2   --quiet --watch lmp -in in.lj"
)
JOBTAP = "job-manager.err[0]: jobtap: job.new: callback returned error"


def minicluster_log(app: list[str], *, helper: str | None = HELPER_BASH, rc: int = 0) -> str:
    """A Flux Operator lead-broker log (in the form of the reference experiment's): the
    wrapper's prelude, its submission line, broker lines, the application's lines, cleanup."""
    prelude = [
        "/flux_operator/wait-0.sh: line 23: curl: command not found",
        *([helper] if helper else []),
        "Flux install root: /mnt/flux/view",
        "PATH is /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/mnt/flux/view/bin",
        "Hello user root",
        "\U0001f31f\ufe0f Curve Certificate",
        "curve.cert",
        '    public-key = "0000000000000000000000000000000000000000"',
        "\U0001f44b Hello, I'm mc-0-0",
        "The main host is mc-0-0",
        "\U0001f6a9\ufe0f Flux Option Flags defined",
        "Command provided is: lmp -in in.lj",
        "Flags for flux are -N 2 -n2  ",
    ]
    level = "info" if rc == 0 else "err"
    return lines(
        prelude,
        SUBMIT,
        "Flags for flux are -N 2 -n2  ",
        "broker.info[0]: start: none->join 0.26953ms",
        "cron.info[0]: synchronizing cron tasks to event heartbeat.pulse",
        "job-manager.info[0]: restart: checkpoint.job-manager not found",
        "broker.info[0]: quorum-full: quorum->run 0.310733s",
        JOBTAP,
        app,
        "job-manager.err[0]: jobtap: job.inactive-add: callback returned error",
        f"broker.{level}[0]: rc2.0: flux submit -N 2 -n2 --quiet --watch lmp -in in.lj "
        f"Exited (rc={rc}) 0.5s",
        "broker.info[0]: goodbye: goodbye->exit 0.02199ms",
    )


@pytest.mark.parametrize("helper", [HELPER_BASH, HELPER_WAITFS])
@pytest.mark.parametrize(
    ("app", "rc", "expected"),
    [
        (LAB_OK, 0, ("success", LAB_OK[2])),
        (
            ["LAMMPS (24 Dec 2020)", "  using 1 OpenMP thread(s) per MPI task", LAB_GPU],
            1,
            ("gpu", LAB_GPU),
        ),
        ([LAB_GLIBC], 1, ("os-abi", LAB_GLIBC)),
    ],
    ids=["success", "gpu", "os-abi"],
)
def test_minicluster_wrapper_failure_does_not_judge_the_application(helper, app, rc, expected):
    text = minicluster_log(app, helper=helper, rc=rc)
    # the wrapper's line alone is arch: that is what the classifier used to report
    assert classify(helper).reason == "arch"
    for kwargs in ({}, {"exit_code": rc, "ranks": 2}):
        c = classify(text, **kwargs)
        assert (c.reason, c.evidence, c.source) == (*expected, "application")
        assert c.note == helper.strip()


def test_minicluster_wrapper_failure_after_the_submission_line_is_a_note_too():
    # the operator's helpers and Flux's log lines are the infrastructure's wherever they are
    broker_failure = "broker.err[0]: module exec format error loading /mnt/flux/view/lib/x.so"
    text = minicluster_log([HELPER_WAITFS, broker_failure, *LAB_OK], helper=None)
    c = classify(text, exit_code=0, ranks=2)
    assert c == Classification("success", LAB_OK[2], note=HELPER_WAITFS.strip())


def test_minicluster_clean_run_has_no_note():
    c = classify(minicluster_log(LAB_OK, helper=None), exit_code=0, ranks=2)
    assert c == Classification("success", LAB_OK[2])


def test_minicluster_flux_cannot_load_in_the_image_is_the_images():
    # the operator's Flux, bound into an image with an older C library, cannot load there after
    # the submission: the stack runs inside the image, so it is the image's ABI failure
    text = minicluster_log(
        [
            GLIBC_FLUX,
            "flux: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.33' not found "
            "(required by flux)",
        ],
        helper=None,
        rc=1,
    )
    c = classify(text)
    assert c == Classification("os-abi", GLIBC_FLUX, source="application")
    # the broker of another install, by its path
    c = classify(minicluster_log([GLIBCXX_BROKER], helper=None, rc=1))
    assert c == Classification("os-abi", GLIBCXX_BROKER[:300], source="application")


# Lines written for the rule (not copied from any log): the view's programs of a MiniCluster
# whose view is newer than the image, after the submission, beside a wrapper's helper of the
# wrong architecture. The loader's refusal is the image's (os-abi), whatever program it names;
# the helper's Exec format error is the infrastructure's and stays a note.
IN_IMAGE_LOADER = [
    "flux: /lib64/libc.so.6: version `GLIBC_2.34' not found (required by flux)",
    "/mnt/flux/view/libexec/flux/cmd/flux-shell: /lib64/libc.so.6: version `GLIBC_2.32' not "
    "found (required by /mnt/flux/view/lib/libflux-core.so.2)",
    "/mnt/flux/view/bin/flux: error while loading shared libraries: libzmq.so.5: cannot open "
    "shared object file: No such file or directory",
    "flux-shell: /usr/lib64/libstdc++.so.6: version `GLIBCXX_3.4.29' not found (required by "
    "/mnt/flux/view/lib/flux/libpmi.so)",
]
WRONG_ARCH_HELPER = "/mnt/flux/view/bin/wait-helper: cannot execute binary file: Exec format error"


@pytest.mark.parametrize("line", IN_IMAGE_LOADER)
def test_a_stack_program_that_cannot_load_in_the_image_is_os_abi(line):
    text = minicluster_log([WRONG_ARCH_HELPER, line], helper=None, rc=1)
    c = classify(text)
    assert (c.reason, c.evidence, c.source) == ("os-abi", line[:300], "application")
    # before the submission the same line is the operator's (its broker start, the view copy)
    before = lines(line, "🌀 Submit Mode: flux start -o --config x flux submit -n2 lmp -in in.lj")
    assert classify(before).source == "infrastructure"


def test_only_the_wrapper_ran_and_its_helper_failed():
    # no submission line: the wrapper died before it; its lines are still the infrastructure's
    text = lines("Flux install root: /mnt/flux/view", HELPER_BASH, "Hello user root")
    c = classify(text, exit_code=126)
    assert c == Classification("arch", INFRA_PREFIX + HELPER_BASH, source="infrastructure")


def test_timeout_keeps_the_infrastructure_failure_as_a_note():
    text = minicluster_log(["LAMMPS (29 Sep 2021)", "Step Temp E_pair"], rc=143)
    c = classify(text, timed_out=True)
    assert c == Classification("timeout", "Step Temp E_pair", HELPER_BASH, "harness")


def test_an_application_that_started_is_not_blamed_on_its_wrapper():
    # LAMMPS started (its banner) and crashed with no signature: unknown, its own line as
    # evidence, the wrapper's failure as a note -- not `arch` from the wrapper
    text = minicluster_log(["LAMMPS (29 Sep 2021)", "Segmentation fault (core dumped)"], rc=139)
    c = classify(text, exit_code=139, ranks=2)
    assert c == Classification("unknown", "Segmentation fault (core dumped)", HELPER_BASH)
    # ... also when the application printed nothing suspicious
    quiet = classify(minicluster_log(["LAMMPS (29 Sep 2021)", "Reading data file ..."], rc=1))
    assert (quiet.reason, quiet.note) == ("unknown", HELPER_BASH)
    assert quiet.source == "infrastructure"  # the first suspicious line: Flux's "Exited (rc=1)"
    assert quiet.evidence.startswith(INFRA_PREFIX + "broker.err[0]: rc2.0: flux submit")


def test_provenance_tags():
    from harness.judge.provenance import (
        APPLICATION,
        INFRASTRUCTURE,
        application_start,
        infrastructure_kind,
        submission_line,
        tag_lines,
    )

    text = minicluster_log(LAB_OK)
    tagged = tag_lines(text)
    assert [ln for _, ln in tagged] == text.split("\n")
    tags = dict((line, src) for src, line in tagged)  # a repeated line: its last tag
    assert tags[HELPER_BASH] == tags[SUBMIT] == tags["Hello user root"] == INFRASTRUCTURE
    assert tags[JOBTAP] == INFRASTRUCTURE
    assert all(tags[ln] == APPLICATION for ln in LAB_OK)
    # the operator echoes its flags before and after the submission line: only the first is
    # in its prelude (the other is not of a known infrastructure form)
    flags = [src for src, ln in tagged if ln.startswith("Flags for flux")]
    assert flags == [INFRASTRUCTURE, APPLICATION]
    start, end = submission_line(text)
    assert text[start:end] == SUBMIT
    assert application_start(text) == end + 1

    # a Flux log line that reports a command is not the wrapper echoing it: LAMMPS's lines
    # before "broker.info[0]: rc2.0: flux submit ..." stay the application's
    plain = lines(LAMMPS_OK)
    assert submission_line(plain) is None
    assert [src for src, ln in tag_lines(plain) if ln.startswith("Loop time")] == [APPLICATION]

    # other ways to echo the submission
    for echo in ("+ flux run -N 2 -n 4 lmp -in in.lj", "Batch Mode: /opt/view/bin/flux batch j"):
        assert submission_line(lines("setting up", echo, "LAMMPS (29 Sep 2021)")) is not None
    assert submission_line("flux-shell[0]: flux run -n2 lmp") is None

    # line forms that are the infrastructure's anywhere
    assert infrastructure_kind("sched-fluxion-qmanager.debug[0]: feasibility") == "flux-log"
    assert infrastructure_kind("2024-02-07T03:32:39Z broker.warning[1]: x") == "flux-log"
    assert infrastructure_kind(GLIBC_FLUX) == "flux-program"
    assert infrastructure_kind(GLIBCXX_BROKER) == "flux-program"
    assert (
        infrastructure_kind(HELPER_WAITFS) == infrastructure_kind(HELPER_BASH) == ("operator-wait")
    )
    for view in (
        "/mnt/flux/view/bin/python3.11: cannot execute binary file: Exec format error",
        "bash: /mnt/flux/view/bin/flux: cannot execute binary file: Exec format error",
        "exec /mnt/flux/view/bin/flux: exec format error",
    ):
        assert infrastructure_kind(view) == "operator-view", view
    assert infrastructure_kind("INFO:    Converting OCI blobs to SIF format") == (
        "apptainer-chatter"
    )
    assert infrastructure_kind("WARNING: passwd file doesn't exist in container") == (
        "apptainer-chatter"
    )
    # ... but not the job shell's report on the tasks it starts, Apptainer's FATAL lines, a
    # LAMMPS warning citing its source, the application's own loader error
    for app_line in (
        "3.416s: flux-shell[0]: FATAL: task 0 (host n1): start failed: lmp: "
        "No such file or directory",
        'FATAL:   "lmp_gpu": executable file not found in $PATH',
        "WARNING: Using a manybody potential with bonds/angles/dihedrals (src/pair.cpp:242)",
        LAB_GLIBC,
        LIBCUDA,
        MPICH_INIT,
        "lmp: /lib64/libc.so.6: version `GLIBC_2.34' not found (required by "
        "/mnt/flux/view/lib/libpmi.so.0)",
        "job.exception: type=exec severity=0 MPI_Abort: aborted",
    ):
        assert infrastructure_kind(app_line) is None, app_line


def test_apptainer_chatter_does_not_decide_but_its_fatal_line_does():
    fatal = 'FATAL:   "lmp_gpu": executable file not found in $PATH'
    text = lines("INFO:    Using cached SIF image", "WARNING: unable to open nvidia libs", fatal)
    assert classify(text, exit_code=255) == Classification("missing-binary", fatal)


# ----------------------------------------------------------------------------------------------
# typed faults: what the executor knows decides
# ----------------------------------------------------------------------------------------------

FAULT_CASES = {
    "pull": [
        (
            "INFO:    Downloading oras image\n"
            "FATAL:   While checking container encryption: could not open image x.sif: "
            "the image's architecture (arm64) could not run on the host's (amd64)\n",
            "arch",
            "FATAL:   While checking container encryption: could not open image x.sif: "
            "the image's architecture (arm64) could not run on the host's (amd64)",
        ),
        (
            "FATAL:   While pulling image from oras registry: failed to get checksum for "
            "oras://127.0.0.1:5000/lammps-matrix:nope: manifest unknown",
            "pull",
            "FATAL:   While pulling image from oras registry: failed to get checksum for "
            "oras://127.0.0.1:5000/lammps-matrix:nope: manifest unknown",
        ),
        ("the pull went wrong\n  somehow, at the end  \n\n", "pull", "somehow, at the end"),
    ],
    "registry-unreachable": [
        (
            "registry 127.0.0.1:5000 did not answer: connection refused",
            "infra",
            "registry 127.0.0.1:5000 did not answer: connection refused",
        )
    ],
    "start-timeout": [
        (
            "flux executor: job f2 failed to start within 60 s (state SCHED): cancelled",
            "infra",
            "flux executor: job f2 failed to start within 60 s (state SCHED): cancelled",
        )
    ],
    "lost-instance": [
        (
            "flux executor: lost the Flux instance while following job f3:\nConnection reset",
            "infra",
            "flux executor: lost the Flux instance while following job f3: Connection reset",
        )
    ],
    "cancelled": [
        (
            "flux: job f4 cancelled by another user: maintenance",
            "infra",
            "flux: job f4 cancelled by another user: maintenance",
        )
    ],
}


def test_fault_cases_cover_every_kind():
    assert set(FAULT_CASES) == set(KINDS)


@pytest.mark.parametrize(
    ("kind", "detail", "reason", "evidence"),
    [(k, *case) for k, cases in FAULT_CASES.items() for case in cases],
)
def test_faults_decide(kind, detail, reason, evidence):
    # the job's own text does not matter when a fault is given, even a completed LAMMPS
    for text in ("", lines(LAMMPS_OK)):
        c = classify(text, exit_code=0, ranks=4, fault=Fault(kind, detail))
        assert c == Classification(reason, evidence, source="harness")
    assert reasons.counts_in_rate(reason) == (reason != "infra")


# ----------------------------------------------------------------------------------------------
# reasons as data
# ----------------------------------------------------------------------------------------------


def _reasons_yaml() -> dict:
    import yaml

    return yaml.safe_load((Path(reasons.__file__).parents[1] / "data/reasons.yaml").read_text())


def test_reasons_file_drives_the_module():
    data = _reasons_yaml()
    assert tuple(r["name"] for r in data["reasons"]) == REASONS == reasons.REASONS
    for name in REASONS:
        r = reasons.reason(name)
        assert r.name == name and r.description and isinstance(r.rate, bool)
        assert len(r.colour) == 7 and r.colour.startswith("#")
        assert reasons.counts_in_rate(name) is r.rate
    assert len({r.colour for r in reasons.all_reasons()}) == len(REASONS)
    assert reasons.reason("infra").rate is False
    assert [n for n in REASONS if not reasons.counts_in_rate(n)] == ["infra"]
    assert reasons.counts_in_rate("a-reason-of-an-old-record") is True
    with pytest.raises(KeyError):
        reasons.reason("nope")
    # the report's colours, unchanged
    new = ("infra", "application", "isa")
    assert {n: reasons.reason(n).colour for n in REASONS if n not in new} == {
        "success": "#2ca02c",
        "arch": "#d62728",
        "os-abi": "#ff7f0e",
        "gpu": "#9467bd",
        "mpi": "#1f77b4",
        "mpi-singleton": "#17becf",
        "missing-binary": "#8c564b",
        "pull": "#e377c2",
        "timeout": "#bcbd22",
        "unknown": "#7f7f7f",
    }
    # the rules, noise and fault meanings are the file's, in its order
    assert [(r.reason, r.strength, list(r.needles)) for r in reasons.RULES] == [
        (r["reason"], r["strength"], r["needles"]) for r in data["rules"]
    ]
    assert [r.regex.pattern for r in reasons.RULES] == [r["regex"] for r in data["rules"]]
    assert reasons.NOISE.search(JOBTAP)
    for kind in KINDS:
        rule = reasons.fault_rule(kind)
        assert (rule is None) == (data["faults"][kind] is None)
        assert rule is None or rule.reason in REASONS


def test_a_new_reason_is_data_only(monkeypatch):
    data = _reasons_yaml()
    data["reasons"].insert(
        -1, {"name": "disk", "description": "the disk was full", "colour": "#123456", "rate": True}
    )
    data["rules"].append(
        {"reason": "disk", "needles": ["no space left"], "regex": r"No space left on device"}
    )
    cat = reasons.parse(data)
    monkeypatch.setattr(reasons, "RULES", cat.rules)
    monkeypatch.setattr(reasons, "NEEDLES", tuple({n for r in cat.rules for n in r.needles}))
    err = "lmp: write error: No space left on device"
    assert classify(lines("LAMMPS (29 Sep 2021)", err), exit_code=1) == Classification("disk", err)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["reasons"][1].pop("colour"), "colour"),
        (lambda d: d["reasons"][1].update(rate="yes"), "rate"),
        (lambda d: d["reasons"].append(dict(d["reasons"][0])), "twice"),
        (lambda d: d["rules"][0].update(reason="nope"), "unknown reason"),
        (lambda d: d["rules"][0].update(needles=["Exec"]), "lower-case"),
        (lambda d: d["rules"][0].update(regex="("), "bad regex"),
        (lambda d: d["faults"].pop("cancelled"), "cancelled"),
        (lambda d: d["faults"].update(pull={"reason": "nope"}), "known 'reason'"),
        (
            lambda d: d.update(reasons=[r for r in d["reasons"] if r["name"] != "unknown"]),
            "needs the reasons unknown",
        ),
    ],
)
def test_reasons_file_is_checked(edit, message):
    from harness.errors import HarnessError

    data = _reasons_yaml()
    edit(data)
    with pytest.raises(HarnessError, match=message):
        reasons.parse(data)


# ----------------------------------------------------------------------------------------------
# acceptance: the published experiment's logs, per-mode counts
# ----------------------------------------------------------------------------------------------


def _shared() -> Path | None:
    env = os.environ.get("HARNESS_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared")
    for c in candidates:
        if c.is_dir():
            return c
    return None


SHARED = _shared()
DEV_LOGS = SHARED / "anchors" / "lammps-matrix" / "dev-logs" if SHARED else None
LABELS = {"success": "success", "os abi issue": "os-abi", "missing gpu": "gpu", "mpi error": "mpi"}

EXPECTED = {
    "basic": {"success": 7, "os-abi": 18, "gpu": 5},
    "platform": {"success": 6, "os-abi": 4, "gpu": 15, "mpi": 5},
    "platform-version": {"success": 16, "gpu": 11, "mpi": 3},
    "descriptive-basic": {"success": 30},
    "openmpi": {"success": 30},
    "mpich": {"success": 30},
    "intel-mpi": {"success": 30},
}


def _need_dev_logs() -> Path:
    if DEV_LOGS is None or not DEV_LOGS.is_dir():
        pytest.skip(
            "shared anchors not found (set HARNESS_SHARED or place 'shared' next to the repo): "
            "no dev-logs to check the classifier against"
        )
    return DEV_LOGS


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_published_counts_per_mode(mode):
    root = _need_dev_logs()
    logs = sorted((root / mode).glob("*.log"))
    assert len(logs) == sum(EXPECTED[mode].values())
    got = Counter(classify_file(p).reason for p in logs)
    assert dict(got) == EXPECTED[mode]


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_published_csv_agrees_with_expected_counts(mode):
    # the expected counts above are the published labels, not numbers fitted to the classifier
    root = _need_dev_logs()
    with open(root / "lammps-times-amd64.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["experiment"] == mode]
    assert dict(Counter(LABELS[r["reason"]] for r in rows)) == EXPECTED[mode]


def test_published_evidence_is_a_real_line_of_its_log():
    root = _need_dev_logs()
    for p in sorted(root.glob("*/*.log")):
        c = classify_file(p)
        text = p.read_text(errors="replace")
        # evidence is a real line (stripped, cut to 300 characters), marked when it is the
        # infrastructure's
        evidence = c.evidence
        if c.source == "infrastructure":
            assert evidence.startswith(INFRA_PREFIX), p
            evidence = evidence[len(INFRA_PREFIX) :]
        else:
            assert c.source == "application", p
        assert evidence and evidence in {ln.strip()[:300] for ln in text.splitlines()}, p
        # these amd64 runs print no infrastructure failure that did not decide
        assert c.note is None, p
        if c.reason != "success":
            # the failing runs never print LAMMPS's completion line
            assert "Total wall time:" not in text, p


def test_rule_needles_cover_their_patterns():
    """Each rule is only tried on lines holding one of its needles: check, on every line of the
    texts above and of the shared logs, that no pattern matches a line its needles miss."""
    corpus = [
        *FLUX_PREAMBLE,
        *LAMMPS_OK,
        *SINGLETON,
        GLIBC_FLUX,
        GLIBCXX_BROKER,
        LIBCUDA,
        MPICH_INIT,
    ]
    if DEV_LOGS is not None and DEV_LOGS.is_dir():
        for p in DEV_LOGS.glob("*/*.log"):
            corpus.extend(p.read_text(errors="replace").splitlines())
    for rule in reasons.RULES:
        assert all(n == n.lower() for n in rule.needles), rule.needles
        for line in corpus:
            if rule.regex.search(line):
                assert any(n in line.lower() for n in rule.needles), (rule.regex.pattern, line)


def test_cli_reads_a_jobs_stdout_with_its_stderr(tmp_path):
    """`harness classify DIR` sees what `harness run` saw: X.out together with X.err."""
    from tests.conftest import cli

    (tmp_path / "iter-0000.out").write_text("")
    (tmp_path / "iter-0000.err").write_text('FATAL:   "lmp": executable file not found in $PATH\n')
    proc = cli("classify", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    (got,) = json.loads(proc.stdout)
    assert (got["reason"], got["evidence"]) == (
        "missing-binary",
        'FATAL:   "lmp": executable file not found in $PATH',
    )


def test_the_applications_own_error_is_the_cause_not_mpis_teardown():
    """The lab's bookworm image run outside its input's directory: LAMMPS stops on its own
    error (stdout), mpirun then prints its teardown, including an ORTE_ERROR_LOG (stderr)."""
    out = "LAMMPS (29 Sep 2021 - Update 2)\nERROR on proc 0: Cannot open input script in.lj: No such file or directory (src/lammps.cpp:520)\nLast command: (unknown)\n"  # noqa: E501
    err = "[vm:07372] [[28722,0],0] ORTE_ERROR_LOG: Data unpack would read past end of buffer in file ../../../orte/util/show_help.c at line 501\n"  # noqa: E501
    c = classify(out + "\n" + err, exit_code=1, ranks=2)
    assert (c.reason, c.evidence.split(":")[0]) == ("application", "ERROR on proc 0")
    # a LAMMPS GPU error stays `gpu` (the specific rule is tried first on the line)
    gpu = "ERROR: Could not find/initialize a specified accelerator device (src/GPU/gpu_extra.h:35)"
    assert classify(gpu, exit_code=1).reason == "gpu"


def test_slurm_pmix_noise_and_tcp_pairing():
    """Under Slurm's PMIx every Open MPI 4 rank prints a harmless PMIx lock error: it is not
    the cause of anything (shared LAB.md); Open MPI 5's failed TCP pairing is an MPI failure."""
    noise = "[vm:01234] PMIX ERROR: ERROR in file gds_ds12_lock_pthread.c at line 168"
    gpu = "ERROR: Could not find/initialize a specified accelerator device (src/GPU/gpu_extra.h:35)"
    assert classify(lines(noise, gpu), exit_code=1).reason == "gpu"
    assert classify(lines(noise), exit_code=0, timed_out=True).reason == "timeout"
    pairing = (
        "[vm][[1234,1],0][btl_tcp_proc.c:266:mca_btl_tcp_proc_create_interface_graph] "
        "Unable to find reachable pairing between local and remote interfaces"
    )
    assert classify(lines(pairing), exit_code=17).reason == "mpi"


def test_a_harmless_pairing_warning_does_not_hide_the_cause():
    """Open MPI 5 prints the TCP pairing line and goes on under mpirun (shared LAB.md): a later
    real cause decides; a lower-case "error:" line of another tool is not LAMMPS' ERROR."""
    pairing = "[vm][[1,1],0][btl_tcp_proc.c:266] Unable to find reachable pairing between local and remote interfaces"  # noqa: E501
    gpu = "ERROR: Could not find/initialize a specified accelerator device (src/GPU/gpu_extra.h:35)"
    assert classify(lines(pairing, gpu), exit_code=1).reason == "gpu"
    assert classify("error: something a wrapper said\n", exit_code=1).reason == "unknown"


# --- the request, not the image ------------------------------------------------------------------


def test_lab_more_ranks_than_slots_is_infra_with_the_launchers_sentence(tmp_path):
    """Open MPI's banner for `--np` above the slots (what the lab's mpirun printed for --np 64
    on 2 cores): the launcher refused the request, so it says nothing of the image."""
    banner = [
        "-" * 74,
        "There are not enough slots available in the system to satisfy the 64",
        "slots that were requested by the application:",
        "",
        "  /usr/local/bin/apptainer",
        "",
        "Either request fewer slots for your application, or make more slots",
        "available for use.",
        "-" * 74,
    ]
    c = classify(lines(*banner), exit_code=1, ranks=64)
    assert c.reason == "infra" and "not enough slots" in c.evidence


@pytest.mark.parametrize(
    "line",
    [
        "srun: error: Unable to create step for job 17: More processors requested than permitted",
        "srun: error: Unable to allocate resources: Requested node configuration is not available",
        "flux-job: task(s) exited with exit code 1: alloc: unsatisfiable request",
    ],
)
def test_schedulers_refusing_the_request_is_infra(line):
    assert classify(line, exit_code=1, ranks=8).reason == "infra"


def test_cli_judges_logs_by_the_application_given(tmp_path):
    """`harness classify --application netpipe`: NetPIPE's own criteria (a measured block, the
    main loop on two ranks) make its log a success; judged as LAMMPS it is none, and an
    unknown application is one line naming it."""
    from tests.conftest import cli
    from tests.replay import NETPIPE, NETPIPE_STDERR

    (tmp_path / "iter-0000.out").write_text(NETPIPE)
    (tmp_path / "iter-0000.err").write_text(NETPIPE_STDERR)
    got = {}
    for app in ("netpipe", "lammps"):
        proc = cli("classify", str(tmp_path), "--json", "--application", app)
        assert proc.returncode == 0, proc.stderr
        (got[app],) = json.loads(proc.stdout)
    assert got["netpipe"]["reason"] == "success", got["netpipe"]
    assert got["lammps"]["reason"] != "success", got["lammps"]
    proc = cli("classify", str(tmp_path), "--application", "gromacs")
    assert proc.returncode != 0 and "unknown application 'gromacs'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
