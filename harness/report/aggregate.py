"""Records -> aggregates, in one pass over each outdir's records.jsonl.

Memory is bounded by what is aggregated, not by the file: per (outdir, mode) and per (outdir,
image) of the census the count of each reason, the values the medians and figures need (run
time of successful runs per mode; run time and the application's headline figures of merit
(its `column`s in harness/data/applications/NAME.yaml) of successful census runs per image),
the most frequent evidence lines of each failure reason (exact up to EVIDENCE_KEPT
distinct lines per group, the most frequent of them kept beyond that), and the first
ITERATIONS_KEPT iterations of each outdir for the HTML report's list of logs.

Filters (`modes`, `images`, `reasons`) leave records out as they stream by. The census is not
a selection mode, so a `modes` filter keeps the census records (the filter limits the expected
rates instead); an `images` filter names an image by its full reference or its tag.
"""

from __future__ import annotations

import gc
import json
import math
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from harness import application, records
from harness.errors import HarnessError
from harness.judge.reasons import SUCCESS
from harness.records import CENSUS, CENSUS_FILE, CENSUS_SCHEMA, Record
from harness.report.ordering import (
    ModeOrder,
    image_matches,
    image_sort_key,
    image_tag,
    reason_order,
)
from harness.report.stats import number

EVIDENCE_KEPT = 256  # distinct evidence lines counted exactly per (group, reason)
ITERATIONS_KEPT = 5000  # iterations per outdir listed with their logs in report.html

# The successes' values each kind of group keeps, and whether each is a duration: a duration
# longer than the time since the epoch is none the harness measured (the run began after it).
MODE_VALUES = {"run_s": True}


@cache
def image_values(app_name: str) -> dict[str, bool]:
    """What a census image's group keeps: run_s, and the headline figures of the application
    its records name (a figure in seconds is a duration); none of an application this harness
    does not describe (a record of `--application FILE`)."""
    app = application.known(app_name)
    columns = app.columns() if app is not None else ()
    return {"run_s": True, **{f.name: f.units == "s" for f in columns}}


@dataclass(frozen=True)
class Filters:
    """What to keep: modes, images (full reference or tag), reasons; None keeps all. Each
    keeps the order the user gave, without repeats."""

    modes: tuple[str, ...] | None = None
    images: tuple[str, ...] | None = None
    reasons: tuple[str, ...] | None = None

    @classmethod
    def of(
        cls,
        modes: Sequence[str] | None = None,
        images: Sequence[str] | None = None,
        reasons: Sequence[str] | None = None,
    ) -> Filters:
        def given(values):
            return None if values is None else tuple(dict.fromkeys(values))

        return cls(given(modes), given(images), given(reasons))

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.modes, self.images, self.reasons))

    def as_dict(self) -> dict[str, list[str]]:
        pairs = (("modes", self.modes), ("images", self.images), ("reasons", self.reasons))
        return {k: list(v) for k, v in pairs if v is not None}


class TopLines:
    """Counts of evidence lines, exact up to EVIDENCE_KEPT distinct lines; past twice that the
    least frequent are dropped (a line seen once per run, e.g. with a pid in it, cannot grow
    the memory with the records)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, line: str) -> None:
        self.counts[line] = self.counts.get(line, 0) + 1
        if len(self.counts) > 2 * EVIDENCE_KEPT:
            keep = set(sorted(self.counts, key=self.counts.__getitem__)[-EVIDENCE_KEPT:])
            self.counts = {k: v for k, v in self.counts.items() if k in keep}

    def top(self) -> str | None:
        """The most frequent line; the first seen of equally frequent ones."""
        best = None
        for line, k in self.counts.items():
            if best is None or k > self.counts[best]:
                best = line
        return best


class Group:
    """The records of one (outdir, mode) or one (outdir, image) of the census."""

    __slots__ = ("reasons", "values", "evidence", "most", "app")

    def __init__(self, kinds: dict[str, bool], app_name: str = application.DEFAULT) -> None:
        self.app = app_name  # the application whose figures `values` keeps
        self.reasons: dict[str, int] = {}
        self.values: dict[str, array] = {name: array("d") for name in kinds}
        self.evidence: dict[str, TopLines] = {}
        now = time.time()
        self.most = {name: now if duration else math.inf for name, duration in kinds.items()}

    def add(self, record: Record) -> None:
        reason = record.reason
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        if reason == SUCCESS:
            for name, values in self.values.items():
                source = record.timings.run_s if name == "run_s" else record.figures.get(name)
                value = number(source)
                if value is not None and value <= self.most[name]:
                    values.append(value)
        else:
            lines = self.evidence.get(reason)
            if lines is None:
                lines = self.evidence[reason] = TopLines()
            lines.add(record.evidence)


@dataclass(frozen=True)
class Iteration:
    """One iteration as report.html lists it, with its logs."""

    mode: str
    iteration: int
    image: str | None
    reason: str
    evidence: str
    stdout_path: str | None
    stderr_path: str | None


@dataclass
class OutdirData:
    """One outdir's aggregates."""

    label: str
    path: Path
    census: dict | None
    records: int = 0  # every record of the file
    kept: int = 0  # those the filters kept
    modes: dict[str, Group] = field(default_factory=dict)  # sampled modes, census left out
    images: dict[str, Group] = field(default_factory=dict)  # census records per image
    # What the records hold before the filters, known when filtering (a filter matching
    # nothing names it); modes in the order of their first record.
    seen_modes: dict[str, None] = field(default_factory=dict)
    seen_images: set[str | None] = field(default_factory=set)
    seen_reasons: set[str] = field(default_factory=set)
    iterations: list[Iteration] = field(default_factory=list)

    def add(self, record: Record) -> None:
        if record.mode == CENSUS:
            if record.image is None:
                return  # no image to count it against
            group = self.images.get(record.image)
            if group is None:
                app = record.application
                group = self.images[record.image] = Group(image_values(app), app)
        else:
            group = self.modes.get(record.mode)
            if group is None:
                group = self.modes[record.mode] = Group(MODE_VALUES)
        group.add(record)


@dataclass
class Aggregates:
    """Every outdir's aggregates, in the order given, and the filters applied."""

    outdirs: list[OutdirData]
    filters: Filters


def labels(outdirs: Sequence[Path]) -> list[str]:
    """The outdir's name as its label; the full path where two outdirs share a name."""
    names = [p.name or str(p) for p in outdirs]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(outdirs, names, strict=True)]


def load_census(outdir: Path) -> dict | None:
    """OUTDIR/census.json checked (schema and each mode's candidate list), or None."""
    path = Path(outdir) / CENSUS_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise HarnessError(f"report: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise HarnessError(f"report: {path} is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != CENSUS_SCHEMA:
        raise HarnessError(f"report: {path} is not a census file (schema {CENSUS_SCHEMA})")
    body = data.get("modes")
    if not isinstance(body, dict):
        raise HarnessError(f"report: {path}: 'modes' must be a mapping")
    for mode, entry in body.items():
        cands = entry.get("candidates") if isinstance(entry, dict) else False
        if cands is not None and not (
            isinstance(cands, list) and all(isinstance(c, str) for c in cands)
        ):
            raise HarnessError(
                f"report: {path}: mode {mode!r} needs 'candidates': a list of images or null"
            )
    return data


def _keeper(filters: Filters, out: OutdirData) -> Callable[[Record], bool] | None:
    """The filters as one test of a record, noting what the outdir holds on the way; None
    when nothing is filtered."""
    if not filters:
        return None
    modes = None if filters.modes is None else {*filters.modes, CENSUS}
    reasons = None if filters.reasons is None else set(filters.reasons)
    wanted = None if filters.images is None else set(filters.images)
    verdicts: dict[str | None, bool] = {}  # image -> kept, decided once per image
    seen_modes, seen_images, seen_reasons = out.seen_modes, out.seen_images, out.seen_reasons

    def keep(r: Record) -> bool:
        seen_modes[r.mode] = None
        seen_images.add(r.image)
        seen_reasons.add(r.reason)
        if modes is not None and r.mode not in modes:
            return False
        if reasons is not None and r.reason not in reasons:
            return False
        if wanted is not None:
            hit = verdicts.get(r.image)
            if hit is None:
                hit = verdicts[r.image] = r.image is not None and image_matches(r.image, wanted)
            return hit
        return True

    return keep


def _stream(
    out: OutdirData,
    keep: Callable[[Record], bool] | None,
    on_record: Callable[[str, Record], None] | None,
) -> None:
    """The one pass over an outdir's records (typed by harness.records.read)."""
    iterations = out.iterations
    total = kept = 0
    for r in records.read(out.path):
        total += 1
        if keep is not None and not keep(r):
            continue
        kept += 1
        out.add(r)
        if on_record is not None:
            on_record(out.label, r)
        if len(iterations) < ITERATIONS_KEPT:
            iterations.append(
                Iteration(
                    r.mode, r.iteration, r.image, r.reason, r.evidence, r.stdout_path, r.stderr_path
                )
            )
    out.records, out.kept = total, kept
    if keep is None:  # every record was kept: the groups know the modes, in order
        out.seen_modes = dict.fromkeys(out.modes)


def load(
    outdirs: Sequence[Path | str],
    filters: Filters | None = None,
    on_record: Callable[[str, Record], None] | None = None,
) -> Aggregates:
    """Aggregate every kept record of every outdir (the same outdir twice: once); `on_record`
    sees each kept record with its outdir's label as it streams by (the FoM export).

    Raises HarnessError naming the path when an outdir, or its records.jsonl, is missing or
    unreadable, or a line is not a record.
    """
    paths = list(dict.fromkeys(Path(p) for p in outdirs))
    if not paths:
        raise HarnessError("report: no outdir given")
    filters = filters or Filters()
    result = Aggregates([], filters)
    for path, label in zip(paths, labels(paths), strict=True):
        if not path.is_dir():
            raise HarnessError(f"report: outdir {path} does not exist or is not a directory")
        if not records.records_path(path).is_file():
            raise HarnessError(
                f"report: {records.records_path(path)} does not exist (not a harness outdir?)"
            )
        out = OutdirData(label, path, load_census(path))
        try:
            _stream(out, _keeper(filters, out), on_record)
        except HarnessError as exc:
            raise HarnessError(f"report: {exc}") from None
        result.outdirs.append(out)
    # The pass leaves free-list entries and a few kept lines scattered over memory arenas that
    # are otherwise empty; a full collection clears the free lists, so those arenas go back to
    # the system before the figures are drawn (about 35 MB per 300,000 records, measured).
    gc.collect()
    return result


def check_filters(aggregates: Aggregates, mode_file: str | Path | None = None) -> None:
    """Outdirs without a record, or a filter value that matches nothing (a typo, not an empty
    report): HarnessError naming what there is (in the outdirs' records and census files;
    modes in the modes files' order)."""
    outs = aggregates.outdirs
    if not any(o.seen_modes or o.census for o in outs):  # an empty report would hide a mistake
        where = ", ".join(str(o.path) for o in outs)
        raise HarnessError(f"{where}: no records yet, nothing to report (harness run writes them)")
    census = [o.census for o in outs if o.census]
    present = [m for c in census for m in c["modes"]] + [m for o in outs for m in o.seen_modes]
    modes = [m for m in ModeOrder.build(None, mode_file, present).names if m in set(present)]
    images = {i for o in outs for i in o.seen_images if i} | {
        i for c in census for i in c.get("images") or () if isinstance(i, str)
    }
    reasons = {r for o in outs for r in o.seen_reasons}
    f = aggregates.filters
    checks = (
        ("mode", f.modes, lambda m: m in modes, modes),
        (
            "image",
            f.images,
            lambda i: any(image_matches(n, {i}) for n in images),
            list(dict.fromkeys(image_tag(i) for i in sorted(images, key=image_sort_key))),
        ),
        (
            "reason",
            f.reasons,
            lambda r: r in reasons,
            [r for r in reason_order(reasons) if r in reasons],
        ),
    )
    where = ", ".join(str(o.path) for o in outs)
    for what, given, hit, there in checks:
        for value in given or ():
            if not hit(value):
                raise HarnessError(
                    f"report: --{what} {value!r} matches nothing in {where} "
                    f"({what}s there: {_listing(there)})"
                )


def _listing(names: list[str], most: int = 12) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more
