"""Why did a LAMMPS run fail?  One reason and the one line of output that shows it.

``classify(text, exit_code=..., ranks=..., timed_out=..., fault=...)`` looks at the combined
output of a run (launcher, container runtime, MPI and LAMMPS) and returns a
``Classification``: one of ``REASONS``, the real line of the text that decided it, where that
line came from (``source``) and, when the infrastructure printed a failure signature that did
not decide, that line as a ``note``.

The reasons, their signature rules and the noise are data (harness/data/reasons.yaml, through
harness.judge.reasons); what LAMMPS prints when it completes is data too
(harness/data/applications/lammps.yaml, through harness.application): the application judged
is an argument (LAMMPS by default), with its own completion lines and failure rules.

Provenance first (harness.judge.provenance): every line is the *application's* or the
*infrastructure's* (a Flux Operator's wrapper prelude up to its ``flux start ... flux submit``
line, Flux broker and module log lines, the operator's helpers, Apptainer's INFO/WARNING
chatter).  The application's lines decide; infrastructure lines decide only when the
application's lines hold no completion and no signature.

How it decides, in this order:

0. A typed ``fault`` (harness.judge.faults) from the executor decides alone (``source``
   "harness"): ``pull`` -> the pull's detail is classified by the signature rules (Apptainer
   refuses a foreign-architecture image while pulling: ``arch``), else ``pull`` with the
   detail's last non-empty line; registry-unreachable, start-timeout, lost-instance,
   cancelled -> ``infra`` with the detail as evidence.
1. **LAMMPS's own completion evidence** in the application's lines -- a "Total wall time:"
   line and a "Loop time of ... on P procs" line -- with exit code 0 or unknown and no
   timeout: ``success`` when P equals the ranks asked for (or ranks are unknown), else
   ``mpi-singleton`` when the ranks ran as independent LAMMPS processes (P = 1 < ranks, or
   several Loop time lines all with P < ranks; with ranks unknown: several LAMMPS banners and
   every run "on 1 procs"); one run on another P than asked is not a success (-> a failure
   signature if any, else ``unknown``).  Completion beats any warning printed on the way.
2. **The earliest failure signature** among the application's lines (arch, os-abi, gpu, mpi,
   pull, missing-binary, time-limit text): the first real failure is the cause, what follows
   (MPI_Abort, "Exited (rc=127)", cleanup) is consequence or noise.  A few patterns are
   *weak* (Open MPI's ``mca_base_component_repository_open`` is usually a harmless skipped
   plugin): they count only when no strong signature exists.  Within one line, rules are
   tried in the file's order, e.g. a loader error for ``libcuda.so`` is ``gpu`` although it is
   also a loader error.
3. ``timed_out=True`` -> ``timeout`` (``source`` "harness").
4. **The earliest failure signature among the infrastructure's lines** (the same rules), when
   the application never started (its lines hold no banner of its own, the application's
   ``process`` criterion): the infrastructure's failure is the cause; the evidence is
   prefixed with "infrastructure: " and ``source`` is "infrastructure".  An application that
   started and then failed without a signature is not blamed on its wrapper: step 5.
5. Otherwise ``unknown``; the evidence is the first suspicious line (error/fatal/failed/
   abort/killed/...) of the application, else of the infrastructure, else the application's
   last non-empty line (for ``timeout``: the application's last line comes before the
   infrastructure's suspicious one: where the application was when it was stopped).

An infrastructure signature that did not decide is kept in ``note`` (its line, clipped): a
helper binary of the wrong architecture in the operator's wrapper while LAMMPS ran fine.

Known noise that looks like failure is ignored everywhere (reasons.yaml ``noise``): a command
missing inside a helper shell script ("/flux_operator/wait-0.sh: line 23: curl: command not
found"), Flux's "jobtap: ...: callback returned error" and "restart: checkpoint... not found".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness import application
from harness.judge import provenance
from harness.judge import reasons as _reasons
from harness.judge.faults import Fault
from harness.judge.reasons import MPI_SINGLETON, REASONS, SUCCESS, TIMEOUT, UNKNOWN

__all__ = [
    "REASONS",
    "EVIDENCE_MAX",
    "INFRA_PREFIX",
    "SOURCES",
    "Classification",
    "classify",
    "classify_file",
]

EVIDENCE_MAX = 300
NOTE_MAX = EVIDENCE_MAX
INFRA_PREFIX = "infrastructure: "

APPLICATION, INFRASTRUCTURE, HARNESS = provenance.APPLICATION, provenance.INFRASTRUCTURE, "harness"
SOURCES = (APPLICATION, INFRASTRUCTURE, HARNESS)


@dataclass(frozen=True)
class Classification:
    reason: str
    evidence: str
    # the first infrastructure signature line that did not decide (clipped), if any
    note: str | None = None
    # what decided: the application's lines, the infrastructure's lines, or the harness (a
    # typed fault, the timeout flag)
    source: str = APPLICATION


_SUSPICIOUS = re.compile(
    r"\b(?:error|errors|fatal|fail|failed|failure|abort|aborted|aborting|killed|"
    r"segmentation fault|core dumped|terminated|exception|traceback|panic|denied|"
    r"cannot|unable|not found|no such file)\b"
    r"|Exited \(rc=[1-9]|exit code [1-9]",
    re.IGNORECASE,
)


def _clip(line: str) -> str:
    """The evidence: the line stripped, cut to EVIDENCE_MAX characters (a verbatim prefix)."""
    return line.strip()[:EVIDENCE_MAX]


def _evidence(line: str, source: str) -> str:
    return INFRA_PREFIX + _clip(line) if source == INFRASTRUCTURE else _clip(line)


def _candidate_lines(text: str, needles: tuple[str, ...]):
    """Yield (start offset, line, lower-cased line), in text order, for the lines holding some
    rule needle."""
    low = text.lower()
    if len(low) != len(text):  # a case mapping changed lengths: go line by line
        pos = 0
        for line in text.split("\n"):
            low_line = line.lower()
            if any(n in low_line for n in needles):
                yield pos, line, low_line
            pos += len(line) + 1
        return
    spans: set[tuple[int, int]] = set()
    for needle in needles:
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
        yield start, text[start:end], low[start:end]


def _line_signature(line: str, low: str, rules) -> tuple[str, bool] | None:
    """(reason, strong) of the first rule naming `line`, or None (noise names nothing)."""
    if _reasons.NOISE.search(line):
        return None
    for rule in rules:
        if any(n in low for n in rule.needles) and rule.regex.search(line):
            return rule.reason, rule.strong
    return None


@dataclass
class _Signatures:
    """The first strong and first weak signature of each source: (reason, line)."""

    found: dict[tuple[str, bool], tuple[str, str]]

    def best(self, source: str) -> tuple[str, str] | None:
        return self.found.get((source, True)) or self.found.get((source, False))


def _signatures(
    text: str, prov: provenance.Provenance | None, app: application.Application
) -> _Signatures:
    found: dict[tuple[str, bool], tuple[str, str]] = {}
    rules, needles = _reasons.rules_for(app)
    for start, line, low in _candidate_lines(text, needles):
        sig = _line_signature(line, low, rules)
        if sig is None:
            continue
        source = APPLICATION if prov is None else prov.source(start, line)
        found.setdefault((source, sig[1]), (sig[0], line))
        if (APPLICATION, True) in found and (INFRASTRUCTURE, True) in found:
            break
    return _Signatures(found)


def _fallback(
    text: str,
    prov: provenance.Provenance,
    start: int = 0,
    *,
    last_app_first: bool = False,
    skip: str | None = None,
) -> tuple[str, str]:
    """(source, evidence) for `unknown` and `timeout`: from `start`, the first suspicious
    non-noise line of the application, else of the infrastructure, else the application's
    last non-empty line, else the last non-empty line.  With `last_app_first` (a timeout: where
    the application was when it was stopped) the application's last line comes before the
    infrastructure's suspicious one.  `skip` is a line already reported (the note)."""
    noise = _reasons.NOISE
    first_infra: str | None = None
    pos = start
    for line in text[start:].split("\n"):
        line_start = pos
        pos += len(line) + 1
        if line != skip and _SUSPICIOUS.search(line) and not noise.search(line):
            if prov.source(line_start, line) == APPLICATION:
                return APPLICATION, _clip(line)
            if first_infra is None:
                first_infra = line
    if first_infra is not None and not last_app_first:
        return INFRASTRUCTURE, _evidence(first_infra, INFRASTRUCTURE)
    last_any: str | None = None
    end = len(text)
    while end > start:  # the last non-empty lines, from the end, until one of the application
        line_start = max(text.rfind("\n", start, end) + 1, start)
        line = text[line_start:end]
        end = line_start - 1
        if not line.strip():
            continue
        if prov.source(line_start, line) == APPLICATION:
            return APPLICATION, _clip(line)
        if last_any is None:
            last_any = line
    if first_infra is not None:
        return INFRASTRUCTURE, _evidence(first_infra, INFRASTRUCTURE)
    if last_any is not None:
        return INFRASTRUCTURE, _evidence(last_any, INFRASTRUCTURE)
    return APPLICATION, ""


def _completion(
    text: str, start: int, ranks: int | None, app: application.Application
) -> Classification | None:
    """What the application's own completion lines (in text[start:]) say, or None when it did
    not complete."""
    part = text[start:] if start else text
    if app.completed_at(part) < 0:
        return None
    loops = list(app.iter_runs(part))
    if not loops:
        return None
    max_procs = max(p for p, _ in loops)
    if ranks is not None and ranks > 0:
        if max_procs == ranks:
            return Classification(SUCCESS, _clip(next(ln for p, ln in loops if p == ranks)))
        if max_procs < ranks and (max_procs == 1 or len(loops) >= 2):
            # each rank ran LAMMPS on its own (1 proc, or several runs all short of ranks)
            return Classification(MPI_SINGLETON, _clip(loops[0][1]))
        # one run on another number of procs than asked: not the run we wanted, and not
        # singletons either; the caller looks for a cause and else reports unknown
        return Classification(UNKNOWN, _clip(loops[0][1]))
    if len(loops) >= 2 and max_procs == 1 and app.process_count(part) >= 2:
        # one LAMMPS banner and one 1-proc run per rank: the ranks never formed one MPI job
        return Classification(MPI_SINGLETON, _clip(loops[0][1]))
    return Classification(SUCCESS, _clip(next(ln for p, ln in loops if p == max_procs)))


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return _clip(line)
    return ""


def _one_line(text: str) -> str:
    return _clip(" ".join(line.strip() for line in text.splitlines() if line.strip()))


def _from_fault(fault: Fault, app: application.Application) -> Classification:
    rule = _reasons.fault_rule(fault.kind)
    detail = fault.detail or ""
    if rule.detail == "signatures":
        sig = _signatures(detail, None, app).best(APPLICATION)
        if sig is not None:
            return Classification(sig[0], _clip(sig[1]), source=HARNESS)
        return Classification(rule.reason, _last_line(detail), source=HARNESS)
    return Classification(rule.reason, _one_line(detail), source=HARNESS)


def classify(
    text: str,
    *,
    exit_code: int | None = None,
    ranks: int | None = None,
    timed_out: bool = False,
    fault: Fault | None = None,
    app: application.Application | None = None,
) -> Classification:
    """Classify one run's output of `app` (default LAMMPS; see the module docstring for the
    rules)."""
    app = app or application.load()
    if fault is not None:
        return _from_fault(fault, app)
    text = text or ""
    prov = provenance.analyse(text)
    sigs = _signatures(text, prov, app)
    infra = sigs.best(INFRASTRUCTURE)
    note = _clip(infra[1])[:NOTE_MAX] if infra is not None else None

    completed = _completion(text, prov.app_start, ranks, app)
    if (
        completed is not None
        and completed.reason != UNKNOWN
        and not timed_out
        and exit_code in (None, 0)
    ):
        return Classification(completed.reason, completed.evidence, note)

    sig = sigs.best(APPLICATION)
    if sig is not None:
        return Classification(sig[0], _clip(sig[1]), note)

    if timed_out:
        _, evidence = _fallback(text, prov, last_app_first=True, skip=infra and infra[1])
        return Classification(TIMEOUT, evidence, note, HARNESS)

    if infra is not None and not app.process_count(text[prov.app_start :]):
        # the application never started (no banner of its own): the infrastructure's failure
        # is the cause
        return Classification(infra[0], _evidence(infra[1], INFRASTRUCTURE), None, INFRASTRUCTURE)

    if completed is not None:
        # LAMMPS finished but the run still failed (exit code, or procs > ranks): look for the
        # cause after LAMMPS's last line.
        if completed.reason == UNKNOWN:
            return Classification(completed.reason, completed.evidence, note)
        after = prov.app_start + app.completed_at(text[prov.app_start :])
        source, evidence = _fallback(
            text, prov, text.rfind("\n", 0, after) + 1, skip=infra and infra[1]
        )
        return Classification(UNKNOWN, evidence, note, source)
    source, evidence = _fallback(text, prov, skip=infra and infra[1])
    return Classification(UNKNOWN, evidence, note, source)


def classify_file(
    path: str | Path,
    stderr: str | Path | None = None,
    app: application.Application | None = None,
) -> Classification:
    """Classify a saved log, with its job's stderr file when there is one (exit code and ranks
    unknown)."""
    text = Path(path).read_text(errors="replace")
    if stderr is not None and Path(stderr).is_file():
        text += "\n" + Path(stderr).read_text(errors="replace")
    return classify(text, app=app)
