"""The summary every renderer takes (tables, markdown, HTML, figures, CSV, JSON).

Its JSON form (`Summary.to_json()`, schema compat-harness/report/2, written as report.json):

    schema    "compat-harness/report/2"
    modes     {key: ModeRow}        key: the mode, or "outdir:mode" when several outdirs have it
    outdirs   [{label, path, records[, kept]}]
    filters   {modes|images|reasons: [...]}          only when filtered, in the order given
    images    {key: ImageRow}       the census per image ("outdir:image" likewise), with the
                                    median of each headline figure of its application
    census    {label: {manifests, repeat, seed, images}}
    expected  {key: Expected}       each mode's expected rate from a census
    compare   {key: Comparison}     with --compare

`images`, `census` and `expected` are there when an outdir holds a census; what the JSON does
not carry (each mode's run times and evidence lines, the iterations with their logs) is kept
for the figures and report.html.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.report.aggregate import Iteration
from harness.report.ordering import ModeOrder
from harness.select.performance import Ranked, Spread
from harness.select.shift import Shift

SCHEMA = "compat-harness/report/2"  # 2: n leaves out reasons with rate false (infra)


@dataclass(kw_only=True)
class Counts:
    """The runs of a group (stats.counts): n counts toward the rate, runs are all of them."""

    n: int
    success: int
    runs: int
    excluded: int
    rate: float | None
    ci95: list[float]  # Wilson 95 % interval of the rate
    reasons: dict[str, int]

    def counts_json(self) -> dict:
        return {
            "n": self.n,
            "success": self.success,
            "runs": self.runs,
            "excluded": self.excluded,
            "rate": self.rate,
            "ci95": list(self.ci95),
            "reasons": dict(self.reasons),
        }


@dataclass(kw_only=True)
class ModeRow(Counts):
    """One mode of one outdir: counts, the rate with its Wilson 95 % interval, the median
    time-to-solution of the successes (run_s) with its distribution-free interval, and the
    regret: that median minus the fastest image's median in the outdir's census (seconds)."""

    outdir: str
    mode: str
    median_wall_s: float | None
    tts_ci95: tuple[float, float] | None = None
    tts_coverage: float | None = None  # what tts_ci95 really covers (below 0.95 for n <= 5)
    regret_s: float | None = None
    run_times: Sequence[float] = field(default_factory=list, repr=False)  # the successes'
    evidence: dict[str, str] = field(default_factory=dict)  # reason -> most frequent line
    against: str | None = None  # the mode it is measured against (modes.yaml `against`)
    shift: Shift | None = None  # its time-to-solution minus that mode's, where both ran

    def to_json(self) -> dict:
        return {
            "outdir": self.outdir,
            "mode": self.mode,
            **self.counts_json(),
            "median_wall_s": self.median_wall_s,
            "tts_ci95": None if self.tts_ci95 is None else list(self.tts_ci95),
            "tts_coverage": self.tts_coverage,
            "regret_s": self.regret_s,
            "against": self.against,
            "shift": None if self.shift is None else self.shift.to_json(),
        }


@dataclass(frozen=True)
class FigureColumn:
    """A headline figure of merit as the census table shows it (an application's `column`)."""

    name: str
    label: str
    units: str


@dataclass(kw_only=True)
class ImageRow(Counts):
    """One image of a census: counts, the most frequent failure and its most frequent
    evidence line, and the median of each headline figure of its application over the
    successes (figure name -> median, None when no success reported it)."""

    outdir: str
    image: str
    reason: str | None
    evidence: str | None
    application: str
    figures: dict[str, float | None] = field(default_factory=dict)
    # time_to_solution_s and each headline figure -> the median of the successes with its
    # distribution-free 95 % interval (harness/select/performance.py); absent without a success
    speed: dict[str, Spread] = field(default_factory=dict)
    run_times: Sequence[float] = field(default_factory=list, repr=False)  # the successes'

    def to_json(self) -> dict:
        return {
            "outdir": self.outdir,
            "image": self.image,
            **self.counts_json(),
            "reason": self.reason,
            "evidence": self.evidence,
            "application": self.application,
            **self.figures,
            "speed": {
                name: {
                    "n": s.n,
                    "median": s.median,
                    "ci95": [s.low, s.high],
                    "coverage": round(s.coverage, 4),
                }
                for name, s in self.speed.items()
            },
        }


@dataclass
class Measured:
    """The sampled rate of a mode beside its expected rate."""

    key: str
    n: int
    success: int
    rate: float | None


@dataclass
class Expected:
    """A mode's expected success rate from a census, and the measured count's place in the
    exact binomial 95 % range."""

    outdir: str
    mode: str
    rate: float | None
    candidates: int | None  # None: no candidate set on the census host
    missing: int
    missing_images: list[str]
    error: str | None = None
    measured: Measured | None = None
    interval95: list[float] | None = None
    interval95_counts: list[int] | None = None
    outside: bool | None = None

    def to_json(self) -> dict:
        body = {
            "outdir": self.outdir,
            "mode": self.mode,
            "rate": self.rate,
            "candidates": self.candidates,
            "missing": self.missing,
            "missing_images": list(self.missing_images),
        }
        if self.error:
            body["error"] = self.error
        m = self.measured
        body["measured"] = None if m is None else vars(m).copy()
        body["interval95"] = self.interval95
        body["interval95_counts"] = self.interval95_counts
        body["outside"] = self.outside
        return body


@dataclass
class Comparison:
    """A mode's rate in another outdir against the baseline (the first outdir)."""

    mode: str
    baseline_outdir: str
    other_outdir: str
    baseline: float | None
    other: float | None
    delta: float | None
    overlap: bool | None
    baseline_n: int
    other_n: int
    baseline_ci95: list[float] | None
    other_ci95: list[float] | None
    baseline_expected: float | None
    other_expected: float | None

    def to_json(self) -> dict:
        return vars(self).copy()


@dataclass
class OutdirInfo:
    label: str
    path: str
    records: int
    kept: int | None = None  # with filters: the records they kept

    def to_json(self) -> dict:
        body = {"label": self.label, "path": self.path, "records": self.records}
        if self.kept is not None:
            body["kept"] = self.kept
        return body


@dataclass
class IterationList:
    """The iterations of one outdir report.html lists, and how many it leaves out."""

    iterations: list[Iteration]
    left_out: int


@dataclass
class Summary:
    modes: dict[str, ModeRow]
    outdirs: list[OutdirInfo]
    order: ModeOrder
    filters: dict[str, list[str]] = field(default_factory=dict)
    images: dict[str, ImageRow] | None = None  # None: no census in any outdir
    columns: tuple[FigureColumn, ...] = ()  # the images' headline figures, in their order
    census: dict[str, dict] | None = None
    expected: dict[str, Expected] | None = None
    compare: dict[str, Comparison] | None = None
    iterations: dict[str, IterationList] = field(default_factory=dict)  # by outdir label
    schema: str = SCHEMA
    # images (row keys) -> their ranking by speed, made once for every table that shows it
    rankings: dict[tuple[str, ...], list[Ranked]] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        body: dict = {
            "schema": self.schema,
            "modes": {k: m.to_json() for k, m in self.modes.items()},
            "outdirs": [o.to_json() for o in self.outdirs],
        }
        if self.filters:
            body["filters"] = {k: list(v) for k, v in self.filters.items()}
        if self.images is not None:
            body["images"] = {k: m.to_json() for k, m in self.images.items()}
            body["census"] = self.census or {}
            body["expected"] = {k: e.to_json() for k, e in (self.expected or {}).items()}
        if self.compare is not None:
            body["compare"] = {k: c.to_json() for k, c in self.compare.items()}
        return body

    def rows_of(self, label: str) -> list[ModeRow]:
        return [m for m in self.modes.values() if m.outdir == label]
