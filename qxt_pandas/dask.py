"""``ddf.qxt.check``: the same check on a Dask DataFrame, for exports that outgrow one machine.

``import qxt_pandas.dask`` registers the accessor (``import qxt_pandas`` does
too when Dask is already imported). The graph, all lazy:

1. every partition's distinct valid numbers, then a global ``drop_duplicates``,
   so a number in many partitions is paid for once;
2. those numbers in ``tasks`` parts, one query task each, with the global
   ``concurrency`` (or with ``"auto"``, its ceiling), ``rate`` and ``budget``
   split between them. Each task
   subtracts the shared checkpoint, reads the balance, queries the rest and
   journals every answer there, so a task that a killed worker leaves behind
   and Dask retries pays nothing again;
3. each input partition merged with all the answers (broadcast once).

Example::

    import dask.dataframe as dd
    import qxt_pandas.dask  # noqa: F401

    ddf = dd.read_csv("exports/*.csv", dtype=str)
    out = ddf.qxt.check("mobile", checkpoint="/shared/runs/crm.qxt", max_concurrency=128)
    out.to_parquet("checked/")
"""

from __future__ import annotations

from typing import Any

try:
    import dask.dataframe as dd
    from dask.delayed import delayed
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError("ddf.qxt needs Dask: pip install 'qxt-pandas[dask]'") from exc
import numpy as np
import pandas as pd
import pyarrow as pa
from dask.dataframe.extensions import register_dataframe_accessor
from dask.dataframe.utils import clear_known_categories

from . import pipeline
from .errors import ColumnConflictError, ConfigurationError
from .partitions import answers_frame, distinct_numbers, merge_results, query_numbers
from .results import RESULT_COLUMNS, build_columns
from .service._secret import hide_key
from .service.answers import answers_table

__all__ = ["DaskAccessor"]


@register_dataframe_accessor("qxt")
class DaskAccessor:
    """``ddf.qxt``: check one column of a Dask DataFrame; the result is lazy."""

    def __init__(self, frame: dd.DataFrame) -> None:
        self._frame = frame

    def check(self, column: str, *, tasks: int | None = None, prefix: str = "", **options: Any) -> dd.DataFrame:
        """The frame with the result columns added, as a lazy Dask DataFrame (same options as pandas).

        ``checkpoint`` is required and must be a path every worker can reach. ``tasks``
        is how many query tasks share the work (default: the cluster's threads).
        """
        hide_key(options)
        opts = pipeline.with_options(**options)
        if opts.checkpoint is None:
            raise ConfigurationError(
                "A Dask check needs checkpoint= on a path every worker can reach: it is how workers share "
                "answers and how a retried task avoids paying again."
            )
        names = [prefix + name for name in RESULT_COLUMNS]
        clash = [name for name in names if name in self._frame.columns]
        if clash:
            raise ColumnConflictError(f"The frame already has column(s) {', '.join(clash)}; pass prefix='new_'.")
        if column not in self._frame.columns:
            raise KeyError(f"no column {column!r}; the columns are {list(self._frame.columns)}")
        tasks = tasks or _threads()
        numbers = (
            self._frame[column]
            .map_partitions(distinct_numbers, meta=pd.Series([], dtype=object, name="mobile"))
            .drop_duplicates()
            .repartition(npartitions=tasks)
        )
        answers = numbers.map_partitions(query_numbers, opts, tasks, meta=answers_frame())
        everything = delayed(pd.concat)(answers.to_delayed(), ignore_index=True)
        meta, result_meta = self._frame._meta.copy(), _result_meta()
        for name, source in zip(names, RESULT_COLUMNS, strict=True):
            meta[name] = result_meta[source].array
        meta = clear_known_categories(meta, cols=[n for n in names if isinstance(meta[n].dtype, pd.CategoricalDtype)])
        return self._frame.map_partitions(merge_results, column, everything, names, meta=meta)


def _threads() -> int:
    """Threads of the distributed cluster in use, else this machine's cores."""
    try:
        from distributed import get_client

        return max(1, sum(get_client().nthreads().values()))
    except (ImportError, ValueError):
        import os

        return os.cpu_count() or 1


def _result_meta() -> pd.DataFrame:
    """The result columns' exact dtypes: the real builder on no rows (no fake data)."""
    empty = np.array([], np.int64)
    return build_columns(pd.RangeIndex(0), empty, pa.array([], pa.string()), empty.astype(np.int8),
                         answers_table([]), {}, None)  # fmt: skip
