"""From answers per unique number to typed result columns per row (vectorized).

The columns a check adds, in order: the vendor's ``Status, Area, Is_MNP,
Init_isp, Now_isp`` under the vendor's names, then ``qxt_mobile``,
``qxt_code``, ``qxt_error`` and ``qxt_checked_at``. Dtypes: carriers, status,
area and error are categoricals whose categories come from the data (so a
status the vendor adds later, such as 沉默号 or 风险号, is kept verbatim);
``Is_MNP`` is nullable boolean; ``qxt_code`` nullable ``Int16``;
``qxt_checked_at`` a UTC timestamp in milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import QxtError
from .journal import ANSWER_SCHEMA
from .numbers import REASONS, number_codes

__all__ = [
    "LOCAL_INVALID",
    "OUTPUT_TYPES",
    "RESULT_COLUMNS",
    "VENDOR_COLUMNS",
    "Failure",
    "append_results",
    "build_columns",
    "text_series",
]

VENDOR_COLUMNS = ("Status", "Area", "Is_MNP", "Init_isp", "Now_isp")
RESULT_COLUMNS = (*VENDOR_COLUMNS, "qxt_mobile", "qxt_code", "qxt_error", "qxt_checked_at")
#: ``qxt_code`` of a row whose value was rejected locally and never sent; ``qxt_error`` says why.
LOCAL_INVALID = -100
#: Arrow types of the result columns outside pandas (files, Spark): categoricals as plain text.
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


@dataclass(frozen=True)
class Failure:
    """A number that failed after its retries, as its row shows it: the last code, and the story.

    Plain data, so that it crosses processes and Spark schemas as it is.
    """

    code: int | None
    text: str

    @classmethod
    def of(cls, exc: QxtError) -> Failure:
        return cls(exc.code, f"failed after {exc.attempts} attempt(s): {type(exc).__name__}: {exc}")


def text_series(array: pa.Array | pa.ChunkedArray) -> pd.Series:
    """A column of an Arrow table as the Series ``number_codes`` reads (text stays Arrow-backed)."""
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        return pd.Series(pd.arrays.ArrowStringArray(array.cast(pa.large_string())))
    return array.to_pandas()


def append_results(
    table: pa.Table,
    column: str,
    answers: pa.Table,
    failures: Mapping[str, Failure],
    not_asked: str | None,
    names: Sequence[str] = RESULT_COLUMNS,
) -> tuple[pa.Table, pd.DataFrame]:
    """``table`` with the result columns appended as ``names`` in :data:`OUTPUT_TYPES`; also the pandas columns."""
    codes, numbers, reasons = number_codes(text_series(table.column(column)))
    columns = build_columns(pd.RangeIndex(len(codes)), codes, numbers, reasons, answers, failures, not_asked)
    for name, (source, kind) in zip(names, OUTPUT_TYPES.items(), strict=True):
        table = table.append_column(name, pa.array(columns[source].array).cast(kind))
    return table, columns


def build_columns(
    index: pd.Index,
    codes: np.ndarray,
    numbers: pa.Array,
    reasons: np.ndarray,
    answers: pa.Table,
    failures: Mapping[str, Failure],
    not_asked: str | None,
) -> pd.DataFrame:
    """The result columns for every row.

    ``codes``, ``numbers`` and ``reasons`` are :func:`~qxt_pandas.numbers.number_codes`'s
    output. ``answers`` holds answers (the checkpoint's and this run's, one per number, in
    ``ANSWER_SCHEMA``); ``failures`` the numbers that failed this run; every other number was
    not asked, for the reason ``not_asked``. Work is per distinct number; rows only take codes.
    """
    per_number = _per_number(numbers, answers, failures, not_asked)
    valid = codes >= 0
    at = codes[valid]

    def spread(values: np.ndarray, fill: object) -> np.ndarray:
        out = np.full(len(codes), fill, dtype=values.dtype)
        out[valid] = values[at]
        return out

    def categorical(name: str, local: tuple[str, ...] = ()) -> pd.Categorical:
        encoded = pc.dictionary_encode(per_number[name].cast(pa.string()))
        categories = encoded.dictionary.to_pylist()
        row_codes = spread(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int32), -1)
        if local:  # invalid rows: the local reason, appended to the categories
            extra = [r for r in local if r not in categories]
            lookup = np.array([categories.index(r) if r in categories else len(categories) + extra.index(r)
                               for r in local], np.int32)  # fmt: skip
            row_codes[~valid] = lookup[reasons[~valid]]
            categories += extra
        return pd.Categorical.from_codes(row_codes, categories=categories)

    def masked(name: str) -> tuple[np.ndarray, np.ndarray]:
        column = per_number[name]
        values = pc.fill_null(column, False if pa.types.is_boolean(column.type) else 0)
        return values.to_numpy(zero_copy_only=False), pc.is_null(column).to_numpy(zero_copy_only=False)

    mnp, mnp_missing = masked("Is_MNP")
    code, code_missing = masked("code")
    checked_at = pc.fill_null(per_number["checked_at"], np.nan).to_numpy(zero_copy_only=False)
    # whole milliseconds: float seconds carry noise below that
    millis = np.round(spread(checked_at, np.nan) * 1000)
    columns = {
        "Status": categorical("Status"),
        "Area": categorical("Area"),
        "Is_MNP": pd.arrays.BooleanArray(spread(mnp, False), spread(mnp_missing, True)),
        "Init_isp": categorical("Init_isp"),
        "Now_isp": categorical("Now_isp"),
        "qxt_mobile": pd.arrays.ArrowStringArray(numbers.take(pa.array(codes, mask=~valid))),
        "qxt_code": pd.arrays.IntegerArray(spread(code.astype(np.int16), LOCAL_INVALID), spread(code_missing, False)),
        "qxt_error": categorical("error", REASONS),
        "qxt_checked_at": pd.to_datetime(millis, unit="ms", utc=True).as_unit("ms"),
    }
    return pd.DataFrame({name: pd.Series(values, index=index) for name, values in columns.items()})


def _per_number(
    uniques: pa.Array, answers: pa.Table, failures: Mapping[str, Failure], not_asked: str | None
) -> dict[str, pa.Array]:
    """Columns aligned with ``uniques``: the vendor fields, code, error text, time."""
    found = pc.index_in(uniques, value_set=answers["mobile"].combine_chunks())
    aligned = {name: answers[name].combine_chunks().take(found) for name in ANSWER_SCHEMA.names}
    code = aligned["code"]
    error = pc.if_else(
        pc.fill_null(pc.not_equal(code, 0), False),
        pc.coalesce(aligned["reason"], pc.binary_join_element_wise("code ", pc.cast(code, pa.string()), "")),
        pa.scalar(None, pa.string()),
    )
    unanswered = pc.is_null(found)
    if pc.any(unanswered).as_py():
        # Few numbers (failures, and those a stopped run never asked): patched in Python.
        error_list = error.to_pylist()
        code_list = code.to_pylist()
        for i in np.flatnonzero(unanswered.to_numpy(zero_copy_only=False)):
            failure = failures.get(uniques[i].as_py())
            if failure is not None:
                error_list[i] = failure.text
                code_list[i] = failure.code
            else:
                error_list[i] = f"not asked: {not_asked or 'the run ended early'}"
        error = pa.array(error_list, pa.string())
        code = pa.array(code_list, pa.int16())
    aligned["error"] = error
    aligned["code"] = code
    return aligned
