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

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import CHARGED_UNREADABLE, QxtError
from .numbers import REASONS, positions

__all__ = [
    "LOCAL_INVALID",
    "NO_STATUS",
    "OUTPUT_TYPES",
    "RESULT_COLUMNS",
    "VENDOR_COLUMNS",
    "Failure",
    "Results",
    "build_columns",
    "outcomes",
    "text_series",
]

VENDOR_COLUMNS = ("Status", "Area", "Is_MNP", "Init_isp", "Now_isp")
RESULT_COLUMNS = (*VENDOR_COLUMNS, "qxt_mobile", "qxt_code", "qxt_error", "qxt_checked_at")
#: ``qxt_code`` of a row whose value was rejected locally and never sent; ``qxt_error`` says why.
LOCAL_INVALID = -100
#: How counts name answers (code 0) whose ``Status`` the vendor left empty; and ``--split``'s file for them.
NO_STATUS = "no-status"
_TEXT = pa.dictionary(pa.int32(), pa.string())
_TEXT_COLUMNS = ("Status", "Area", "Init_isp", "Now_isp")
_NO_CODE = -(2**15)  # qxt_code's mark for "no code" in the packed rows (vendor codes are small)
_CODE = 5  # the packed rows' column of qxt_code
#: Arrow types of the result columns in files: the few-valued text columns dictionary-encoded (pandas
#: reads them back as the categoricals df.qxt.check gives; writing them so saves Parquet re-hashing
#: 5M strings a column), the number as plain text.
OUTPUT_TYPES = {
    "Status": _TEXT,
    "Area": _TEXT,
    "Is_MNP": pa.bool_(),
    "Init_isp": _TEXT,
    "Now_isp": _TEXT,
    "qxt_mobile": pa.string(),
    "qxt_code": pa.int16(),
    "qxt_error": _TEXT,
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
    return cast(pd.Series, array.to_pandas())


class Results:
    """Every distinct number's result columns, computed once; rows take them by code.

    The work is per distinct number; a row costs a ``take``, whatever the number of
    distinct numbers. Text columns stay dictionary-encoded (categoricals in pandas, plain
    text in files). One core for every face: :meth:`frame` (pandas), :meth:`output` (files,
    Spark), and :meth:`codes_of` maps another batch's numbers to these (Spark, Dask).

    Example::

        results = Results(numbers, answers, failures, not_asked=None)
        frame = results.frame(df.index, codes, reasons)
    """

    def __init__(
        self, numbers: pa.Array, answers: pa.Table, failures: Mapping[str, Failure], not_asked: str | None
    ) -> None:
        self.numbers = numbers
        found = positions(numbers, answers["mobile"])
        # Text a column at a time, dictionary-encoded before it is aligned: a million answers'
        # strings are never copied, only their 4-byte codes.
        text = {name: _aligned_text(answers[name], found) for name in _TEXT_COLUMNS}
        self._dictionaries = {name: column.dictionary for name, column in text.items()}
        code, error = _codes_and_errors(numbers, found, answers, failures, not_asked)
        errors = _encoded(error)
        known = errors.dictionary.to_pylist()
        extra = [r for r in REASONS if r not in known]
        self._error_texts = pa.array(known + extra, pa.string())
        where = {text: i for i, text in enumerate(known + extra)}
        self._reason_codes = np.array([where[r] for r in REASONS], np.int32)
        # whole milliseconds: float seconds carry noise below that
        seconds = answers["checked_at"].take(found).combine_chunks()
        millis = _ints(pc.round(pc.multiply(seconds, 1000.0)).cast(pa.int64()))
        # Every number's values in one int32 row (-1: missing), and a last row for invalid rows.
        # A row's values share a cache line: gathering rows from here is one pass, where a
        # ``take`` per column over a million numbers paid a cache miss each (0.9 s of 5M rows).
        # The time in milliseconds takes two columns (high and low 32 bits).
        # Filled a column at a time: no int64 copy of the whole matrix is ever made.
        self._matrix = np.full((len(numbers) + 1, 9), -1, np.int32)
        rows = self._matrix[:-1]
        for k, name in enumerate(_TEXT_COLUMNS):
            rows[:, k] = _ints(text[name].indices)
        rows[:, 4] = _ints(answers["Is_MNP"].take(found))
        rows[:, _CODE] = _ints(code)
        rows[pc.is_null(code).to_numpy(zero_copy_only=False), _CODE] = _NO_CODE  # -1 is a real code
        rows[:, 6] = _ints(errors.indices)
        rows[:, 7], rows[:, 8] = millis >> 32, millis & 0xFFFFFFFF
        self._lookup: pd.Index | None = None

    def codes_of(self, numbers: pa.Array) -> np.ndarray:
        """Positions of ``numbers`` among these (-1: absent); the hash is built once, on first use."""
        if self._lookup is None:
            self._lookup = pd.Index(self.numbers.to_numpy(zero_copy_only=False))
        return self._lookup.get_indexer(numbers.to_numpy(zero_copy_only=False))

    def rows(self, codes: np.ndarray, reasons: np.ndarray) -> dict[str, pa.Array]:
        """The result columns for rows whose numbers are ``codes`` (-1: invalid, for the reason in ``reasons``)."""
        valid = codes >= 0
        got = self._matrix[np.where(valid, codes, len(self._matrix) - 1)]

        def text(k: int, name: str) -> pa.DictionaryArray:
            return pa.DictionaryArray.from_arrays(pa.array(got[:, k], mask=got[:, k] < 0), self._dictionaries[name])

        mnp, code, error = got[:, 4], np.where(valid, got[:, _CODE], LOCAL_INVALID), got[:, 6].copy()
        millis = (got[:, 7].astype(np.int64) << 32) | got[:, 8].astype(np.int64) & 0xFFFFFFFF
        error[~valid] = self._reason_codes[reasons[~valid]]
        return {
            "Status": text(0, "Status"),
            "Area": text(1, "Area"),
            "Is_MNP": pa.array(mnp == 1, mask=mnp < 0),
            "Init_isp": text(2, "Init_isp"),
            "Now_isp": text(3, "Now_isp"),
            "qxt_mobile": self.numbers.take(pa.array(codes.astype(np.int32, copy=False), mask=~valid)),
            "qxt_code": pa.array(code.astype(np.int16), mask=code == _NO_CODE),
            "qxt_error": pa.DictionaryArray.from_arrays(pa.array(error, mask=error < 0), self._error_texts),
            "qxt_checked_at": pa.array(millis, mask=millis < 0).cast(pa.timestamp("ms", tz="UTC")),
        }

    def tally(self, rows: np.ndarray, invalid: int) -> tuple[Counter[str], Counter[str], int, Counter[str]]:
        """For ``rows[i]`` rows of number ``i`` and ``invalid`` rows with none: rows answered (code 0) by
        Status (an empty one as :data:`NO_STATUS`) and by current carrier, how many are ported, and every
        row by outcome (``answered``, ``no information``, ``invalid (vendor)``, ``unreadable``,
        ``unanswered``, ``invalid (not sent)``): these add up to the rows."""
        numbers = self._matrix[:-1]
        answered = numbers[:, _CODE] == 0
        counted = []
        for k, name in ((0, "Status"), (3, "Now_isp")):
            names = self._dictionaries[name].to_pylist()
            known = answered & (numbers[:, k] >= 0)
            totals = np.bincount(numbers[known, k], weights=rows[known], minlength=len(names))
            counted.append(Counter({key: int(n) for key, n in zip(names, totals, strict=True) if n}))
        empty = int(rows[answered & (numbers[:, 0] < 0)].sum())
        if empty:
            counted[0][NO_STATUS] = empty
        code = numbers[:, _CODE]
        vendor_invalid = np.isin(code, [c for c in INVALID_CODES if c != LOCAL_INVALID])
        kinds = {"answered": answered, "no information": code == -4, "invalid (vendor)": vendor_invalid,
                 "unreadable": code == CHARGED_UNREADABLE}  # fmt: skip
        outcome = Counter({name: int(rows[mask].sum()) for name, mask in kinds.items()})
        outcome["unanswered"] = int(rows.sum()) - sum(outcome.values())
        outcome["invalid (not sent)"] = invalid
        return counted[0], counted[1], int(rows[answered & (numbers[:, 4] == 1)].sum()), outcome

    def output(self, codes: np.ndarray, reasons: np.ndarray) -> list[pa.Array]:
        """:meth:`rows` in :data:`OUTPUT_TYPES` (text as plain strings), in result-column order."""
        rows = self.rows(codes, reasons)
        return [rows[name].cast(kind) for name, kind in OUTPUT_TYPES.items()]

    def frame(self, index: pd.Index, codes: np.ndarray, reasons: np.ndarray) -> pd.DataFrame:
        """:meth:`rows` as pandas columns: categoricals, nullable boolean and Int16, UTC timestamps."""
        rows = self.rows(codes, reasons)

        def categorical(column: pa.DictionaryArray) -> pd.Categorical:
            indices = pc.fill_null(column.indices, -1).to_numpy(zero_copy_only=False)
            return pd.Categorical.from_codes(indices, categories=column.dictionary.to_pylist())

        def nullable(column: pa.Array, cls: type[pd.arrays.BooleanArray | pd.arrays.IntegerArray], fill: object) -> Any:
            values = pc.fill_null(column, fill).to_numpy(zero_copy_only=False)
            return cls(values, pc.is_null(column).to_numpy(zero_copy_only=False))

        columns = {
            **{name: categorical(rows[name]) for name in ("Status", "Area", "Init_isp", "Now_isp", "qxt_error")},
            "Is_MNP": nullable(rows["Is_MNP"], pd.arrays.BooleanArray, False),
            "qxt_mobile": pd.arrays.ArrowStringArray(rows["qxt_mobile"]),
            "qxt_code": nullable(rows["qxt_code"], pd.arrays.IntegerArray, 0),
            "qxt_checked_at": pd.DatetimeIndex(rows["qxt_checked_at"].to_pandas()).as_unit("ms"),
        }
        return pd.DataFrame({name: pd.Series(columns[name], index=index) for name in RESULT_COLUMNS})


#: The pandas dtypes of the result columns, as :meth:`Results.frame` (and so the accessor) returns them.
RESULT_DTYPES: dict[str, str] = {
    **{name: "category" for name in ("Status", "Area", "Init_isp", "Now_isp", "qxt_error")},
    "Is_MNP": "boolean", "qxt_mobile": "string[pyarrow]", "qxt_code": "Int16", "qxt_checked_at": "datetime64[ms, UTC]",
}  # fmt: skip

#: Codes of numbers that cannot be asked: rejected locally (-100) or by the vendor as malformed.
INVALID_CODES = (LOCAL_INVALID, 1, -2, -3)


#: The statuses the vendor's document lists (it may send others).
DOCUMENTED_STATUSES = ("正常", "空号", "停机")
#: Outcome names that are not a vendor Status; a Status spelled like one gets a distinct name.
RESERVED_OUTCOMES = frozenset({"invalid", "unknown", "unanswered", "unreadable", NO_STATUS})


def _distinct(status: str) -> str:
    """A vendor Status that collides with a reserved outcome name, made distinct: ``invalid~1a2b3c4d``."""
    return f"{status}~{hashlib.blake2b(status.encode(), digest_size=4).hexdigest()}"


def outcomes(code: pa.Array | pa.ChunkedArray, status: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each row's outcome, as ``--split`` files and ``df.qxt.split()`` group rows: its ``Status`` when
    answered (code 0; :data:`NO_STATUS` when the vendor left it empty), ``invalid``, ``unknown`` (-4:
    the vendor found nothing), ``unreadable`` (charged, but the answer could not be read), or
    ``unanswered`` (failed after retries, or not asked: run again)."""
    code = pc.fill_null(code.cast(pa.int16()), 32767)
    status = status.cast(pa.string())
    if taken := [s for s in pc.unique(status).to_pylist() if s in RESERVED_OUTCOMES]:  # a Status "invalid" is not ours
        at = pc.index_in(status, value_set=pa.array(taken, pa.string()))
        status = pc.if_else(pc.is_null(at), status, pc.take(pa.array([_distinct(s) for s in taken]), at))
    status = pc.fill_null(status, NO_STATUS)
    named = pc.if_else(pc.equal(code, CHARGED_UNREADABLE), "unreadable", "unanswered")
    named = pc.if_else(pc.equal(code, -4), "unknown", named)
    other = pc.if_else(pc.is_in(code, pa.array(INVALID_CODES, pa.int16())), "invalid", named)
    out = pc.if_else(pc.equal(code, 0), status, other)
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def build_columns(
    index: pd.Index,
    codes: np.ndarray,
    numbers: pa.Array,
    reasons: np.ndarray,
    answers: pa.Table,
    failures: Mapping[str, Failure],
    not_asked: str | None,
) -> pd.DataFrame:
    """The result columns for every row, as pandas columns (:meth:`Results.frame`).

    ``codes``, ``numbers`` and ``reasons`` are :func:`~qxt_pandas.numbers.number_codes`'s
    output. ``answers`` holds answers (the checkpoint's and this run's, one per number, in
    ``ANSWER_SCHEMA``); ``failures`` the numbers that failed this run; every other number was
    not asked, for the reason ``not_asked``.
    """
    return Results(numbers, answers, failures, not_asked).frame(index, codes, reasons)


def _ints(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column as int64 numbers, -1 where missing (booleans: 1 and 0)."""
    return np.asarray(pc.fill_null(column.cast(pa.int64()), -1).to_numpy(zero_copy_only=False))


def _encoded(column: pa.Array) -> pa.DictionaryArray:
    encoded = pc.dictionary_encode(column.cast(pa.string()))
    return encoded.combine_chunks() if isinstance(encoded, pa.ChunkedArray) else encoded


def _aligned_text(column: pa.ChunkedArray, found: pa.Array) -> pa.DictionaryArray:
    """``column`` aligned by ``found``, dictionary-encoded; the dictionary in order of first appearance.

    The order (and that only used values are in it) makes the categories the same for the same
    numbers, whatever order their answers arrived in.
    """
    encoded = pc.dictionary_encode(column)
    chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
    dictionary = chunks[0].dictionary if chunks else pa.array([], pa.string())
    taken = pa.chunked_array([c.indices for c in chunks], pa.int32()).combine_chunks().take(found)
    used = pc.unique(taken.drop_null()).to_numpy(zero_copy_only=False)
    remap = np.full(len(dictionary), -1, np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    indices = (
        remap[pc.fill_null(taken, 0).to_numpy(zero_copy_only=False)] if len(used) else np.zeros(len(taken), np.int32)
    )
    return pa.DictionaryArray.from_arrays(pa.array(indices, mask=pc.is_null(taken).to_numpy(zero_copy_only=False)),
                                          dictionary.take(pa.array(used, pa.int32())).cast(pa.string()))  # fmt: skip


def _codes_and_errors(
    numbers: pa.Array, found: pa.Array, answers: pa.Table, failures: Mapping[str, Failure], not_asked: str | None
) -> tuple[pa.Array, pa.Array]:
    """Each number's code and error text: the vendor's reason, its failure, or why it was not asked."""
    code = answers["code"].take(found).combine_chunks()
    reason = answers["reason"].take(found).combine_chunks()
    error = pc.if_else(
        pc.fill_null(pc.not_equal(code, 0), False),
        pc.coalesce(reason, pc.binary_join_element_wise("code ", pc.cast(code, pa.string()), "")),
        pa.scalar(None, pa.string()),
    )
    unanswered = pc.is_null(found)
    if pc.any(unanswered).as_py():
        # Few numbers (failures, and those a stopped run never asked): patched in Python.
        error_list = error.to_pylist()
        code_list = code.to_pylist()
        for i in np.flatnonzero(unanswered.to_numpy(zero_copy_only=False)):
            failure = failures.get(numbers[i].as_py())
            if failure is not None:
                error_list[i] = failure.text
                code_list[i] = failure.code
            else:
                error_list[i] = f"not asked: {not_asked or 'the run ended early'}"
        error = pa.array(error_list, pa.string())
        code = pa.array(code_list, pa.int16())
    return code, error
