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

from harness.classify import REASONS, Classification, classify, classify_file

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
    expected = "success arch os-abi gpu mpi mpi-singleton missing-binary pull timeout unknown"
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
    assert classify(text) == Classification("os-abi", GLIBC_FLUX)


def test_devlog_flux_broker_glibcxx_is_os_abi():
    text = lines(FLUX_PREAMBLE[1:5], GLIBCXX_BROKER)
    # the line is longer than the evidence limit: evidence is its first 300 characters
    assert len(GLIBCXX_BROKER) > 300
    assert classify(text) == Classification("os-abi", GLIBCXX_BROKER[:300])


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
    assert classify(text, exit_code=1) == Classification("unknown", rc)


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
    assert classify(text, timed_out=True) == Classification("timeout", "100   1.1   -6.7")
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
        # evidence is a real line (stripped, cut to 300 characters)
        assert c.evidence and c.evidence in {ln.strip()[:300] for ln in text.splitlines()}, p
        if c.reason != "success":
            # the failing runs never print LAMMPS's completion line
            assert "Total wall time:" not in text, p


def test_rule_needles_cover_their_patterns():
    """Each rule is only tried on lines holding one of its needles: check, on every line of the
    texts above and of the shared logs, that no pattern matches a line its needles miss."""
    from harness.classify import _RULES

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
    for _, _, needles, rx in _RULES:
        assert all(n == n.lower() for n in needles), needles
        for line in corpus:
            if rx.search(line):
                assert any(n in line.lower() for n in needles), (rx.pattern, line)


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
