"""The benchmarks' plumbing: JSON lines collected by benchmarks.run, the README's table made from
them by benchmarks.table. Speed is never asserted here: the figures are whatever was measured."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import measure, run, table
from tests.conftest import ROOT


def result_line(script: str, quick: bool, when: str, result: dict) -> str:
    record = {"script": script, "quick": quick, "when": when, "commit": "abc1234", "cpus": 2}
    return json.dumps({**record, "load": 0.5, "result": result})


SELECTION = {
    "bench": "selection",
    "size": "100,000 images",
    "figures": [
        {
            "name": "candidates, later runs",
            "value": 1.5,
            "unit": "s",
            "peer": "reading the inputs",
            "peer_value": 0.5,
            "ratio": 3.0,
            "bound": 2.0,
        },
        {
            "name": "pick per iteration",
            "value": 0.000004,
            "unit": "s",
            "peer": "warm re-match",
            "peer_value": 0.2,
            "ratio": 0.00002,
            "bound": 0.05,
        },
        {
            "name": "peak memory",
            "value": 180.4,
            "unit": "MB",
            "peer": None,
            "peer_value": None,
            "ratio": None,
            "bound": 100.0,
        },
    ],
}


def test_the_table_shows_the_newest_full_run_of_each_benchmark():
    older = dict(SELECTION, figures=[dict(SELECTION["figures"][0], value=9.0)])
    lines = [
        result_line("bench_selection.py", False, "2026-01-01T00:00:00+00:00", older),
        result_line("bench_selection.py", False, "2026-01-02T00:00:00+00:00", SELECTION),
        result_line("bench_selection.py", True, "2026-01-03T00:00:00+00:00", older),  # quick
        result_line(
            "bench_other.py",
            False,
            "2026-01-02T00:00:00+00:00",
            {"rounds": 3, "srun": {"median_s": 0.8, "label": "x"}, "ok": True},
        ),
    ]
    text = table.table(lines)
    rows = text.splitlines()
    assert rows[:2] == list(table.HEADER)
    assert rows[2:7] == [
        "| bench_other.py | rounds | 3 |  |  |  |  |",
        "|  | srun.median_s | 0.8 |  |  |  |  |",
        "| bench_selection.py (100,000 images) | candidates, later runs | 1.50 s | "
        "reading the inputs | 0.50 s | 3× | ≤ 2.00 s: within |",
        "|  | pick per iteration | 0.004 ms | warm re-match | 0.20 s | 1/50,000 | "
        "≤ 50 ms: within |",
        "|  | peak memory | 180 MB |  |  |  | ≤ 100 MB: over |",
    ]
    assert "- bench_selection.py: 2026-01-02T00:00:00+00:00, commit abc1234, 2 cores" in text


def test_a_bound_on_the_ratio_to_the_peer_is_judged_and_shown():
    fast, slow = (
        measure.figure("iteration", v, "s", "bare srun", 2.0, ratio_bound=1.2) for v in (2.2, 2.6)
    )
    assert measure.within(fast) is True and measure.within(slow) is False
    assert measure.within(measure.figure("no bound", 1.0)) is None
    assert "(within bound 1.2x the peer)" in measure.line(fast)
    assert "(OVER bound 1.2x the peer)" in measure.line(slow)
    assert table.row("", slow).endswith("| 1.3× | ratio ≤ 1.2×: over |")
    both = measure.figure("report", 16.0, "s", "one pass", 10.0, bound=15.0, ratio_bound=2.0)
    assert table.row("", both).endswith("| ≤ 15.00 s: over, ratio ≤ 2×: within |")


def test_a_benchmark_that_measured_nothing_says_why_in_the_table():
    skipped = {"bench": "compspec", "size": "lab", "figures": [], "skipped": "the lab is down"}
    text = table.table([result_line("bench_compspec.py", False, "2026-01-01T00:00:00Z", skipped)])
    assert "| bench_compspec.py (lab) | not measured: the lab is down |" in text


def test_the_readme_table_is_the_one_made_from_the_committed_results():
    results = ROOT / "benchmarks" / "results.jsonl"
    readme = (ROOT / "README.md").read_text()
    made = table.table(results.read_text().splitlines())
    assert table.replace_block(readme, made) == readme, (
        "README's performance table differs from benchmarks/results.jsonl: "
        "python -m benchmarks.table --readme README.md"
    )


def test_readme_markers_are_required(tmp_path):
    with pytest.raises(ValueError, match="lacks the markers"):
        table.replace_block("# no table here\n", "| a |\n")
    results = tmp_path / "r.jsonl"
    results.write_text("{not json\n")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.table", str(results)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and str(results) in proc.stderr


def fake_bench(tmp_path, name: str, body: str):
    script = tmp_path / name
    script.write_text(f"import sys\n{body}\n")
    return script


def test_run_keeps_each_benchmark_s_last_json_line_and_fails_on_a_broken_one(tmp_path, capsys):
    good = fake_bench(
        tmp_path,
        "bench_good.py",
        "import json\nprint('figures first', sys.argv[1:])\n"
        "print(json.dumps({'size': 'quick' if '--quick' in sys.argv else 'full', 'figures': []}))",
    )
    silent = fake_bench(tmp_path, "bench_silent.py", "print('no json')")
    broken = fake_bench(tmp_path, "bench_broken.py", "raise SystemExit(3)")
    out = tmp_path / "results.jsonl"
    assert run.main(["--quick", "--json", str(out), str(good), str(silent), str(broken)]) == 1
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["script"] == "bench_good.py" and record["quick"] is True
    assert record["result"] == {"size": "quick", "figures": []}
    seen = capsys.readouterr()
    assert "figures first ['--quick']" in seen.out  # the benchmark's own output, as it came
    assert "bench_silent.py printed no JSON line" in seen.err
    assert "failed: bench_broken.py (exit 3)" in seen.err
