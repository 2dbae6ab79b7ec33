"""The application as data: how to run it, what shows it completed, its figures of merit.

An application is described by harness/data/applications/NAME.yaml (LAMMPS: lammps.yaml; or
any file given as `--application FILE`), in the spirit of Ramble's application.py: the command
an image runs when its manifest entry names none, the ranks it needs, the executables it
covers, its completion criteria, its own failure rules (checked by harness.judge.reasons) and
its figures of merit, each with a regex and units (which way each improves, and whether the
report shows it as a column), the program in an image that says its architecture and MPI,
what in its command asks for a GPU, and a published protocol's own command.  A base module:
selection (the manifest's default command, artifacts), the run, the judge and the report all
read it.  ``parse_figures(text)`` reads the lines the application itself prints (lammps.yaml
shows LAMMPS' banner, "Loop time", "Performance" and "Total wall time" lines) and returns a
dict holding only the keys it found.  Several "Loop time" lines mean several
runs (an input with several ``run`` commands, or MPI singletons: one LAMMPS per rank, each
"on 1 procs"); the numbers are the ones of the last run and ``loop_lines`` says how many there
were.

The text is scanned once with one precompiled alternation built from the data's figure lines:
this runs over large batches of records, so no per-line Python work is done for lines that are
not figures of merit.  The pattern is not anchored at line starts (that makes the scan several
times slower in ``re``), which also accepts lines prefixed by a launcher (rank labels,
timestamps).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from types import MappingProxyType

import yaml

from harness.errors import HarnessError
from harness.files import read_input

__all__ = [
    "DEFAULT",
    "Application",
    "Criterion",
    "Figure",
    "GpuAsks",
    "Reference",
    "app_timings",
    "available",
    "banner_count",
    "figure_units",
    "iter_loop_lines",
    "known",
    "load",
    "parse_figures",
]

DEFAULT = "lammps"
ROLES = ("completed", "run", "process")  # the criteria the classifier reads
TYPES = ("str", "int", "float", "hms", "count")
KEEP = ("first", "last", "max", "min")
BETTER = ("higher", "lower")  # which way a figure of merit improves
STREAMS = (["stdout"], ["stdout", "stderr"])  # the job's output its figures are read from
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # an application's name: it goes into records


@dataclass(frozen=True)
class Criterion:
    """A completion criterion: one of ROLES, with its pattern."""

    name: str
    description: str
    regex: re.Pattern[str]


@dataclass(frozen=True)
class Figure:
    """A figure of merit, read with `regex` (named group `name`) from lines of kind `line`."""

    name: str
    units: str
    line: str
    type: str
    regex: re.Pattern[str] | None  # None for a count
    keep: str = "last"  # which line's value: first, last, or the max or min over the lines
    scale_group: str | None = None
    scale: Mapping[str, float] = field(default_factory=dict)
    better: str | None = None  # higher or lower: a measure a census can rank images by
    column: str | None = None  # its label as a headline column of the report's census table

    def value(self, m: re.Match[str]):
        raw = m[self.name]
        if self.type == "str":
            return raw.strip()
        if self.type == "int":
            return int(raw)
        if self.type == "hms":
            h, mi, s = raw.split(":")
            return float(int(h) * 3600 + int(mi) * 60 + int(s))
        value = float(raw)
        if self.scale_group is not None:
            value *= self.scale[m[self.scale_group] or ""]
        return value


# (figure name, keep, the regex's search or None for a count, converter): what parse_figures
# does for one figure, without attribute look-ups per line
_Reader = tuple[str, str, Callable[[str], "re.Match[str] | None"] | None, Callable]
_BETTER = {"max": lambda new, old: new > old, "min": lambda new, old: new < old}


def _reader(fig: Figure) -> _Reader:
    search = fig.regex.search if fig.regex is not None else None
    name = fig.name
    if fig.type == "float" and fig.scale_group is None:

        def convert(m):
            return float(m[name])

    elif fig.type == "int":

        def convert(m):
            return int(m[name])

    else:
        convert = fig.value
    return name, fig.keep, search, convert


@dataclass(frozen=True)
class GpuAsks:
    """What in an application's command asks for a GPU (harness.select.gpu_use follows the
    command and applies these): switches naming accelerated styles or packages, a switch that
    turns a device package on with a device count, and the same words in its input script."""

    suffix_switches: tuple[str, ...] = ()  # name the styles to use ("-sf gpu")
    hybrid: str | None = None  # a suffix value that names two styles after it
    package_switches: tuple[str, ...] = ()  # name a package and its options ("-pk gpu 1")
    device_switches: tuple[str, ...] = ()  # turn a device package on ("-k on g 1")
    device_on: str = "on"
    device_counts: tuple[str, ...] = ()  # the device switch's keys of its GPU count
    input_switches: tuple[str, ...] = ()  # name the input script, whose commands count too
    input_commands: tuple[str, ...] = ()  # input commands naming a style or package
    gpu_styles: tuple[str, ...] = ()  # style and package names that ask for a GPU
    kokkos_styles: tuple[str, ...] = ()  # those that use KOKKOS (a GPU if it was built so)
    kokkos_help: tuple[str, ...] = ()  # arguments that make the program print its build
    kokkos_help_line: re.Pattern[str] | None = None  # that output's KOKKOS backends (group 1)
    kokkos_libraries: re.Pattern[str] | None = None  # libraries that may hold KOKKOS' code


@dataclass(frozen=True)
class Reference:
    """A published protocol's own command (the MiniCluster executor's `--protocol reference`):
    the executable, another one for GPU images (whose tag holds `gpu_tag`), and its arguments."""

    source: str
    executable: str
    gpu_executable: str
    gpu_tag: str
    args: tuple[str, ...]

    def command(self, image: str) -> tuple[str, ...]:
        gpu = self.gpu_tag in image.rsplit("/", 1)[-1]
        return (self.gpu_executable if gpu else self.executable, *self.args)


@dataclass(frozen=True)
class Application:
    name: str
    executables: tuple[str, ...]
    criteria: Mapping[str, Criterion]
    figures: tuple[Figure, ...]
    description: str = ""
    lines: Mapping[str, re.Pattern[str]] = field(default_factory=dict)
    app_time: str | None = None  # the figure that is the application's own wall time
    # how to run it: the argv an image runs when its manifest entry names no command, and the
    # number of MPI ranks it must run on when it needs exactly that many (None: any)
    command: tuple[str, ...] = ()
    ranks: int | None = None
    # where it prints its figures: the job's stdout, or stdout and stderr (NetPIPE's loop)
    streams: tuple[str, ...] = ("stdout",)
    # its own failure rules, as reasons.yaml writes rules (checked by harness.judge.reasons),
    # tried before the general ones
    rules: tuple[Mapping, ...] = ()
    # the program in an image whose ELF header and libraries say its architecture and MPI,
    # and that the GPU check follows when the image names no command
    program: str | None = None
    gpu: GpuAsks = field(default_factory=GpuAsks)
    reference: Reference | None = None
    # derived: the one alternation of all figure lines, and the figures of each line kind
    _scan: re.Pattern[str] = field(default=re.compile(r"(?!)"), repr=False, compare=False)
    _by_line: Mapping[str, tuple[_Reader, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def units(self) -> dict[str, str]:
        return {f.name: f.units for f in self.figures}

    def columns(self) -> tuple[Figure, ...]:
        """The figures shown as columns of the report's census table, in the file's order."""
        return tuple(f for f in self.figures if f.column)

    def higher_is_better(self, name: str) -> bool:
        """True for a figure that improves upward (a rate); False for a time or an unknown."""
        return any(f.name == name and f.better == "higher" for f in self.figures)

    def parse_figures(self, text: str) -> dict:
        out: dict = {}
        counts: dict[str, int] = {}
        readers = self._by_line
        for m in self._scan.finditer(text):
            found = m.group()
            for name, keep, search, convert in readers[m.lastgroup]:
                if search is None:
                    counts[name] = counts.get(name, 0) + 1
                elif not (keep == "first" and name in out):
                    fm = search(found)
                    if fm is None:
                        continue
                    value = convert(fm)
                    if name not in out or keep not in _BETTER or _BETTER[keep](value, out[name]):
                        out[name] = value
        out.update(counts)
        return out

    def timings(self, figures: Mapping, run_s: float) -> tuple[float | None, float | None]:
        """(app_s, overhead_s): the application's own wall time from its figures, and the
        rest of the job's run_s around it; (None, None) when it reported none."""
        app_s = figures.get(self.app_time) if self.app_time else None
        if not isinstance(app_s, int | float):
            return None, None
        return float(app_s), round(run_s - app_s, 6)

    def iter_runs(self, text: str) -> Iterator[tuple[int, str]]:
        """(procs, line stripped) for every `run` line, in order; a run line that names no
        procs ran on the application's fixed `ranks`."""
        rx = self.criteria["run"].regex
        named = "procs" in rx.groupindex
        for m in rx.finditer(text):
            start = text.rfind("\n", 0, m.start()) + 1
            end = text.find("\n", m.end())
            procs = int(m["procs"]) if named else self.ranks
            yield procs, text[start : len(text) if end < 0 else end].strip()

    def process_count(self, text: str) -> int:
        return len(self.criteria["process"].regex.findall(text))

    def completed_at(self, text: str) -> int:
        """Offset of the last `completed` line's match, or -1 when there is none."""
        last = -1
        for m in self.criteria["completed"].regex.finditer(text):
            last = m.start()
        return last


# ----------------------------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------------------------


def _fail(where: str, msg: str) -> HarnessError:
    return HarnessError(f"application {where}: {msg}")


def _compile(pattern: object, macros: Mapping[str, str], where: str, what: str):
    if not isinstance(pattern, str) or not pattern:
        raise _fail(where, f"{what}: a non-empty 'regex' is needed")
    for key, value in macros.items():
        pattern = pattern.replace("{" + key + "}", value)
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise _fail(where, f"{what}: bad regex ({exc})") from None


def parse(data: object, where: str) -> Application:
    """Check and compile an application file's content (the loaded YAML)."""
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise _fail(where, "expected a mapping with a 'name'")
    if not NAME.fullmatch(data["name"]):
        raise _fail(where, "'name' may hold letters, digits, '.', '_' and '-' only")
    macros = data.get("macros") or {}
    if not isinstance(macros, dict) or not all(isinstance(v, str) for v in macros.values()):
        raise _fail(where, "'macros' must map names to regex fragments")
    exes = data.get("executables") or []
    if not isinstance(exes, list) or not all(isinstance(e, str) and e for e in exes):
        raise _fail(where, "'executables' must be a list of program names")

    command, ranks, streams, program = _run(data.get("run"), where)
    rules = data.get("rules") or []
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise _fail(where, "'rules' must be a list of rules (as in reasons.yaml)")

    criteria = _criteria(data.get("criteria"), macros, ranks, where)
    lines = _lines(data.get("lines") or {}, macros, where)
    figures = [
        _figure(i, body, lines, macros, where) for i, body in enumerate(data.get("figures") or [])
    ]
    names = [f.name for f in figures]
    if len(set(names)) != len(names):
        raise _fail(where, "figure names must be unique")
    app_time = _app_time(data.get("timings"), figures, where)

    used = [k for k in lines if any(f.line == k for f in figures)]
    # each branch ends with an empty named group that says which line kind matched; a group
    # *before* a branch's literal start would stop `re` from skipping ahead on the literals
    # (ten times slower)
    scan = re.compile("|".join(f"(?:{lines[k].pattern})(?P<{_group(k)}>)" for k in used) or "(?!)")
    by_line = {_group(k): tuple(_reader(f) for f in figures if f.line == k) for k in used}
    return Application(
        name=data["name"],
        executables=tuple(exes),
        criteria=MappingProxyType(criteria),
        figures=tuple(figures),
        description=str(data.get("description", "")),
        lines=MappingProxyType(lines),
        app_time=app_time,
        command=command,
        ranks=ranks,
        streams=streams,
        rules=tuple(rules),
        program=program,
        gpu=_gpu(data.get("gpu"), macros, where),
        reference=_reference(data.get("reference"), where),
        _scan=scan,
        _by_line=MappingProxyType(by_line),
    )


def _criteria(crit: object, macros: dict, ranks: int | None, where: str) -> dict[str, Criterion]:
    """The `criteria` section: one compiled criterion per role, checked."""
    if not isinstance(crit, dict) or sorted(crit) != sorted(ROLES):
        raise _fail(where, f"'criteria' must have exactly {', '.join(ROLES)}")
    criteria = {}
    for role in ROLES:
        body = crit[role]
        if not isinstance(body, dict):
            raise _fail(where, f"criterion {role} must be a mapping")
        rx = _compile(body.get("regex"), macros, where, f"criterion {role}")
        if role == "run" and "procs" not in rx.groupindex and ranks is None:
            raise _fail(where, "criterion run needs a named group 'procs' (or run: ranks)")
        criteria[role] = Criterion(role, str(body.get("description", "")), rx)
    return criteria


def _lines(raw_lines: object, macros: dict, where: str) -> dict[str, re.Pattern]:
    """The `lines` section: each line kind's compiled pattern, checked."""
    if not isinstance(raw_lines, dict):
        raise _fail(where, "'lines' must map line kinds to patterns")
    lines = {}
    for kind, pat in raw_lines.items():
        rx = _compile(pat, macros, where, f"line {kind}")
        if rx.groupindex:
            raise _fail(where, f"line {kind}: no named groups allowed (figures name them)")
        lines[str(kind)] = rx
    return lines


def _figure(i: int, body: object, lines: dict, macros: dict, where: str) -> Figure:
    """figures[i]: one figure of merit, checked against the line kinds it may read."""
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise _fail(where, f"figures[{i}] needs a 'name'")
    name = body["name"]
    kind = body.get("line")
    if kind not in lines:
        raise _fail(where, f"figure {name}: 'line' must be one of {', '.join(lines)}")
    ftype = body.get("type", "float")
    if ftype not in TYPES:
        raise _fail(where, f"figure {name}: type must be one of {', '.join(TYPES)}")
    units = body.get("units")
    if not isinstance(units, str):
        raise _fail(where, f"figure {name}: 'units' must be a string ('' for none)")
    keep = body.get("keep", "last")
    if keep not in KEEP or (keep in ("max", "min") and ftype not in ("int", "float")):
        choices = ", ".join(KEEP)
        raise _fail(where, f"figure {name}: keep must be one of {choices} (max, min: numbers)")
    rx = None
    if ftype != "count":
        rx = _compile(body.get("regex"), macros, where, f"figure {name}")
        if name not in rx.groupindex:
            raise _fail(where, f"figure {name}: its regex needs a named group {name!r}")
    scale_group, factors = None, {}
    if body.get("scale") is not None:
        scale = body["scale"]
        if (
            ftype != "float"
            or not isinstance(scale, dict)
            or scale.get("group") not in (rx.groupindex if rx else {})
            or not isinstance(scale.get("factors"), dict)
        ):
            raise _fail(where, f"figure {name}: scale needs a float, a group and factors")
        scale_group = scale["group"]
        factors = {str(k): float(v) for k, v in scale["factors"].items()}
    better, column = body.get("better"), body.get("column")
    if better is not None and (better not in BETTER or ftype not in ("int", "float", "hms")):
        raise _fail(where, f"figure {name}: better must be higher or lower (numbers only)")
    if column is not None and (not isinstance(column, str) or not column or better is None):
        raise _fail(where, f"figure {name}: a column needs a label and better")
    factors = MappingProxyType(factors)
    return Figure(name, units, kind, ftype, rx, keep, scale_group, factors, better, column)


def _run(
    run: object, where: str
) -> tuple[tuple[str, ...], int | None, tuple[str, ...], str | None]:
    """The `run` section: (default command, fixed ranks or None, figure streams, the image's
    program), checked."""
    if not isinstance(run, dict) or set(run) - {"command", "ranks", "figures_from", "program"}:
        raise _fail(where, "'run' must be a mapping of command (and ranks, figures_from, program)")
    command = run.get("command")
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(a, str) and a for a in command)
    ):
        raise _fail(where, "run: 'command' must be a non-empty list of arguments (strings)")
    ranks = run.get("ranks")
    if ranks is not None and (isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1):
        raise _fail(where, "run: 'ranks' must be a whole number >= 1")
    streams = run.get("figures_from", ["stdout"])
    if streams not in STREAMS:
        shown = " or ".join(str(s) for s in STREAMS)
        raise _fail(where, f"run: 'figures_from' must be {shown}")
    program = run.get("program")
    if program is not None and not (isinstance(program, str) and program.startswith("/")):
        raise _fail(where, "run: 'program' must be an absolute path in the image")
    return tuple(command), ranks, tuple(streams), program


_GPU_WORDS = ("hybrid", "device_on")
_GPU_PATTERNS = ("kokkos_help_line", "kokkos_libraries")


def _gpu(raw: object, macros: dict, where: str) -> GpuAsks:
    """The `gpu` section: what in the command asks for a GPU, checked (none: only a GPU
    runtime the program links says it uses one)."""
    if raw is None:
        return GpuAsks()
    known = {f.name for f in fields(GpuAsks)}
    if not isinstance(raw, dict) or set(raw) - known:
        raise _fail(where, f"'gpu' may hold {', '.join(sorted(known))}")
    values: dict = {}
    for key, value in raw.items():
        if key in _GPU_PATTERNS:
            values[key] = _compile(value, macros, where, f"gpu {key}")
        elif key in _GPU_WORDS:
            if not isinstance(value, str) or not value:
                raise _fail(where, f"gpu: {key} must be a word")
            values[key] = value
        elif not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise _fail(where, f"gpu: {key} must be a list of words")
        else:
            values[key] = tuple(value)
    return GpuAsks(**values)


def _reference(raw: object, where: str) -> Reference | None:
    """The `reference` section: a published protocol's command, checked."""
    if raw is None:
        return None
    words = ("source", "executable", "gpu_executable", "gpu_tag")
    if (
        not isinstance(raw, dict)
        or set(raw) != {*words, "args"}
        or not all(isinstance(raw[k], str) and raw[k] for k in words)
        or not isinstance(raw["args"], list)
        or not all(isinstance(a, str) and a for a in raw["args"])
    ):
        raise _fail(where, f"'reference' needs {', '.join(words)} (words) and args (a list)")
    return Reference(*(raw[k] for k in words), tuple(raw["args"]))


def _app_time(timings: object, figures: list[Figure], where: str) -> str | None:
    """The figure `timings: app_s:` names (the application's own wall time), checked."""
    if not isinstance(timings or {}, dict) or set(timings or {}) - {"app_s"}:
        raise _fail(where, "'timings' may only name app_s")
    app_time = (timings or {}).get("app_s")
    seconds = {f.name for f in figures if f.units == "s" and f.type in ("float", "hms")}
    if app_time is not None and app_time not in seconds:
        raise _fail(where, f"timings: app_s must name a figure in seconds, not {app_time!r}")
    return app_time


def _group(kind: str) -> str:
    return "L_" + re.sub(r"\W", "_", kind)


def _dir():
    return resources.files("harness").joinpath("data/applications")


def available() -> tuple[str, ...]:
    """Names of the applications described in harness/data/applications/."""
    return tuple(
        sorted(p.name[: -len(".yaml")] for p in _dir().iterdir() if p.name.endswith(".yaml"))
    )


def load(name: str = DEFAULT) -> Application:
    """The application `name`: one of harness/data/applications/NAME.yaml, or a file (a value
    with a path separator or a .yaml/.yml suffix); parsed once."""
    return _load(name)


def known(name: str) -> Application | None:
    """The application a record names, when this harness describes it (a record of
    `--application FILE` names one it may not); a record's name is never read as a path."""
    return load(name) if name in available() else None


def is_file_name(value: str) -> bool:
    return "/" in value or value.endswith((".yaml", ".yml"))


@cache
def _load(name: str) -> Application:
    if is_file_name(name):
        return _parse_text(read_input(name, "application"), name)
    if name not in available():
        raise HarnessError(f"unknown application {name!r} (known: {', '.join(available())})")
    app = _parse_text(_dir().joinpath(f"{name}.yaml").read_text(encoding="utf-8"), name)
    if app.name != name:
        raise _fail(name, f"the file says name {app.name!r}")
    return app


def _parse_text(text: str, where: str) -> Application:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError:
        raise _fail(where, "not valid YAML") from None
    return parse(data, where)


# ----------------------------------------------------------------------------------------------
# LAMMPS (the default application): the functions the rest of the harness calls
# ----------------------------------------------------------------------------------------------


def figure_units() -> dict[str, str]:
    """Figure of merit name -> units ('' for none), for the default application."""
    return load().units()


def parse_figures(text: str) -> dict:
    """Figures of merit found in LAMMPS stdout ``text`` (keys present only when found)."""
    return load().parse_figures(text)


def app_timings(figures: Mapping, run_s: float) -> tuple[float | None, float | None]:
    """(app_s, overhead_s) of a job of the default application (see Application.timings)."""
    return load().timings(figures, run_s)


def iter_loop_lines(text: str):
    """Yield ``(procs, line)`` for every "Loop time" line, in order (line stripped)."""
    return load().iter_runs(text)


def banner_count(text: str) -> int:
    """How many LAMMPS banners ("LAMMPS (29 Sep 2021)") the text holds: one per LAMMPS process
    that wrote to it (an MPI job prints it once, from rank 0)."""
    return load().process_count(text)
