"""``qxt_pandas.spark.check``: the same check on a Spark DataFrame, tested on a local Spark.

Three steps, the same functions Dask uses (:mod:`qxt_pandas.partitions`):

1. every partition's distinct valid numbers (executors), deduplicated by Spark
   and collected: each number is paid for once however many partitions hold it;
2. the queries: **on the driver** by default (one adaptive client, one claim,
   one journal), or with ``queries="executors"`` in ``tasks`` Spark tasks, each
   with its share of the limits, for clusters whose driver cannot reach the
   vendor; every answer is journaled in the checkpoint as it arrives;
3. the merge: a lazy ``mapInArrow`` over the input, given every answer in one
   broadcast.

Steps 1 and 2 run when ``check`` is called (Spark cannot run driver code
lazily, and paying inside a lazy plan would pay again on every action, were
it not for the checkpoint); the DataFrame it returns is lazy and may be acted
on any number of times without another query. Before anything is paid for, a
merge of a few rows proves that the executors can import this package and
produce the result schema.

Example::

    from qxt_pandas import spark as qxt_spark

    df = spark.read.csv("exports/*.csv", header=True)        # every column as text
    out = qxt_spark.check(df, "mobile", checkpoint="/shared/runs/crm.qxt")
    out.write.mode("overwrite").parquet("checked/")
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

try:
    from pyspark.sql import DataFrame
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import StructField, StructType
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError("qxt_pandas.spark needs pyspark: pip install 'qxt-pandas[spark]'") from exc
import pyarrow as pa

from .errors import ColumnConflictError, ConfigurationError
from .numbers import number_codes
from .options import CheckOptions, with_options
from .partitions import ANSWERS_SCHEMA, merge_table, merger, query_table
from .results import OUTPUT_TYPES, RESULT_COLUMNS, text_series
from .service._secret import hide_key

__all__ = ["check", "result_schema"]

#: The library's output types as Spark takes them: text plain (not dictionary-encoded), timestamps in µs.
_SPARK_TYPES = {
    name: pa.string() if pa.types.is_dictionary(kind) else pa.timestamp("us", tz="UTC")
    if pa.types.is_timestamp(kind) else kind for name, kind in OUTPUT_TYPES.items()
}  # fmt: skip


def check(
    df: DataFrame,
    column: str,
    *,
    checkpoint: str,
    prefix: str = "",
    queries: str = "driver",
    tasks: int | None = None,
    **options: Any,
) -> DataFrame:
    """``df`` with the result columns added (named with ``prefix``), as ``df.qxt.check`` adds them.

    ``checkpoint`` must be a path the driver (and with ``queries="executors"``, every executor)
    can reach. Options are those of ``df.qxt.check``; ``tasks`` is how many query tasks share
    the work with ``queries="executors"`` (default: the default parallelism).

    Example::

        out = check(df, "mobile", checkpoint="/shared/runs/crm.qxt", max_concurrency=64)
    """
    hide_key(options)
    opts = with_options(checkpoint=checkpoint, **options)
    if checkpoint is None:
        raise ConfigurationError("A Spark check needs checkpoint=: it is how a retried task or a second run "
                                 "avoids paying again.")  # fmt: skip
    if queries not in ("driver", "executors"):
        raise ValueError(f"queries={queries!r}: use 'driver' (the default) or 'executors'")
    if column not in df.columns:
        raise KeyError(f"no column {column!r}; the columns are {df.columns}")
    names = [prefix + name for name in RESULT_COLUMNS]
    clash = [name for name in names if name in df.columns]
    if clash:
        raise ColumnConflictError(f"The frame already has column(s) {', '.join(clash)}; pass prefix='new_'.")
    spark = df.sparkSession
    schema = result_schema(df.schema, names)
    _refuse_speculation(spark, queries)
    numbers = _distinct(df, column)
    try:  # before paying: the executors can merge, into this schema
        _on_executors(_merged(df, column, names, schema, ANSWERS_SCHEMA.empty_table()).limit(3).collect)
        if queries == "driver":
            answers = query_table(numbers.toArrow()["mobile"].to_pylist(), opts)
        else:
            answers = _query_on_executors(numbers, opts, tasks or spark.sparkContext.defaultParallelism)
    finally:
        numbers.unpersist()
    return _merged(df, column, names, schema, answers)


def result_schema(schema: StructType, names: list[str] | None = None) -> StructType:
    """``schema`` with the result columns added, their Spark types derived from the library's output types."""
    added = [StructField(name, from_arrow_type(kind), True)
             for name, kind in zip(names or RESULT_COLUMNS, _SPARK_TYPES.values(), strict=True)]  # fmt: skip
    return StructType([*schema.fields, *added])


def _merged(df: DataFrame, column: str, names: list[str], schema: StructType, answers: pa.Table) -> DataFrame:
    shared = df.sparkSession.sparkContext.broadcast(answers)  # pickled once, read by every task
    return df.mapInArrow(functools.partial(_merge_batches, column=column, answers=shared, names=names), schema)


def _merge_batches(
    batches: Iterator[pa.RecordBatch], column: str, answers: Any, names: list[str]
) -> Iterator[pa.RecordBatch]:
    merged = merger(answers.value, lambda: answers.value)
    for batch in batches:
        table = merge_table(pa.Table.from_batches([batch]), column, merged, names)
        added = table.num_columns - len(names)
        for i, (name, kind) in enumerate(zip(names, _SPARK_TYPES.values(), strict=True)):
            table = table.set_column(added + i, name, table[name].cast(kind))
        yield from table.to_batches()


def _distinct_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        _, numbers, _ = number_codes(text_series(batch.column(0)))
        yield pa.RecordBatch.from_arrays([numbers.cast(pa.string())], ["mobile"])


def _distinct(df: DataFrame, column: str) -> DataFrame:
    """Step 1: the distinct valid numbers of the whole frame, computed (cached) now."""
    numbers = df.select(column).mapInArrow(_distinct_batches, "mobile string").distinct().cache()
    _on_executors(numbers.count)
    return numbers


def _query_batches(batches: Iterator[pa.RecordBatch], options: CheckOptions, tasks: int) -> Iterator[pa.RecordBatch]:
    from pyspark import TaskContext

    context = TaskContext.get()
    share = options.share(tasks, context.partitionId() if context is not None else 0)
    numbers = [n for batch in batches for n in batch.column(0).to_pylist()]
    yield from query_table(numbers, share).to_batches()


def _query_on_executors(numbers: DataFrame, options: CheckOptions, tasks: int) -> pa.Table:
    answers = numbers.repartition(tasks).mapInArrow(functools.partial(_query_batches, options=options, tasks=tasks),
                                                    _spark_schema(ANSWERS_SCHEMA))  # fmt: skip
    return answers.toArrow().cast(ANSWERS_SCHEMA)


def _spark_schema(schema: pa.Schema) -> StructType:
    return StructType([StructField(f.name, from_arrow_type(f.type), True) for f in schema])


def _refuse_speculation(spark: Any, queries: str) -> None:
    speculative = spark.sparkContext.getConf().get("spark.speculation", "false").lower() == "true"
    if speculative and queries == "executors":
        warnings.warn(
            "spark.speculation is on: Spark may run a second copy of a slow query task at the same time. "
            "Claims on the checkpoint keep the copies from paying twice, but the copy only waits; turn "
            "speculation off for this job.",
            RuntimeWarning,
            stacklevel=3,
        )


def _on_executors(action: Callable[[], object]) -> object:
    """Run a Spark action, retelling "executors cannot import qxt_pandas" as a configuration error."""
    try:
        return action()
    except Exception as exc:
        if "No module named 'qxt_pandas'" not in str(exc):
            raise
        raise ConfigurationError(
            "Spark's Python workers cannot import qxt_pandas. In local mode, start the session with "
            f"spark.pyspark.python (or $PYSPARK_PYTHON) set to this interpreter ({sys.executable}); on a cluster, "
            "install qxt-pandas on every executor. Nothing was asked or paid for."
        ) from None
