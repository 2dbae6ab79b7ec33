"""Why did a LAMMPS run fail?  One reason and the one line of output that shows it.

``classify(text, exit_code=..., ranks=..., timed_out=...)`` looks at the combined output of
a run (launcher, container runtime, MPI and LAMMPS) and returns a ``Classification``:
one of ``REASONS`` and the real line of the text that decided it.

How it decides, in this order:

1. **LAMMPS's own completion evidence** -- a "Total wall time:" line and a
   "Loop time of ... on P procs" line -- with exit code 0 or unknown and no timeout:
   ``success`` when P equals the ranks asked for (or ranks are unknown), else
   ``mpi-singleton`` when the ranks ran as independent LAMMPS processes (P = 1 < ranks,
   or several Loop time lines all with P < ranks; with ranks unknown: several LAMMPS
   banners and every run "on 1 procs"); one run on another P than asked is not a
   success (-> a failure signature if any, else ``unknown``).  Completion beats any
   warning printed on the way.
2. **The earliest failure signature** in the text (arch, os-abi, gpu, mpi, pull,
   missing-binary, time-limit text): the first real failure is the cause, what
   follows (MPI_Abort, "Exited (rc=127)", cleanup) is consequence or noise.  A few
   patterns are *weak* (Open MPI's ``mca_base_component_repository_open`` is
   usually a harmless skipped plugin): they count only when no strong signature
   exists.  Within one line, rules are tried in ``_RULES`` order, e.g. a loader
   error for ``libcuda.so`` is ``gpu`` although it is also a loader error.
3. ``timed_out=True`` -> ``timeout``.
4. Otherwise ``unknown``; the evidence is the first suspicious line
   (error/fatal/failed/abort/killed/...) or the last non-empty line.

Known noise that looks like failure is ignored everywhere (see ``_NOISE``): a
command missing inside a helper shell script ("/flux_operator/wait-0.sh: line
23: curl: command not found", "vars.sh: line 53: ps: command not found"),
Flux's "jobtap: ...: callback returned error" and "restart: checkpoint... not
found".  A missing *program the run asked for* is reported by a shell given the
command directly ("bash: lmp: command not found", "sh: 1: lmp: not found"), by
Apptainer ("executable file not found in $PATH") or by Flux ("start failed:
...: No such file or directory").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.lammps_output import banner_count, iter_loop_lines

__all__ = ["REASONS", "Classification", "classify", "classify_file"]

REASONS: tuple[str, ...] = (
    "success",
    "arch",
    "os-abi",
    "gpu",
    "mpi",
    "mpi-singleton",
    "missing-binary",
    "pull",
    "timeout",
    "unknown",
)

EVIDENCE_MAX = 300


@dataclass(frozen=True)
class Classification:
    reason: str
    evidence: str


_I = re.IGNORECASE

# Lines that look like failures but are not (checked before any rule).
_NOISE = re.compile(
    "|".join(
        [
            # a command missing *inside a helper script*: bash names the script file and line
            r"^\s*\S+\.(?:sh|bash): line \d+: .*command not found",
            # Flux job-manager plugins complaining about job events; harmless
            r"jobtap: \S+: callback returned error",
            # Flux starting without a saved checkpoint
            r"restart: checkpoint\.\S+ not found",
        ]
    ),
    _I,
)

STRONG, WEAK = 0, 1

# (reason, strength, needles, pattern), tried in this order on each line; the first hit names
# the line.  ``needles`` are lower-case strings of which every match of ``pattern`` contains
# one: the text is searched for them with str.find (fast), and only the lines holding one are
# matched against the (case-insensitive) patterns.
_RULE_SPECS: list[tuple[str, int, tuple[str, ...], str]] = [
    # --- foreign architecture ------------------------------------------------------------
    ("arch", STRONG, ("exec format",), r"exec format error"),
    (
        "arch",
        STRONG,
        ("architecture",),
        r"image'?s architecture \([^)]*\) could not run on the host",
    ),
    ("arch", STRONG, ("cannot execute binary",), r"cannot execute binary file"),
    ("arch", STRONG, ("elf class",), r"wrong ELF class"),
    # --- Open MPI plugin that failed to load: usually harmless, MPI skips it ---------------
    ("mpi", WEAK, ("mca_base_component",), r"mca_base_component_repository_open"),
    # --- GPU stack missing (before os-abi: a missing libcuda is a loader error too) --------
    (
        "gpu",
        STRONG,
        ("cannot open shared object file",),
        r"\blib(?:cuda|cudart|nvidia-[\w-]+|OpenCL|amdhip64|hsa-runtime64)\.so[\d.]*"
        r": cannot open shared object file",
    ),
    ("gpu", STRONG, ("cuda driver",), r"CUDA driver version is insufficient"),
    ("gpu", STRONG, ("cuda-capable",), r"no CUDA-capable device"),
    (
        "gpu",
        STRONG,
        ("cuda_error_",),
        r"\bCUDA_ERROR_(?:NO_DEVICE|NOT_INITIALIZED|INVALID_DEVICE)",
    ),
    ("gpu", STRONG, ("cudaerror",), r"\bcudaError(?:NoDevice|InsufficientDriver)"),
    (
        "gpu",
        STRONG,
        ("accelerator device",),
        r"Could not find/initialize a specified accelerator device",
    ),
    ("gpu", STRONG, ("suffix gpu",), r"Using suffix gpu without GPU package installed"),
    ("gpu", STRONG, ("gpu library",), r"GPU library not compiled for this accelerator"),
    ("gpu", STRONG, ("nvidia-container-cli",), r"nvidia-container-cli: .*error"),
    # --- C library / loader / C++ runtime mismatch -------------------------------------------
    (
        "os-abi",
        STRONG,
        ("not found",),
        r"version [`'\"\u2018]?[A-Z][A-Z0-9_]*_[0-9][0-9.]*['\"\u2019]? not found",
    ),
    ("os-abi", STRONG, ("error while loading",), r"error while loading shared libraries"),
    ("os-abi", STRONG, ("cannot open shared",), r"cannot open shared object file"),
    (
        "os-abi",
        STRONG,
        ("symbol lookup error", "undefined symbol: "),
        r"symbol lookup error|undefined symbol: ",
    ),
    (
        "os-abi",
        STRONG,
        ("elf interpreter", "required file not found"),
        r"bad ELF interpreter|required file not found",
    ),
    ("os-abi", STRONG, ("kernel too old",), r"FATAL: kernel too old"),
    # --- MPI / PMI bootstrap -------------------------------------------------------------
    ("mpi", STRONG, ("pmi_init", "pmi2_init", "pmix_init"), r"\bPMI[2x]?_Init\b"),
    ("mpi", STRONG, ("pmix",), r"\bpmix\b.*\b(?:init failed|error)\b|\bPMIX_ERROR\b"),
    (
        "mpi",
        STRONG,
        ("mpi_init",),
        r"\b(?:error|fail\w*)\b.*\bP?MPI_Init|\bP?MPI_Init\w*\b.*\bfail",
    ),
    (
        "mpi",
        STRONG,
        ("opal_init", "orte_init", "ompi_rte_init", "ompi_mpi_init", "prte_init"),
        r"\b(?:opal|orte|ompi_rte|ompi_mpi|prte)_init\b.*\bfail",
    ),
    ("mpi", STRONG, ("fatal error in",), r"Fatal error in P?MPI_\w+"),
    (
        "mpi",
        STRONG,
        ("orte_error", "prte_error", "opal error", "opal_error", "orte was unable"),
        r"\b(?:ORTE|PRTE)_ERROR|\bOPAL[ _]ERROR|ORTE was unable to",
    ),
    ("mpi", STRONG, ("hyd",), r"\bHYD[A-Z]*_\w+.*\b(?:error|fail\w*)\b"),
    (
        "mpi",
        STRONG,
        ("mpiexec@", "proxy:"),
        r"\[(?:mpiexec|proxy:[^\]@]*)@[^\]]*\].*\b(?:error|fail\w*)\b",
    ),
    # --- image pull ----------------------------------------------------------------------
    ("pull", STRONG, ("while pulling",), r"While pulling"),
    ("pull", STRONG, ("failed to get checksum",), r"failed to get checksum"),
    ("pull", STRONG, ("manifest unknown",), r"manifest unknown"),
    (
        "pull",
        STRONG,
        ("unable to pull", "failed to pull image", "pull access denied"),
        r"unable to pull|failed to pull image|pull access denied",
    ),
    ("pull", STRONG, ("unable to handle",), r"Unable to handle \S+ uri"),
    (
        "pull",
        STRONG,
        ("errimagepull", "imagepullbackoff"),
        r"\b(?:ErrImagePull|ImagePullBackOff)\b",
    ),
    # --- the program to run does not exist -----------------------------------------------
    (
        "missing-binary",
        STRONG,
        ("executable file not found",),
        r"executable file not found in \$PATH",
    ),
    ("missing-binary", STRONG, ("command not found",), r"\bcommand not found"),
    ("missing-binary", STRONG, ("not found",), r"^\s*\S*sh: \d+: \S+: not found\s*$"),
    (
        "missing-binary",
        STRONG,
        ("start failed:",),
        r"start failed: .*No such file or directory",
    ),
    ("missing-binary", STRONG, ("exec error",), r"exec error.*No such file or directory"),
    (
        "missing-binary",
        STRONG,
        ("execvp error on file", "unable to find the specified executable"),
        r"execvp error on file|unable to find the specified executable",
    ),
    (
        "missing-binary",
        STRONG,
        ("could not access or execute",),
        r"could not access or execute an executable",
    ),
    (
        "missing-binary",
        STRONG,
        ("no such file or directory",),
        r"FATAL:\s+stat \S+: no such file or directory|^\s*/\S+: No such file or directory\s*$",
    ),
    # --- killed by a time limit ----------------------------------------------------------
    (
        "timeout",
        STRONG,
        ("due to time limit", "job duration limit", "type=timeout"),
        r"DUE TO TIME LIMIT|job duration limit|\btype=timeout\b",
    ),
]

_RULES = [
    (reason, strength, needles, re.compile(pat, _I))
    for reason, strength, needles, pat in _RULE_SPECS
]
_NEEDLES = tuple(sorted({n for _, _, needles, _ in _RULE_SPECS for n in needles}))

_SUSPICIOUS = re.compile(
    r"\b(?:error|errors|fatal|fail|failed|failure|abort|aborted|aborting|killed|"
    r"segmentation fault|core dumped|terminated|exception|traceback|panic|denied|"
    r"cannot|unable|not found|no such file)\b"
    r"|Exited \(rc=[1-9]|exit code [1-9]",
    _I,
)


def _clip(line: str) -> str:
    """The evidence: the line stripped, cut to EVIDENCE_MAX characters (a verbatim prefix)."""
    return line.strip()[:EVIDENCE_MAX]


def _candidate_lines(text: str):
    """Yield (line, lower-cased line), in text order, for the lines holding some rule needle."""
    low = text.lower()
    if len(low) != len(text):  # a case mapping changed lengths: go line by line
        for line in text.splitlines():
            low_line = line.lower()
            if any(n in low_line for n in _NEEDLES):
                yield line, low_line
        return
    spans: set[tuple[int, int]] = set()
    for needle in _NEEDLES:
        i = low.find(needle)
        while i >= 0:
            start = low.rfind("\n", 0, i) + 1
            end = low.find("\n", i)
            if end < 0:
                spans.add((start, len(low)))
                break
            spans.add((start, end))
            i = low.find(needle, end + 1)
    for start, end in sorted(spans):
        yield text[start:end], low[start:end]


def _first_signature(text: str) -> tuple[str, str] | None:
    """(reason, line) of the earliest strong signature, else of the earliest weak one."""
    weak: tuple[str, str] | None = None
    for line, low in _candidate_lines(text):
        if _NOISE.search(line):
            continue
        for reason, strength, needles, rx in _RULES:
            if any(n in low for n in needles) and rx.search(line):
                if strength == STRONG:
                    return reason, line
                if weak is None:
                    weak = (reason, line)
                break
    return weak


def _fallback_line(text: str, start: int = 0) -> str:
    """First suspicious non-noise line from ``start``, else the last non-empty line."""
    for line in text[start:].splitlines():
        if _SUSPICIOUS.search(line) and not _NOISE.search(line):
            return _clip(line)
    for line in reversed(text.splitlines()):
        if line.strip():
            return _clip(line)
    return ""


def _completion(text: str, ranks: int | None) -> Classification | None:
    """What LAMMPS's own completion lines say, or None when LAMMPS did not complete."""
    wall = text.rfind("Total wall time:")
    if wall < 0:
        return None
    loops = list(iter_loop_lines(text))
    if not loops:
        return None
    max_procs = max(p for p, _ in loops)
    if ranks is not None and ranks > 0:
        if max_procs == ranks:
            return Classification("success", _clip(next(ln for p, ln in loops if p == ranks)))
        if max_procs < ranks and (max_procs == 1 or len(loops) >= 2):
            # each rank ran LAMMPS on its own (1 proc, or several runs all short of ranks)
            return Classification("mpi-singleton", _clip(loops[0][1]))
        # one run on another number of procs than asked: not the run we wanted, and not
        # singletons either; the caller looks for a cause and else reports unknown
        return Classification("unknown", _clip(loops[0][1]))
    if len(loops) >= 2 and max_procs == 1 and banner_count(text) >= 2:
        # one LAMMPS banner and one 1-proc run per rank: the ranks never formed one MPI job
        return Classification("mpi-singleton", _clip(loops[0][1]))
    return Classification("success", _clip(next(ln for p, ln in loops if p == max_procs)))


def classify(
    text: str,
    *,
    exit_code: int | None = None,
    ranks: int | None = None,
    timed_out: bool = False,
) -> Classification:
    """Classify one run's output (see the module docstring for the rules)."""
    text = text or ""
    completed = _completion(text, ranks)
    if (
        completed is not None
        and completed.reason != "unknown"
        and not timed_out
        and exit_code in (None, 0)
    ):
        return completed

    sig = _first_signature(text)
    if sig is not None:
        return Classification(sig[0], _clip(sig[1]))

    if timed_out:
        return Classification("timeout", _fallback_line(text))

    if completed is not None:
        # LAMMPS finished but the run still failed (exit code, or procs > ranks):
        # look for the cause after LAMMPS's last line.
        if completed.reason == "unknown":
            return completed
        return Classification("unknown", _fallback_line(text, text.rfind("Total wall time:")))
    return Classification("unknown", _fallback_line(text))


def classify_file(path: str | Path, stderr: str | Path | None = None) -> Classification:
    """Classify a saved log, with its job's stderr file when there is one (exit code and ranks
    unknown)."""
    text = Path(path).read_text(errors="replace")
    if stderr is not None and Path(stderr).is_file():
        text += "\n" + Path(stderr).read_text(errors="replace")
    return classify(text)
