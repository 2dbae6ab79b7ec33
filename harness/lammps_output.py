"""Figures of merit from LAMMPS's standard output.

``parse_figures(text)`` reads the lines LAMMPS itself prints:

    LAMMPS (29 Sep 2021 - Update 2)
    Loop time of 7.66242 on 4 procs for 100 steps with 2432 atoms
    Performance: 0.113 ns/day, 212.845 hours/ns, 13.051 timesteps/s
    Total wall time: 0:00:07

and returns a dict holding only the keys it found.  Several "Loop time" lines
mean several runs (an input with several ``run`` commands, or MPI singletons:
one LAMMPS per rank, each "on 1 procs"); the numbers are the ones of the last
run and ``loop_lines`` says how many there were.

The text is scanned once with one precompiled pattern: this runs over large
batches of records, so no per-line Python work is done for lines that are not
figures of merit.  The pattern is not anchored at line starts (that makes the
scan several times slower in ``re``), which also accepts lines prefixed by a
launcher (rank labels, timestamps).
"""

from __future__ import annotations

import re

__all__ = ["parse_figures", "iter_loop_lines", "banner_count"]

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

# One alternation of literal-led branches: ``finditer`` visits each figure line once.
_FIGURES = re.compile(
    r"(?:"
    r"LAMMPS \((?P<version>\d{1,2} [A-Z][a-z]{2} \d{4}[^)\n]*)\)"
    rf"|Loop time of (?P<loop>{_NUM}) on (?P<procs>\d+) procs"
    r"(?: for (?P<steps>\d+) steps with (?P<atoms>\d+) atoms)?"
    r"|Performance:(?P<perf>[^\n]*)"
    r"|Total wall time: (?P<wall>\d+:\d{2}:\d{2})"
    r")"
)

_PERF_ITEM = re.compile(
    rf"(?P<value>{_NUM})\s*(?P<unit>tau/day|ns/day|timesteps/s|[kMG]?atom-step/s)"
)

_ATOM_STEP_SCALE = {"": 1e-3, "k": 1.0, "M": 1e3, "G": 1e6}


def _hms_to_s(hms: str) -> float:
    h, m, s = hms.split(":")
    return float(int(h) * 3600 + int(m) * 60 + int(s))


def _parse_performance(perf: str, out: dict) -> None:
    for item in _PERF_ITEM.finditer(perf):
        value = float(item["value"])
        unit = item["unit"]
        if unit == "tau/day":
            out["tau_per_day"] = value
        elif unit == "ns/day":
            out["ns_per_day"] = value
        elif unit == "timesteps/s":
            out["timesteps_per_s"] = value
        else:  # [kMG]atom-step/s
            out["katom_step_per_s"] = value * _ATOM_STEP_SCALE[unit[: -len("atom-step/s")]]


def parse_figures(text: str) -> dict:
    """Figures of merit found in LAMMPS stdout ``text`` (keys present only when found)."""
    out: dict = {}
    loop_lines = 0
    for m in _FIGURES.finditer(text):
        if m["version"] is not None:
            out.setdefault("lammps_version", m["version"].strip())
        elif m["loop"] is not None:
            loop_lines += 1
            out["loop_time_s"] = float(m["loop"])
            out["procs"] = int(m["procs"])
            if m["steps"] is not None:
                out["steps"] = int(m["steps"])
                out["atoms"] = int(m["atoms"])
        elif m["perf"] is not None:
            _parse_performance(m["perf"], out)
        elif m["wall"] is not None:
            out["total_wall_time_s"] = _hms_to_s(m["wall"])
    if loop_lines:
        out["loop_lines"] = loop_lines
    return out


_LOOP_PROCS = re.compile(r"Loop time of \S+ on (\d+) procs")
_BANNER = re.compile(r"LAMMPS \(\d{1,2} [A-Z][a-z]{2} \d{4}")


def iter_loop_lines(text: str):
    """Yield ``(procs, line)`` for every "Loop time" line, in order (line stripped)."""
    for m in _LOOP_PROCS.finditer(text):
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.end())
        yield int(m[1]), text[start : len(text) if end < 0 else end].strip()


def banner_count(text: str) -> int:
    """How many LAMMPS banners ("LAMMPS (29 Sep 2021)") the text holds: one per LAMMPS process
    that wrote to it (an MPI job prints it once, from rank 0)."""
    return len(_BANNER.findall(text))
