"""The steps of a check as per-partition functions, for distributed engines (Dask, Spark).

Plain pandas in, pandas out, no engine imported: ``qxt_pandas.dask`` wires them
into a Dask graph, and docs/spark.md into ``mapInPandas``.

1. :func:`distinct_numbers` on every partition, then a global deduplication;
2. :func:`query_numbers` on parts of those numbers, each with its share of the
   limits and the shared checkpoint;
3. :func:`merge_results` on every input partition, given all the answers.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from . import pipeline
from ._sync import run_sync
from .checkpoint import ANSWER_SCHEMA
from .numbers import number_codes
from .results import RESULT_COLUMNS, build_columns

__all__ = ["answers_frame", "distinct_numbers", "merge_results", "query_numbers"]

_FAILURE = "failure"  # the column of a number that failed: its exception


def distinct_numbers(values: pd.Series) -> pd.Series:
    """A partition's distinct valid numbers (step 1; deduplicate their union globally)."""
    _, numbers, _ = number_codes(values)
    return pd.Series(numbers.to_pylist(), dtype=object, name="mobile")


def query_numbers(numbers: pd.Series, options: pipeline.CheckOptions) -> pd.DataFrame:
    """Step 2, one task: answers for its numbers (stored ones included) and failures, as a frame.

    Give each task its share of ``concurrency``/``rate``/``budget``; ``checkpoint`` is required.
    """
    unique = pa.array(numbers.dropna().unique().tolist(), pa.string())
    prepared = pipeline.prepare(unique, len(unique), 0, options)
    run = run_sync(pipeline.query(prepared, options))
    if run.stopped is not None:
        raise pipeline.stopped_error(run, prepared, None)
    answers, failures, _ = pipeline.outcome(prepared, run)
    return answers_frame(answers, failures)


def answers_frame(answers: pa.Table, failures: dict) -> pd.DataFrame:
    """Answers and failures in one frame: the answer columns, plus ``failure`` (an exception or None)."""
    frame = answers.to_pandas()
    frame[_FAILURE] = None
    lost = pd.DataFrame({"mobile": list(failures), _FAILURE: list(failures.values())})
    return pd.concat([frame, lost], ignore_index=True) if len(lost) else frame


def merge_results(frame: pd.DataFrame, column: str, answers: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Step 3: one input partition with its result columns (named ``names``), given all answers."""
    failed = answers[_FAILURE].notna()
    failures = dict(zip(answers.loc[failed, "mobile"], answers.loc[failed, _FAILURE], strict=True))
    table = pa.Table.from_pandas(answers.loc[~failed, ANSWER_SCHEMA.names], schema=ANSWER_SCHEMA, preserve_index=False)
    codes, numbers, reasons = number_codes(frame[column])
    columns = build_columns(frame.index, codes, numbers, reasons, table, failures, None)
    out = frame.copy()
    for name, source in zip(names, RESULT_COLUMNS, strict=True):
        out[name] = columns[source].array
    return out
