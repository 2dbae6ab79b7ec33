"""The run directory's owner: its locking rule holds across processes (nothing lost), the index
beside the records agrees with them and is never trusted when stale, status and check read
through them. No lab needed: the writers are real processes on one real outdir."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness import cli, records
from harness.errors import HarnessError
from harness.outdir import Outdir
from harness.record_index import RecordIndex, check
from harness.run import runner
from harness.run.status import status, status_rows
from tests.test_records import make
from tests.test_runner import config, lab

MODES = ("random", "basic", "platform", "platform-version")
FORK = multiprocessing.get_context("fork")


def record(i: int, mode: str, reason: str = "success") -> records.Record:
    rec = make(i, mode)
    rec.reason, rec.evidence = reason, f"{mode} {i} {reason}"
    return rec


def write_and_redo(outdir: Path, mode: str, n: int) -> None:
    """What a run does to records.jsonl: append each iteration, every third one `infra`, then
    redo those (rewriting the file), while other modes do the same."""
    for i in range(n):
        records.append(outdir, record(i, mode, "infra" if i % 3 == 0 else "success"))
    for i in range(0, n, 3):
        records.replace(outdir, record(i, mode, "success"))


def repair_meanwhile(outdir: Path, rounds: int) -> None:
    for _ in range(rounds):
        if records.records_path(outdir).exists():
            records.repair_all(outdir)


def test_writers_of_every_mode_and_a_repair_lose_nothing(tmp_path):
    n = 120
    procs = [FORK.Process(target=write_and_redo, args=(tmp_path, m, n)) for m in MODES]
    procs.append(FORK.Process(target=repair_meanwhile, args=(tmp_path, 40)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    got = [(r.mode, r.iteration, r.reason) for r in records.read(tmp_path)]
    assert sorted(got) == sorted((m, i, "success") for m in MODES for i in range(n))
    assert check(tmp_path) == (n * len(MODES), len(MODES))
    assert not (tmp_path / records.REJECTED_FILE).exists()  # nothing torn, nothing doubled


def mode_config(setup: dict, outdir: Path, mode: str) -> runner.RunConfig:
    if mode == runner.CENSUS:
        return runner.census_config(config(setup, outdir, repeat=3))
    return config(setup, outdir, mode=mode, iters=10)


def run_mode(setup: dict, outdir: Path, mode: str) -> None:
    runner.run(mode_config(setup, outdir, mode))


def test_four_modes_and_a_census_redoing_infra_in_one_outdir_record_each_iteration_once(
    replay, tmp_path
):
    """Through the runner: each mode has infra records to redo (a rewrite of records.jsonl)
    while the other modes append theirs."""
    setup = lab(tmp_path, delays={"ok-12": 0.02})
    out = tmp_path / "out"
    runner.run(config(setup, out, mode="random", iters=1))
    template = json.loads(next(records.read(out)).to_json())
    out_of = {}
    for mode in (*MODES, runner.CENSUS):
        cfg = mode_config(setup, out, mode)
        candidates = [v.image.name for v in runner.prepare(cfg, dry_run=True).allowed]
        out_of[mode] = cfg.iters
        for i in range(1, cfg.iters, 2):  # the infrastructure failed every other iteration
            infra = dict(template, mode=mode, iteration=i, candidates=candidates)
            infra.update(reason="infra", fault={"kind": "cancelled", "detail": "by admin"})
            records.append(out, records.Record.from_dict(infra))
    procs = [FORK.Process(target=run_mode, args=(setup, out, m)) for m in out_of]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    seen = sorted((r.mode, r.iteration) for r in records.read(out) if r.reason != "infra")
    assert seen == sorted((m, i) for m, n in out_of.items() for i in range(n))
    assert check(out) == (sum(out_of.values()), len(out_of))


def test_a_seed_beyond_64_bits_is_refused_before_anything_is_written(replay, tmp_path):
    setup = lab(tmp_path)
    with pytest.raises(HarnessError, match="--seed .* out of range"):
        runner.run(config(setup, tmp_path / "out", seed=2**70))
    assert not (tmp_path / "out").exists()


def test_the_index_is_what_a_full_read_says(tmp_path):
    for i in range(5):
        records.append(tmp_path, record(i, "basic", "infra" if i == 2 else "success"))
    records.append(tmp_path, record(0, "random", "os-abi"))
    index = RecordIndex.load(tmp_path, save=True)
    basic = index.mode("basic")
    assert list(basic.todo(7)) == [2, 5, 6]
    assert basic.counts() == {"success": 4, "infra": 1}
    assert basic.first_record() == record(0, "basic")
    assert index.mode("random").counts(below=1) == {"os-abi": 1}
    assert list(index.mode("census").todo(2)) == [0, 1]
    assert Outdir(tmp_path).index_file.is_file()


def lines_read(index_of) -> int:
    """How many lines of records.jsonl refreshing the saved index reads."""
    index = RecordIndex.decode(Outdir(index_of).read_index())
    before = index.lines
    index.refresh(index_of)
    return index.lines - before


def test_the_saved_index_reads_only_what_was_appended_since(tmp_path):
    for i in range(50):
        records.append(tmp_path, record(i, "basic"))
    RecordIndex.load(tmp_path, save=True)
    assert lines_read(tmp_path) == 0
    records.append(tmp_path, record(50, "basic"))
    assert lines_read(tmp_path) == 1
    assert list(RecordIndex.load(tmp_path).mode("basic").todo(52)) == [51]


def test_a_stale_index_is_rebuilt_never_trusted(tmp_path):
    for i in range(4):
        records.append(tmp_path, record(i, "basic"))
    RecordIndex.load(tmp_path, save=True)
    out = Outdir(tmp_path)
    # a rewrite (an infra redo, a repair) takes the index away under .lock-records
    records.replace(tmp_path, record(1, "basic", "infra"))
    assert not out.index_file.exists()
    assert list(RecordIndex.load(tmp_path, save=True).mode("basic").todo(4)) == [1]
    # an edit in place (same inode, same size) that the hashes see
    path = records.records_path(tmp_path)
    data = path.read_bytes()
    with path.open("r+b") as fh:
        fh.write(data.replace(b'"iteration": 0', b'"iteration": 9', 1))
    assert list(RecordIndex.load(tmp_path).mode("basic").todo(4)) == [0, 1]
    # an index that is no index
    out.index_file.write_bytes(b"{not json")
    assert list(RecordIndex.load(tmp_path).mode("basic").todo(4)) == [0, 1]


def test_a_second_record_is_named_by_the_index_as_by_the_reader(tmp_path):
    records.append(tmp_path, record(0, "basic"))
    records.append(tmp_path, record(0, "basic"))
    with pytest.raises(HarnessError, match="line 2: a second record for mode basic iteration 0"):
        RecordIndex.load(tmp_path)


def test_the_todo_list_is_lazy_and_the_pool_bounded(tmp_path):
    todo = RecordIndex.load(tmp_path).mode("basic").todo(10**12)
    assert list(itertools.islice(todo, 3)) == [0, 1, 2]
    submitted = []

    def work(i: int) -> int:
        submitted.append(i)
        return i * i

    with ThreadPoolExecutor(max_workers=2) as pool:
        ordered = runner._in_order(pool, work, itertools.count(), window=4)
        assert list(itertools.islice(ordered, 10)) == [i * i for i in range(10)]
    assert len(submitted) <= 10 + 4


def test_status_counts_infra_as_still_to_do(tmp_path):
    for i, reason in enumerate(("success", "infra", "os-abi")):
        records.append(tmp_path, record(i, "basic", reason))
    (row,) = status_rows(tmp_path)
    assert (row.done, row.redo) == (2, 1)
    assert row.reasons == {"success": 1, "infra": 1, "os-abi": 1}
    header, line = status(tmp_path).splitlines()
    assert header.split()[:4] == ["mode", "done", "of", "redo"]
    assert line.split()[:4] == ["basic", "2", "-", "1"]


def test_records_check_names_the_first_bad_line(tmp_path, capsys):
    assert cli.main(["records", "check", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    for i in range(3):
        records.append(tmp_path, record(i, "basic"))
    records.append(tmp_path, record(0, "random"))
    assert cli.main(["records", "check", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip().endswith(": 4 records, 2 modes, ok")
    path = records.records_path(tmp_path)
    lines = path.read_text().splitlines()
    for bad, why in (("{oops", "line 3: not a harness record"), (lines[0], "line 3: a second")):
        path.write_text("\n".join([*lines[:2], bad, *lines[2:]]) + "\n")
        assert cli.main(["records", "check", str(tmp_path)]) == 2
        (err,) = capsys.readouterr().err.strip().splitlines()
        assert err.startswith(f"harness: error: {path} ") and why in err, err
    path.write_text("\n".join(lines) + "\n" + lines[0][:30])
    assert cli.main(["records", "check", str(tmp_path)]) == 2
    assert "line 5: torn" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["status", ""], ["records", "check", ""]])
def test_an_empty_outdir_is_an_error_not_the_current_directory(tmp_path, capsys, command):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert cli.main(command) == 2
    finally:
        os.chdir(cwd)
    (err,) = capsys.readouterr().err.strip().splitlines()
    assert "the outdir is empty" in err
    assert list(tmp_path.iterdir()) == []


def test_redone_iterations_are_rewritten_together(replay, tmp_path, monkeypatch):
    setup = lab(tmp_path)
    out = tmp_path / "out"
    runner.run(config(setup, out, iters=6))
    path = records.records_path(out)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for k in (1, 3, 4):  # the infrastructure failed these
        lines[k].update(reason="infra", fault={"kind": "cancelled", "detail": "by admin"})
    path.write_text("".join(json.dumps(x, sort_keys=True) + "\n" for x in lines))
    rewrites = []
    rewrite = Outdir.rewrite
    monkeypatch.setattr(Outdir, "rewrite", lambda self, edit: rewrites.append(rewrite(self, edit)))
    runner.run(config(setup, out, iters=8))
    assert len(rewrites) == 1  # three redone, one rewrite, before the new iteration 6
    recs = list(records.read(out))
    assert [r.iteration for r in recs] == list(range(8))
    assert [r.reason for r in recs if r.reason == "infra"] == []
