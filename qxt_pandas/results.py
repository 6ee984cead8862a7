"""From answers per unique number to typed result columns per row (vectorized).

The columns a check adds, in order: the vendor's ``Status, Area, Is_MNP,
Init_isp, Now_isp`` under the vendor's names, then ``qxt_mobile``,
``qxt_code``, ``qxt_error`` and ``qxt_checked_at``. Dtypes: carriers, status,
area and error are categoricals whose categories come from the data (so a
status the vendor adds later, such as 沉默号 or 风险号, is kept verbatim);
``Is_MNP`` is nullable boolean; ``qxt_code`` nullable ``Int16``;
``qxt_checked_at`` a UTC timestamp.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .checkpoint import ANSWER_SCHEMA
from .errors import QxtError
from .numbers import REASONS

__all__ = ["LOCAL_INVALID", "RESULT_COLUMNS", "VENDOR_COLUMNS", "build_columns"]

VENDOR_COLUMNS = ("Status", "Area", "Is_MNP", "Init_isp", "Now_isp")
RESULT_COLUMNS = (*VENDOR_COLUMNS, "qxt_mobile", "qxt_code", "qxt_error", "qxt_checked_at")
#: ``qxt_code`` of a row whose value was rejected locally and never sent; ``qxt_error`` says why.
LOCAL_INVALID = -100


def build_columns(
    norm: pd.DataFrame,
    codes: np.ndarray,
    uniques: pa.Array,
    answers: pa.Table,
    failures: dict[str, QxtError],
    not_asked: str | None,
) -> pd.DataFrame:
    """The result columns for every row.

    ``norm`` is ``normalize_mobiles``'s output; ``codes`` maps each row to its
    number in ``uniques`` (-1: invalid). ``answers`` holds answers (checkpoint's and
    this run's, one per number, in ``ANSWER_SCHEMA``); ``failures`` numbers that
    failed this run; every other unique number was not asked, for the reason
    ``not_asked``.
    """
    per_number = _per_number(uniques, answers, failures, not_asked)
    rows = pa.array(codes, type=pa.int64(), mask=codes < 0)
    invalid = codes < 0

    def spread(name: str) -> pa.Array:
        return per_number[name].take(rows)

    reason_codes = norm["qxt_error"].cat.codes.to_numpy()
    local_reason = pa.array(REASONS, pa.string()).take(pa.array(reason_codes, mask=reason_codes < 0))
    error = pc.if_else(pa.array(invalid), local_reason, spread("error"))
    code = spread("code")
    code_values = np.where(invalid, LOCAL_INVALID, pc.fill_null(code, 0).to_numpy(zero_copy_only=False))
    code_missing = pc.is_null(code).to_numpy(zero_copy_only=False) & ~invalid
    mnp = spread("Is_MNP")
    columns = {
        "Status": _categorical(spread("Status")),
        "Area": _categorical(spread("Area")),
        "Is_MNP": pd.arrays.BooleanArray(
            pc.fill_null(mnp, False).to_numpy(zero_copy_only=False), pc.is_null(mnp).to_numpy(zero_copy_only=False)
        ),
        "Init_isp": _categorical(spread("Init_isp")),
        "Now_isp": _categorical(spread("Now_isp")),
        "qxt_mobile": norm["qxt_mobile"].array,
        "qxt_code": pd.arrays.IntegerArray(code_values.astype(np.int16), code_missing),
        "qxt_error": _categorical(error),
        "qxt_checked_at": pd.to_datetime(  # whole milliseconds: float seconds carry noise below that
            np.round(spread("checked_at").to_numpy(zero_copy_only=False) * 1000), unit="ms", utc=True
        ),
    }
    return pd.DataFrame({name: pd.Series(values, index=norm.index) for name, values in columns.items()})


def _per_number(
    uniques: pa.Array, answers: pa.Table, failures: dict[str, QxtError], not_asked: str | None
) -> dict[str, pa.Array]:
    """Columns aligned with ``uniques``: the vendor fields, code, error text, time."""
    if answers.num_rows == 0:
        answers = ANSWER_SCHEMA.empty_table()
    found = pc.index_in(uniques, value_set=answers["mobile"].combine_chunks())
    aligned = {name: answers[name].combine_chunks().take(found) for name in ANSWER_SCHEMA.names}
    code = aligned["code"]
    vendor_error = pc.if_else(
        pc.fill_null(pc.not_equal(code, 0), False),
        pc.coalesce(aligned["reason"], pc.binary_join_element_wise("code ", pc.cast(code, pa.string()), "")),
        pa.scalar(None, pa.string()),
    )
    error = vendor_error
    unanswered = pc.is_null(found)
    if pc.any(unanswered).as_py():
        # Few numbers (failures, and those a stopped run never asked): patched in Python.
        error_list = error.to_pylist()
        code_list = code.to_pylist()
        for i in np.flatnonzero(unanswered.to_numpy(zero_copy_only=False)):
            failure = failures.get(uniques[i].as_py())
            if failure is not None:
                error_list[i] = f"failed after {failure.attempts} attempt(s): {type(failure).__name__}: {failure}"
                code_list[i] = failure.code
            else:
                error_list[i] = f"not asked: {not_asked or 'the run ended early'}"
        error = pa.array(error_list, pa.string())
        code = pa.array(code_list, pa.int16())
    aligned["error"] = error
    aligned["code"] = code
    return aligned


def _categorical(values: pa.Array) -> pd.Categorical:
    """Arrow strings as a pandas Categorical; categories are the distinct values, as they come."""
    encoded = pc.dictionary_encode(values.cast(pa.string()))
    indices = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    return pd.Categorical.from_codes(indices, categories=pd.Index(encoded.dictionary.to_pylist()))
