"""One check over a file of any size, in batches: the command line's job.

Pass 1 reads only the number column, batch by batch, and keeps only the
distinct valid numbers. The plan, the preflight and the queries are the
pipeline's, as for a DataFrame. Pass 2 reads the file again, batch by batch,
adds the result columns and writes each batch to the output, which is
renamed into place only at the end. The export is never held in memory
whole.

Example::

    summary = await acheck_file(open_source("crm.csv"), "mobile", AtomicWriter("out.parquet"), options)
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .engine import EngineResult
from .files import AtomicWriter, InputError, Source
from .numbers import number_codes
from .pipeline import CheckOptions, Plan, outcome, prepare, query, read_balance, stopped_error
from .results import RESULT_COLUMNS, build_columns

__all__ = ["Summary", "acheck_file", "aplan_file"]

#: Arrow types of the result columns in written files (categoricals as plain text).
OUTPUT_TYPES = {
    "Status": pa.string(),
    "Area": pa.string(),
    "Is_MNP": pa.bool_(),
    "Init_isp": pa.string(),
    "Now_isp": pa.string(),
    "qxt_mobile": pa.string(),
    "qxt_code": pa.int16(),
    "qxt_error": pa.string(),
    "qxt_checked_at": pa.timestamp("ms", tz="UTC"),
}


@dataclass
class Summary:
    """What a file check did, for the closing report."""

    plan: Plan
    paid: int = 0
    failed: int = 0
    rows_written: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    carriers: Counter[str] = field(default_factory=Counter)
    ported: int = 0
    elapsed: float = 0.0

    def __str__(self) -> str:
        answered = sum(self.statuses.values())
        lines = [
            f"rows {self.plan.rows:,}; paid queries {self.paid:,}; taken from the checkpoint "
            f"{self.plan.in_checkpoint:,}; invalid (not sent) {self.plan.invalid:,}; elapsed {self.elapsed:.1f} s",
            "by Status: " + _counts(self.statuses),
            "by carrier now: " + _counts(self.carriers),
            f"ported: {self.ported / answered:.1%} of answered rows" if answered else "ported: -",
        ]
        if self.failed:
            lines.append(f"{self.failed:,} numbers failed after retries; run again to ask for them again")
        return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counter.most_common()) or "-"


def _series(array: pa.Array | pa.ChunkedArray) -> pd.Series:
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        return pd.Series(pd.arrays.ArrowStringArray(array.cast(pa.large_string())))
    return array.to_pandas()


def _scan(source: Source, column: str, options: CheckOptions):
    """Pass 1: rows, invalid rows and the distinct valid numbers, one batch at a time."""
    if column not in source.columns:
        raise InputError(f"{source.path} has no column {column!r}; its columns are {source.columns}.")
    clash = [c for c in RESULT_COLUMNS if c in source.columns]
    if clash:
        raise InputError(f"{source.path} already has column(s) {', '.join(clash)}; rename them first.")
    rows = invalid = 0
    pending: list[pa.Array] = []
    for table in source.tables([column]):
        codes, numbers, _ = number_codes(_series(table.column(0)))
        rows += len(codes)
        invalid += int((codes < 0).sum())
        pending.append(numbers)
        if len(pending) >= 16:
            pending = [pc.unique(pa.concat_arrays(pending))]
    numbers = pc.unique(pa.concat_arrays(pending)) if pending else pa.array([], pa.string())
    return prepare(numbers, rows, invalid, options)


async def aplan_file(source: Source, column: str, options: CheckOptions) -> Plan:
    """The plan for a file, with the balance. Spends nothing."""
    prepared = _scan(source, column, options)
    async with options.client() as client:
        return prepared.plan(options.budget, await read_balance(client))


async def acheck_file(source: Source, column: str, output: AtomicWriter, options: CheckOptions) -> Summary:
    """Check ``column`` of ``source`` and write every row with its results to ``output``."""
    started = time.monotonic()
    prepared = _scan(source, column, options)
    summary = Summary(prepared.plan(options.budget))
    run: EngineResult = await query(prepared, options)
    if run.stopped is not None:
        raise stopped_error(run, prepared, None)  # no output: it would be incomplete
    answers, failures, not_asked = outcome(prepared, run)
    summary.paid, summary.failed = run.paid, len(run.failures)
    try:
        for table in source.tables():
            codes, numbers, reasons = number_codes(_series(table.column(column)))
            columns = build_columns(pd.RangeIndex(len(codes)), codes, numbers, reasons, answers, failures, not_asked)
            _tally(summary, columns)
            for name, kind in OUTPUT_TYPES.items():
                table = table.append_column(name, pa.array(columns[name].array).cast(kind))
            output.write(table)
        output.commit()
    except BaseException:
        output.discard()
        raise
    summary.rows_written = output.rows
    summary.elapsed = time.monotonic() - started
    return summary


def _tally(summary: Summary, columns: pd.DataFrame) -> None:
    answered = columns["qxt_code"].eq(0).fillna(False).to_numpy(dtype=bool)
    for counter, name in ((summary.statuses, "Status"), (summary.carriers, "Now_isp")):
        counter.update({k: v for k, v in columns[name][answered].value_counts().items() if v})
    summary.ported += int(np.asarray(columns["Is_MNP"][answered].fillna(False), dtype=bool).sum())
