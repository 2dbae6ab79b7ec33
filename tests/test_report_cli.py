"""`harness report` as a user meets it: filters that never lose a report, modes in the order the
user gave, tables that fit 100 columns, report.html (opened in headless Chromium), the
notebook API, and memory bounded by what is aggregated."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from harness import report
from harness.records import append, records_path
from harness.report import aggregate
from tests.conftest import cli, require
from tests.test_report import (
    A,
    B,
    build,
    census_outdir,
    fill,
    rec,
    write_census,
)

WIDTH = 100


def snapshot(outdir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(outdir)): p.read_bytes() for p in outdir.rglob("*") if p.is_file()}


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    """A census and three sampled modes, reported once (the full report files exist)."""
    out = census_outdir(tmp_path / "lab")
    assert cli("report", str(out)).returncode == 0
    return out


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("flag", "value", "there"),
    [
        (
            "--mode",
            "typo",
            "modes there: random, basic, platform, platform-version, descriptive-basic, "
            "descriptive-mpi, zz-custom, census",
        ),
        ("--image", "nope-amd64", "images there: openmpi-debian-gpu-11-amd64, mpich-debian"),
        ("--reason", "segfault", "reasons there: success, arch, gpu, mpi, mpi-singleton"),
    ],
)
def test_a_filter_matching_nothing_is_an_error(lab: Path, flag, value, there):
    before = snapshot(lab)
    proc = cli("report", str(lab), flag, value)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{flag} {value!r} matches nothing in {lab}" in proc.stderr
    assert there in proc.stderr
    assert snapshot(lab) == before  # the full report is untouched


def test_one_unmatched_value_among_good_ones_is_an_error(lab: Path, tmp_path: Path):
    fom = tmp_path / "fom.csv"
    proc = cli("report", str(lab), "--mode", "basic", "--mode", "bsaic", "--export-fom", str(fom))
    assert proc.returncode == 2 and "--mode 'bsaic' matches nothing" in proc.stderr
    assert not fom.exists() and list(tmp_path.iterdir()) == [lab]  # no FoM file, no temp


def test_a_mode_only_the_census_names_is_a_filter(lab: Path, tmp_path: Path):
    """platform has no sampled run, but census.json has its candidates: its expected rate."""
    proc = cli("report", str(lab), "--mode", "platform", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["modes"] == {} and list(data["expected"]) == ["platform"]


def test_a_filtered_report_writes_nothing_without_out(lab: Path, tmp_path: Path):
    before = snapshot(lab)
    proc = cli("report", str(lab), "--mode", "basic")
    assert proc.returncode == 0, proc.stderr
    assert "basic" in proc.stdout and "nothing written" in proc.stdout
    assert snapshot(lab) == before
    dest = tmp_path / "only-basic"
    proc = cli("report", str(lab), "--mode", "basic", "--out", str(dest))
    assert proc.returncode == 0, proc.stderr
    assert f"into {dest}" in proc.stdout
    data = json.loads((dest / "report.json").read_text())
    assert list(data["modes"]) == ["basic"] and data["filters"] == {"modes": ["basic"]}
    assert snapshot(lab) == before


# --------------------------------------------------------------------------- mode order


def test_modes_in_the_order_of_the_modes_file_then_as_run(tmp_path: Path):
    out = tmp_path / "run"
    for mode in ("zz-mine", "descriptive-mpi", "aa-mine", "random", "basic"):
        fill(out, mode, {"success": 1})
    s = build(out)
    assert list(s.modes) == ["random", "basic", "descriptive-mpi", "zz-mine", "aa-mine"]


def test_modes_in_the_order_of_a_mode_file(tmp_path: Path):
    out = tmp_path / "run"
    for mode in ("aa-mine", "basic", "zz-mine", "random"):
        fill(out, mode, {"success": 1})
    mode_file = tmp_path / "modes.yaml"
    mode_file.write_text(
        "modes:\n  zz-mine:\n    keys: [io.archspec.cpu.target]\n  aa-mine:\n    keys: []\n"
    )
    proc = cli("report", str(out), "--mode-file", str(mode_file), "--json")
    assert proc.returncode == 0, proc.stderr
    assert list(json.loads(proc.stdout)["modes"]) == ["random", "basic", "zz-mine", "aa-mine"]
    md = (out / "report.md").read_text()
    rows = [line.split("`")[1] for line in md.splitlines() if line.startswith("| `")]
    assert rows == ["random", "basic", "zz-mine", "aa-mine"]


def test_mode_filters_in_the_order_given(lab: Path, tmp_path: Path):
    dest = tmp_path / "rep"
    args = ["--mode", "descriptive-mpi", "--mode", "random", "--mode", "basic"]
    proc = cli("report", str(lab), *args, "--out", str(dest), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert list(data["modes"]) == ["descriptive-mpi", "random", "basic"]
    assert list(data["expected"]) == ["descriptive-mpi", "random", "basic"]
    assert data["filters"]["modes"] == ["descriptive-mpi", "random", "basic"]
    csv_keys = [line.split(",")[0] for line in (dest / "report.csv").read_text().splitlines()]
    assert csv_keys[1:] == ["descriptive-mpi", "random", "basic"]


def test_census_file_order_for_modes_no_modes_file_names(tmp_path: Path):
    """The census ran with a mode file the report is not given: census.json's order."""
    out = tmp_path / "lab"
    write_census(out, candidates={"zz-late": [A], "random": [A, B], "aa-early": [B]})
    s = build(out)
    assert list(s.expected) == ["random", "zz-late", "aa-early"]


def test_compare_keeps_the_mode_order(tmp_path: Path):
    a, b = tmp_path / "a", tmp_path / "b"
    fill(a, "zz-mine", {"success": 1})
    fill(a, "basic", {"success": 1})
    fill(b, "aa-mine", {"success": 1})
    fill(b, "random", {"success": 1})
    s = build(a, b)
    assert list(report.compare_outdirs(s)) == ["random", "basic", "zz-mine", "aa-mine"]


# --------------------------------------------------------------------------- 100 columns


def wide_outdirs(tmp_path: Path) -> list[Path]:
    """Long names, every reason, three outdirs: the widest tables a user meets."""
    long_mode = "descriptive-mpi-with-a-very-long-user-mode-name"
    first = tmp_path / "campaign-2025-11-baseline-bind"
    write_census(first)
    every = {r: 1 for r in ("success", "arch", "os-abi", "gpu", "mpi", "mpi-singleton")}
    every |= {"missing-binary": 1, "application": 1, "pull": 1, "timeout": 1, "infra": 1}
    every |= {"unknown": 123456 - 11}
    fill(first, "random", every)
    fill(first, long_mode, {"success": 12, "gpu": 3})
    fill(first, "descriptive-mpi", {"success": 9, "mpi": 1})  # the performance mode's baseline
    fill(first, "descriptive-performance", {"success": 10})
    second = tmp_path / "campaign-2025-11-hybrid-model"
    fill(second, "random", {"success": 40, "os-abi": 7})
    fill(second, long_mode, {"success": 2})
    third = tmp_path / "campaign-2025-12-after-the-upgrade"
    fill(third, "basic", {"success": 1, "arch": 1})
    return [first, second, third]


@pytest.mark.parametrize("width", [WIDTH, 80])
def test_every_table_fits_and_keeps_its_numbers(tmp_path: Path, width: int):
    outdirs = wide_outdirs(tmp_path)
    s = build(*outdirs)
    s.compare = report.compare_outdirs(s)
    console = Console(record=True, width=width, file=open(os.devnull, "w"))  # noqa: SIM115
    report.render(s, console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    flat = re.sub(r"\s+", " ", text)
    assert "123445" in flat  # the unknown count, whole
    for c in s.compare.values():  # every comparison's rates and delta, whole
        for cell in report.formats.compare_cells(c)[2:5]:
            assert cell in flat, cell
    for m in s.modes.values():
        assert report.formats.rate_ci(m.rate, m.ci95) in flat
    for e in s.expected.values():
        assert report.formats.measured(e) in flat
    shift = s.modes["descriptive-performance"]
    assert shift.shift is not None
    against, _, interval, _, verdict = report.formats.shift_cells(shift)  # successes: mode table's
    for cell in (against, interval, verdict):  # the shift, its interval and verdict, whole
        assert cell in flat, cell


def test_the_cli_fits_100_columns(tmp_path: Path):
    outdirs = [str(p) for p in wide_outdirs(tmp_path)]
    env = {**os.environ, "COLUMNS": str(WIDTH)}
    proc = cli("report", *outdirs, "--compare", "--out", str(tmp_path / "cmp"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert max(len(line) for line in proc.stdout.splitlines()) <= WIDTH
    assert "+" in proc.stdout and " pp" in proc.stdout  # the comparison's deltas are there


# --------------------------------------------------------------------------- report.html


class Page(HTMLParser):
    """The text a reader sees (no attributes, no data URIs) and every table row's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self.images: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "a":
            self.links.append(attrs.get("href", ""))
        elif tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def markdown_rows(md: str) -> list[list[str]]:
    """The cells of every markdown table row, as a reader sees them (code spans unquoted)."""
    rows = []
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = re.split(r"(?<!\\) \| ", line[2:-2])
            rows.append([c.strip().strip("`").replace("\\|", "|") for c in cells])
    return rows


def numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+(?:\.\d+)?", text))


def test_html_holds_the_markdown_evidence_and_logs(lab: Path, tmp_path: Path):
    inside = lab / "logs" / "basic"
    inside.mkdir(parents=True)
    (inside / "iter-0000.abc.out").write_text("LAMMPS output\n")
    elsewhere = tmp_path / "elsewhere.err"
    elsewhere.write_text("stderr\n")
    out = tmp_path / "logs-run"
    out.mkdir()
    shutil.copytree(lab, out, dirs_exist_ok=True)
    append(
        out,
        rec(
            "platform",
            0,
            "gpu",
            stdout_path=str(out / "logs" / "basic" / "iter-0000.abc.out"),
            stderr_path=str(elsewhere),
            evidence="ERROR: GPU package | needs `a` device <here>",
        ),
    )
    assert cli("report", str(out)).returncode == 0
    html = (out / "report.html").read_text()
    page = parse(html)
    assert not re.search(r"""(src|href)="https?:""", html)  # self-contained
    assert len(page.images) == 4 and all(
        i.startswith("data:image/svg+xml;base64,") for i in page.images
    )
    md = (out / "report.md").read_text()
    for row in markdown_rows(md):
        assert row in page.rows, row
    assert ["platform", "gpu", "1", "ERROR: GPU package | needs `a` device <here>"] in page.rows
    relative = [h for h in page.links if h.startswith("logs/")]
    assert relative and all((out / h).is_file() for h in relative)
    assert elsewhere.as_uri() in page.links


def test_html_lists_the_first_iterations(lab: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(aggregate, "ITERATIONS_KEPT", 5)
    s = build(lab)
    from harness.report.html import html

    page = parse(html(s, {}, lab))
    assert "The first 5 are listed; 43 more are in" in "".join(page.text)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_in_headless_chromium_shows_every_number(lab: Path, tmp_path: Path):
    """Opened by a real browser: every number report.md shows is in the rendered page."""
    binary = chromium()
    require("Chromium", None if binary else "chromium is not installed (Debian: chromium)")
    a, b = tmp_path / "bind", tmp_path / "hybrid"
    shutil.copytree(lab, a)
    fill(b, "basic", {"success": 3, "os-abi": 1})
    dest = tmp_path / "cmp"
    assert cli("report", str(a), str(b), "--compare", "--out", str(dest)).returncode == 0
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        proc = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic"]
            + ["--no-first-run", "--disable-background-networking", "--disable-component-update"]
            + ["--disable-sync", f"--user-data-dir={profile}", "--dump-dom"]
            + [(dest / "report.html").as_uri()],
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = parse(proc.stdout)
    md = (dest / "report.md").read_text()
    shown = numbers(" ".join(page.text))
    assert numbers(md) <= shown, numbers(md) - shown
    for row in markdown_rows(md):
        assert row in page.rows, row
    assert any("comparison" in t.lower() for t in page.text)


# --------------------------------------------------------------------------- notebooks


def test_frame_has_the_record_schema_columns(lab: Path, tmp_path: Path):
    other = tmp_path / "other"
    fill(other, "basic", {"success": 2})
    df = report.frame([lab, other])
    schema = json.loads((Path(report.__file__).parents[2] / "docs/record.schema.json").read_text())
    assert list(df.columns) == ["outdir", *report.dataframe.COLUMNS[1:]]
    assert set(df.columns) - {"outdir"} == set(schema["properties"])
    assert len(df) == len(list(records_path(lab).open())) + 2
    assert df["outdir"].value_counts().to_dict() == {"lab": 48, "other": 2}
    basic = df[(df["outdir"] == "other") & (df["mode"] == "basic")]
    assert basic["timings"].str["run_s"].tolist() == [1.0, 2.0]
    census = df[df["mode"] == "census"]
    assert census["image"].iloc[0] == A and census["reason"].iloc[0] == "success"
    assert report.frame(lab)["mode"].tolist()[:1] == ["census"]  # one outdir, not a list


# --------------------------------------------------------------------------- bounded memory


def test_evidence_lines_are_counted_within_a_bound(tmp_path: Path, monkeypatch):
    """A line with a pid in it is unique per run: the counts stay bounded, the frequent line
    stays the top one."""
    monkeypatch.setattr(aggregate, "EVIDENCE_KEPT", 8)
    lines = aggregate.TopLines()
    for i in range(1000):
        lines.add("MPI_Init failed")
        lines.add(f"[node:{i}] unpack failed")
        assert len(lines.counts) <= 16
    assert lines.top() == "MPI_Init failed"


def test_census_records_without_an_image_are_counted_but_not_shown(tmp_path: Path):
    out = tmp_path / "lab"
    write_census(out, runs=[(A, "success", "", {})])
    append(out, rec("census", 1, "pull", image=None, evidence="manifest unknown"))
    s = build(out)
    assert s.outdirs[0].records == 2 and list(s.images) == [A]
