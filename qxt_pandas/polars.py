"""``df.qxt`` and ``s.qxt`` on Polars: the same check, Polars in and Polars out.

``import qxt_pandas.polars`` registers a ``qxt`` namespace on ``pl.DataFrame``,
``pl.Series`` and ``pl.LazyFrame`` (where it only says to ``collect()`` first: a
query that pays must not hide inside a lazy plan). Options, checkpoints of both
kinds, progress and errors are the pandas accessor's: the same pipeline runs.

The column goes to the pipeline as Arrow (``Series.to_arrow``, zero-copy where
Polars allows) and the results come back as Arrow arrays made into Polars
columns, so no column is ever converted to pandas objects. Result types:
``Status``, ``Area``, ``Init_isp``, ``Now_isp`` and ``qxt_error`` are
``pl.Categorical`` (their values are open-ended: a vendor may send a new
Status), ``Is_MNP`` ``pl.Boolean``, ``qxt_mobile`` ``pl.String``,
``qxt_code`` ``pl.Int16``, ``qxt_checked_at`` ``pl.Datetime("ms", "UTC")``;
null where pandas has NA.

Example::

    import polars as pl
    import qxt_pandas.polars  # noqa: F401 (registers .qxt)

    crm = pl.read_csv("crm_export.csv", infer_schema=False)
    checked = crm.qxt.check("mobile", checkpoint="runs/crm.qxt")   # QXT_APIKEY from env
    parts = checked.qxt.split()                                     # {"正常": ..., "空号": ...}
"""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np
import pyarrow as pa

try:
    import polars as pl
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError("df.qxt on Polars needs polars: pip install 'qxt-pandas[polars]'") from exc

from . import pipeline
from .numbers import REASONS
from .pipeline import Plan
from .results import RESULT_COLUMNS, Results, outcomes, text_series
from .service._secret import hide_key
from .system.sync import run_sync

__all__ = ["PolarsDataFrameNamespace", "PolarsLazyFrameNamespace", "PolarsSeriesNamespace"]


def _arrow(series: pl.Series) -> pa.Array | pa.ChunkedArray:
    return series.to_arrow()


async def _results(series: pl.Series, options: pipeline.CheckOptions) -> pl.DataFrame:
    """The result columns for ``series``, one row per value, as a Polars frame."""

    def shape(results: Results, codes: np.ndarray, reasons: np.ndarray) -> pl.DataFrame:
        # Each distinct number's results once (and one row per reason a value can be invalid for), then
        # every row gathered from those by Polars (Rust, a thread a column): not a million rows built here.
        known, kinds = len(results.numbers), len(REASONS)
        once = results.output(np.concatenate([np.arange(known), np.full(kinds, -1)]),
                              np.concatenate([np.full(known, -1), np.arange(kinds)]).astype(np.int8))  # fmt: skip
        table: pl.DataFrame = pl.from_arrow(pa.table(dict(zip(RESULT_COLUMNS, once, strict=True))))  # type: ignore[assignment]
        return table[np.where(codes >= 0, codes, known + np.maximum(reasons, 0).astype(np.int64))]

    # text_series: Arrow text as pandas' Arrow-backed string array (a view, not a copy) for the normalizer.
    return await pipeline.checked(text_series(_arrow(series)), options, shape)


class PolarsSeriesNamespace:
    """``series.qxt``: check the numbers in a Polars Series; one result row per value."""

    def __init__(self, series: pl.Series) -> None:
        self._series = series

    def check(self, **options: Any) -> pl.DataFrame:
        """The result columns (``Status`` … ``qxt_checked_at``), a row per value, in order.

        Example::

            res = df["mobile"].qxt.check(checkpoint="runs/crm.qxt")
        """
        hide_key(options)
        return run_sync(self.acheck(**options))

    async def acheck(self, **options: Any) -> pl.DataFrame:
        """Async :meth:`check`."""
        hide_key(options)
        return await _results(self._series, pipeline.with_options(**options))

    def plan(self, **options: Any) -> Plan:
        """What :meth:`check` would do and cost (reads the balance, pays for nothing)."""
        hide_key(options)
        return run_sync(pipeline.aplan(text_series(_arrow(self._series)), pipeline.with_options(**options)))


class PolarsDataFrameNamespace:
    """``df.qxt``: check one column; a new frame with every input column untouched and the results after."""

    def __init__(self, frame: pl.DataFrame) -> None:
        self._frame = frame

    def check(self, column: str, *, prefix: str = "", **options: Any) -> pl.DataFrame:
        """The frame with the result columns added after its own (same rows, same order).

        ``prefix`` is put before every added column's name; without one, a frame that already has
        such columns (one checked before, say) is refused, as in pandas.

        Example::

            out = df.qxt.check("mobile", checkpoint="runs/crm.qxt")
        """
        hide_key(options)
        return run_sync(self.acheck(column, prefix=prefix, **options))

    async def acheck(self, column: str, *, prefix: str = "", **options: Any) -> pl.DataFrame:
        """Async :meth:`check`."""
        hide_key(options)
        opts = pipeline.with_options(**options)  # every option checked before anything else
        names = pipeline.added_names(self._frame.columns, column, prefix)
        added = await _results(self._frame.get_column(column), opts)
        return self._frame.hstack(added.rename(dict(zip(RESULT_COLUMNS, names, strict=True))).get_columns())

    def plan(self, column: str, **options: Any) -> Plan:
        """What :meth:`check` would do and cost (reads the balance, pays for nothing)."""
        hide_key(options)
        opts = pipeline.with_options(**options)
        pipeline.added_names(self._frame.columns, column, "")
        return run_sync(pipeline.aplan(text_series(_arrow(self._frame.get_column(column))), opts))

    def split(self, prefix: str = "") -> dict[str, pl.DataFrame]:
        """A checked frame's rows by outcome, as ``qxt check --split`` writes them: each vendor
        ``Status`` (正常, 空号, 停机 …), ``invalid``, ``unknown`` and ``unanswered``.

        Example::

            parts = checked.qxt.split()
            parts["正常"].write_excel("正常.xlsx")
        """
        code, status = prefix + "qxt_code", prefix + "Status"
        if code not in self._frame.columns or status not in self._frame.columns:
            raise KeyError(f"no {code!r}/{status!r} columns: split a frame that df.qxt.check returned")
        each = outcomes(_arrow(self._frame.get_column(code)), _arrow(self._frame.get_column(status)))
        names = pl.Series("outcome", each)
        return {name: self._frame.filter(names == name) for name in names.unique(maintain_order=True).to_list()}


class PolarsLazyFrameNamespace:
    """``lf.qxt``: refused. A check pays per number; it runs on data, not inside a lazy plan."""

    def __init__(self, frame: pl.LazyFrame) -> None:
        self._frame = frame

    def _refuse(self, *args: Any, **options: Any) -> NoReturn:
        hide_key(options)
        raise TypeError(
            "qxt works on a DataFrame, not a LazyFrame: a check pays for every number, so it must not hide "
            "inside a lazy plan that may run again. Call .collect() first: lf.collect().qxt.check(...)."
        )

    check = acheck = plan = split = _refuse


def _register() -> None:
    """Register the namespaces once; refuse to shadow another package's ``qxt``."""
    ours = {pl.DataFrame: PolarsDataFrameNamespace, pl.Series: PolarsSeriesNamespace,
            pl.LazyFrame: PolarsLazyFrameNamespace}  # fmt: skip
    register = {pl.DataFrame: pl.api.register_dataframe_namespace, pl.Series: pl.api.register_series_namespace,
                pl.LazyFrame: pl.api.register_lazyframe_namespace}  # fmt: skip
    for kind, namespace in ours.items():
        existing = getattr(kind, "qxt", None)  # on the class, polars' descriptor gives the namespace class
        if existing is None:
            register[kind]("qxt")(namespace)
        elif (existing.__module__, existing.__qualname__) != (__name__, namespace.__qualname__):
            raise ImportError(
                f"polars.{kind.__name__} already has a 'qxt' namespace ({existing.__module__}."
                f"{existing.__qualname__}) from another package; qxt_pandas.polars will not replace it."
            )


_register()
