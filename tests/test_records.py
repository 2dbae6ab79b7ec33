"""Records: appended whole; a torn last line is skipped by readers and set aside by the next
writer, so a resume loses nothing."""

from __future__ import annotations

import json

import pytest

from harness import records
from harness.errors import HarnessError
from harness.run.runner import pick


def make(i: int, mode: str = "basic") -> records.Record:
    return records.Record(
        iteration=i,
        mode=mode,
        seed=7,
        host={"io.archspec.cpu.target": "amd64"},
        candidates=["a", "b"],
        image="a",
        artifact="a-compspec",
        artifact_digest="sha256:1",
        image_digest="sha256:2",
        executor="local",
        launcher="mpirun",
        mpi_model="hybrid",
        np=2,
        argv=["mpirun", "-n", "2"],
        exit_code=0,
        signal=None,
        timed_out=False,
        pulled=False,
        timings=records.Timings(run_s=1.5),
        stdout_path="o",
        stderr_path="e",
        figures={"loop_time_s": 1.2},
        reason="success",
        evidence="Total wall time: 0:00:01",
        started_at="2026-11-25T00:00:00+00:00",
    )


def test_round_trip_and_schema(tmp_path):
    records.append(tmp_path, make(0))
    (rec,) = list(records.read(tmp_path))
    assert rec.schema == records.SCHEMA
    assert rec == make(0)


def test_a_torn_last_line_is_skipped_then_set_aside_by_the_next_append(tmp_path):
    records.append(tmp_path, make(0))
    records.append(tmp_path, make(1))
    path = records.records_path(tmp_path)
    whole = path.read_bytes()
    torn = make(2).to_json().encode()[:40]
    path.write_bytes(whole + torn)  # a writer died mid-write
    assert [r.iteration for r in records.read(tmp_path)] == [0, 1]
    records.append(tmp_path, make(2))
    lines = path.read_text().splitlines()
    assert [json.loads(x)["iteration"] for x in lines] == [0, 1, 2]
    assert (tmp_path / records.REJECTED_FILE).read_bytes() == torn + b"\n"


def test_the_same_iteration_of_two_modes_is_two_records(tmp_path):
    records.append(tmp_path, make(0, "basic"))
    records.append(tmp_path, make(0, "random"))
    assert [(r.mode, r.iteration) for r in records.read(tmp_path)] == [("basic", 0), ("random", 0)]


def test_replace_puts_a_redone_iteration_in_place_and_sets_a_torn_line_aside(tmp_path):
    for i in range(3):
        records.append(tmp_path, make(i))
    path = records.records_path(tmp_path)
    with path.open("ab") as fh:
        fh.write(b'{"torn')
    redone = make(1)
    redone.evidence = "redone"
    records.replace(tmp_path, redone)
    assert [r.evidence for r in records.read(tmp_path)][1] == "redone"
    assert len(path.read_text().splitlines()) == 3
    assert (tmp_path / records.REJECTED_FILE).read_text() == '{"torn\n'
    records.replace(tmp_path, make(7))  # no longer there (a repair took it): appended
    assert [r.iteration for r in records.read(tmp_path)] == [0, 1, 2, 7]


def test_a_record_the_reader_would_refuse_is_never_written(tmp_path):
    huge = make(0)
    huge.seed = 2**70  # beyond what a JSON reader of 64-bit integers reads
    with pytest.raises(HarnessError, match="would not read back"):
        records.append(tmp_path, huge)
    assert not records.records_path(tmp_path).exists()


def test_pick_is_reproducible_per_iteration():
    names = [f"img{i}" for i in range(9)]
    first = [pick(names, 42, "basic", i) for i in range(20)]
    again = [pick(names, 42, "basic", i) for i in reversed(range(20))][::-1]
    assert first == again  # independent of order: a resumed run picks the same images
    assert len(set(first)) > 1
    assert first != [pick(names, 43, "basic", i) for i in range(20)]


def test_an_old_record_1_line_is_read_with_the_new_fields_at_their_defaults(tmp_path):
    old = json.loads(make(0).to_json())
    for name in ("source", "note", "fault", "steps", "stage"):
        del old[name]
    old["schema"] = "compat-harness/record/1"
    records.records_path(tmp_path).write_text(json.dumps(old) + "\n")
    (rec,) = list(records.read(tmp_path))
    assert (rec.source, rec.fault, rec.steps, rec.stage) == ("application", None, {}, None)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("[1]", "JSON object"),
        ('{"mode": "random"}', "missing field"),
        ("not json", "not a harness record"),
        ("MAKE:iteration=[0]", "wrong type"),
        ("MAKE:reason=3", "wrong type"),
        ("MAKE:iteration=-1", ">= 0"),
        ("MAKE:schema=compat-harness/record/9", "schema"),
    ],
)
def test_a_line_that_is_no_record_is_named_by_file_and_line(tmp_path, line, why):
    if line.startswith("MAKE:"):
        key, _, value = line[5:].partition("=")
        data = json.loads(make(1).to_json())
        data[key] = json.loads(value) if value[:1] in "[-0123456789" else value
        line = json.dumps(data)
    path = records.records_path(tmp_path)
    path.write_text(make(0).to_json() + "\n" + line + "\n" + make(2).to_json() + "\n")
    with pytest.raises(HarnessError) as info:
        list(records.read(tmp_path))
    assert f"{path} line 2:" in str(info.value) and why in str(info.value)
    assert "records repair" in str(info.value)


def test_a_duplicate_iteration_stops_the_reader_and_repair_keeps_the_first(tmp_path):
    first, second = make(0), make(0)
    second.evidence = "the second"
    records.append(tmp_path, first)
    records.append(tmp_path, make(1))
    records.append(tmp_path, second)
    with (records.records_path(tmp_path)).open("a") as fh:
        fh.write("garbage\n")
    with pytest.raises(HarnessError, match="line 3: a second record for mode basic iteration 0"):
        list(records.read(tmp_path))
    assert records.repair_all(tmp_path) == (2, 2)
    assert [r.evidence for r in records.read(tmp_path)] == [first.evidence, make(1).evidence]
    rejected = (tmp_path / records.REJECTED_FILE).read_text().splitlines()
    assert json.loads(rejected[0])["evidence"] == "the second" and rejected[1] == "garbage"
