"""Records as a pandas DataFrame, for notebooks: `harness.report.frame(outdirs)`.

One row per record of every outdir (harness.records.read: typed, a torn last line skipped),
one column per field of the record schema (docs/records.md) in the schema's order, after a
column `outdir` naming the outdir (its label in the report). Nested fields (`timings`,
`figures`, `host`, `steps`, ...) stay dicts: `df["timings"].str["run_s"]` reads one of them.
Unlike the report it holds every record in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path

from harness import records
from harness.errors import HarnessError
from harness.records import Record
from harness.report.aggregate import labels

COLUMNS = ("outdir", *(f.name for f in fields(Record)))


def frame(outdirs: Sequence[Path | str] | Path | str):
    """A pandas.DataFrame of the records of one outdir or several (the same one twice: once)."""
    import pandas as pd

    if isinstance(outdirs, (str, Path)):
        outdirs = [outdirs]
    paths = list(dict.fromkeys(Path(p) for p in outdirs))
    rows = []
    for path, label in zip(paths, labels(paths), strict=True):
        if not records.records_path(path).is_file():
            raise HarnessError(
                f"report: {records.records_path(path)} does not exist (not a harness outdir?)"
            )
        rows += [{"outdir": label, **asdict(r)} for r in records.read(path)]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    for col in ("outdir", "mode", "reason"):
        df[col] = df[col].astype("category")
    return df
