"""``df.qxt`` and ``s.qxt``: the pandas face of a check. Registered on ``import qxt_pandas``.

Thin on purpose: options go to :class:`~qxt_pandas.pipeline.CheckOptions`,
the work to :mod:`~qxt_pandas.pipeline`; nothing is kept between calls.

Example::

    checked = crm.qxt.check("mobile", checkpoint="runs/crm.qxt")   # QXT_APIKEY from env
    checked[["mobile", "Status", "Area", "Is_MNP", "Init_isp", "Now_isp"]]
    print(crm.qxt.plan("mobile", checkpoint="runs/crm.qxt"))       # what it would cost
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

from . import pipeline
from .masked import masked_series
from .pipeline import Plan
from .results import outcomes
from .service._secret import hide_key
from .system.sync import run_sync

__all__ = ["DataFrameAccessor", "SeriesAccessor"]

_OPTIONS_DOC = """
    Options (keywords): ``apikey`` (default ``$QXT_APIKEY``), ``base_url``
    (default ``$QXT_BASE_URL``, then the vendor), ``concurrency`` ("auto":
    adapt to the service's push-back, up to ``max_concurrency``, 128; or a
    fixed number), ``patience`` (300 s of nothing but push-back ends a run),
    ``rate`` (requests/s, unlimited), ``timeout`` (10 s), ``retries`` (3),
    ``checkpoint`` (a directory; resume and never pay twice), ``max_age``
    (re-ask stored answers older than this: seconds, timedelta or '90d'),
    ``budget`` (most paid queries this run), ``progress`` (True), ``price``
    (yuan per query, default ``$QXT_PRICE``: the plan's cost in yuan).
"""


@pd.api.extensions.register_series_accessor("qxt")
class SeriesAccessor:
    """``series.qxt``: check the numbers in a Series; results share its index."""

    def __init__(self, series: pd.Series) -> None:
        self._series = series

    def check(self, **options: Any) -> pd.DataFrame:
        """The result columns (``Status`` … ``qxt_checked_at``) for each value, same index.

        Example::

            res = df["mobile"].qxt.check(checkpoint="runs/crm.qxt")
        """
        hide_key(options)  # first, in every face: no frame's locals show the key (verbose tracebacks)
        return run_sync(self.acheck(**options))

    async def acheck(self, **options: Any) -> pd.DataFrame:
        """Async :meth:`check`."""
        hide_key(options)
        return await pipeline.acheck(self._series, pipeline.with_options(**options))

    def plan(self, **options: Any) -> Plan:
        """What :meth:`check` would do and cost (reads the balance, pays for nothing)."""
        hide_key(options)
        return run_sync(pipeline.aplan(self._series, pipeline.with_options(**options)))

    check.__doc__ = (check.__doc__ or "") + _OPTIONS_DOC


@pd.api.extensions.register_dataframe_accessor("qxt")
class DataFrameAccessor:
    """``df.qxt``: check one column; the result is a new frame with every input column untouched."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def check(self, column: Any, *, prefix: str = "", **options: Any) -> pd.DataFrame:
        """A copy of the frame with the result columns added (same index, same order).

        ``prefix`` is put before every added column's name; without one, a frame that
        already has such columns (one checked before, say) is refused.

        Example::

            out = df.qxt.check("mobile", checkpoint="runs/crm.qxt")
        """
        hide_key(options)
        return run_sync(self.acheck(column, prefix=prefix, **options))

    async def acheck(self, column: Any, *, prefix: str = "", **options: Any) -> pd.DataFrame:
        """Async :meth:`check`."""
        hide_key(options)
        opts = pipeline.with_options(**options)  # every option checked before anything else
        names = pipeline.added_names(self._frame.columns, column, prefix)
        added = await pipeline.acheck(self._frame[column], opts)
        out = self._frame.copy()
        for name, source in zip(names, added.columns, strict=True):
            out[name] = added[source].array  # positional: duplicate index labels are fine
        if opts.mask_output:
            for name in (column, prefix + "qxt_mobile"):
                out[name] = masked_series(out[name]).array
        return out

    def plan(self, column: Any, **options: Any) -> Plan:
        """What :meth:`check` would do and cost (reads the balance, pays for nothing)."""
        hide_key(options)
        opts = pipeline.with_options(**options)
        pipeline.added_names(self._frame.columns, column, "")
        return run_sync(pipeline.aplan(self._frame[column], opts))

    def split(self, prefix: str = "") -> dict[str, pd.DataFrame]:
        """A checked frame's rows by outcome, as ``qxt check --split`` writes them: each vendor
        ``Status`` (正常, 空号, 停机 …), ``invalid``, ``unknown`` and ``unanswered``.

        Example::

            parts = checked.qxt.split()
            parts["正常"].to_excel("正常.xlsx", index=False)
        """
        code, status = prefix + "qxt_code", prefix + "Status"
        if code not in self._frame.columns or status not in self._frame.columns:
            raise KeyError(f"no {code!r}/{status!r} columns: split a frame that df.qxt.check returned")
        codes = pa.array(self._frame[code], pa.int16())
        each = outcomes(codes, pa.array(self._frame[status].astype(object), pa.string()))
        each = each.to_numpy(zero_copy_only=False)
        return {outcome: self._frame[each == outcome] for outcome in pd.unique(each)}

    check.__doc__ = (check.__doc__ or "") + _OPTIONS_DOC
