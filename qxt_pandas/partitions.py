"""The steps of a check as per-partition functions, for distributed engines (Dask, Spark).

Plain data in and out, no engine imported: ``qxt_pandas.dask`` wires them into
a Dask graph, ``qxt_pandas.spark`` into Spark jobs.

1. :func:`distinct_numbers` on every partition, then a global deduplication;
2. :func:`query_numbers` on parts of those numbers, each with its share of the
   limits and the shared checkpoint; its answers, failures and numbers not
   asked travel as one table (:data:`ANSWERS_SCHEMA`: a failure is a row with
   its code and text, so that it crosses a process or a Spark schema as it is);
3. :func:`merge_results` (pandas) or :func:`merge_table` (Arrow) on every
   input partition, given all the answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import pipeline
from .numbers import number_codes
from .options import CheckOptions
from .results import RESULT_COLUMNS, Failure, Results, text_series
from .service.answers import ANSWER_SCHEMA
from .system.sync import run_sync

__all__ = [
    "ANSWERS_SCHEMA",
    "answers_frame",
    "distinct_numbers",
    "merge_results",
    "merge_table",
    "query_numbers",
    "split_answers",
]

_FAILURE = "failure"  # the text of a number that failed after its retries (its code is in "code")
#: Answers and failures of a query task, one row per number.
ANSWERS_SCHEMA = ANSWER_SCHEMA.append(pa.field(_FAILURE, pa.string()))


def distinct_numbers(values: pd.Series) -> pd.Series:
    """A partition's distinct valid numbers (step 1; deduplicate their union globally)."""
    _, numbers, _ = number_codes(values)
    return pd.Series(numbers.to_pylist(), dtype=object, name="mobile")


def query_table(numbers: Sequence[str], options: CheckOptions) -> pa.Table:
    """Step 2, one task: answers for its numbers (stored ones included) and failures, in :data:`ANSWERS_SCHEMA`.

    Give each task its share of the limits (``options.share(tasks)``); ``checkpoint`` is required.
    """
    unique = pc.unique(pa.array(list(numbers), pa.string()).drop_null())
    prepared = pipeline.prepare(unique, len(unique), 0, options)
    run = run_sync(pipeline.query(prepared, options))
    if run.stopped is not None:
        raise pipeline.stopped_error(run, prepared, None)
    answers, failures, not_asked = pipeline.outcome(prepared, run)
    answers = answers.append_column(_FAILURE, pa.nulls(answers.num_rows, pa.string()))
    lost = [{"mobile": mobile, "code": f.code, _FAILURE: f.text} for mobile, f in failures.items()]
    if not_asked:  # why the rest was not asked travels with them (budget, the service refusing everything)
        done = set(answers["mobile"].to_pylist()) | set(failures)
        lost += [{"mobile": m, _FAILURE: f"not asked: {not_asked}"} for m in prepared.to_query.to_pylist()
                 if m not in done]  # fmt: skip
    return pa.concat_tables([answers, pa.Table.from_pylist(lost, schema=ANSWERS_SCHEMA)])


def query_numbers(
    numbers: pd.Series, options: CheckOptions, tasks: int = 1, partition_info: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Step 2 for pandas partitions (Dask): :func:`query_table` as a frame, with this task's share of
    ``options`` (Dask names the partition in ``partition_info``)."""
    share = options.share(tasks, (partition_info or {}).get("number", 0))
    return answers_frame(query_table(numbers.dropna().tolist(), share))


def answers_frame(table: pa.Table | None = None) -> pd.DataFrame:
    """A task's answers as a pandas frame of Arrow-backed columns: no Python object per value (a million answers)."""
    table = ANSWERS_SCHEMA.empty_table() if table is None else table
    return cast(pd.DataFrame, table.to_pandas(types_mapper=pd.ArrowDtype))


def _answers_table(frame: pd.DataFrame) -> pa.Table:
    """:func:`answers_frame`'s inverse, a column at a time (concatenated frames hold chunked columns)."""
    return pa.table({name: pa.array(frame[name], type=kind) for name, kind in zip(ANSWERS_SCHEMA.names,
                     ANSWERS_SCHEMA.types, strict=True)}, schema=ANSWERS_SCHEMA)  # fmt: skip


def split_answers(table: pa.Table) -> tuple[pa.Table, dict[str, Failure]]:
    """All tasks' answers (:data:`ANSWERS_SCHEMA`) as ``build_columns`` takes them: answers, and failures."""
    failed = pc.is_valid(table[_FAILURE])
    lost = table.filter(failed)
    failures = {
        mobile: Failure(code, text)
        for mobile, code, text in zip(lost["mobile"].to_pylist(), lost["code"].to_pylist(),
                                      lost[_FAILURE].to_pylist(), strict=True)
    }  # fmt: skip
    return table.filter(pc.invert(failed)).select(ANSWER_SCHEMA.names), failures


class Merger:
    """Step 3's results, made once from every task's answers; each partition then costs its own rows.

    Built once per process for a broadcast of answers (a million of them take a second to
    index), where each partition used to index them all again.
    """

    def __init__(self, answers: pa.Table) -> None:
        self.found, self.failures = split_answers(answers)
        numbers = pa.concat_arrays([self.found["mobile"].combine_chunks(), pa.array(list(self.failures), pa.string())])
        self.results = Results(numbers, self.found, self.failures, None)

    def rows(self, values: pd.Series) -> tuple[Results, np.ndarray, np.ndarray]:
        """The results for a partition's ``values``: (results, each row's code in them, each row's reason)."""
        local, numbers, reasons = number_codes(values)
        known = self.results.codes_of(numbers)
        if (known < 0).any():  # a number no task saw (a trial merge before paying): results of its own
            return Results(numbers, self.found, self.failures, None), local, reasons
        return self.results, np.where(local >= 0, known[np.maximum(local, 0)], -1), reasons


_merger: tuple[object, Merger] | None = None  # the last broadcast seen in this process, and its merger


def merger(answers: object, table: Callable[[], pa.Table]) -> Merger:
    """The Merger for the broadcast ``answers`` (``table()`` makes its Arrow table), reused while it is the same."""
    global _merger
    if _merger is None or _merger[0] is not answers:
        _merger = (answers, Merger(table()))
    return _merger[1]


def merge_table(table: pa.Table, column: str, merged: Merger, names: Sequence[str]) -> pa.Table:
    """Step 3 on Arrow (Spark): one input batch with the result columns, in the output types."""
    results, codes, reasons = merged.rows(text_series(table.column(column)))
    for name, array in zip(names, results.output(codes, reasons), strict=True):
        table = table.append_column(name, array)
    return table


def merge_results(frame: pd.DataFrame, column: str, answers: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Step 3 on pandas (Dask): one input partition with its result columns (named ``names``), given all answers."""
    merged = merger(answers, lambda: _answers_table(answers))
    results, codes, reasons = merged.rows(frame[column])
    columns = results.frame(frame.index, codes, reasons)
    out = frame.copy()
    for name, source in zip(names, RESULT_COLUMNS, strict=True):
        out[name] = columns[source].array
    return out
