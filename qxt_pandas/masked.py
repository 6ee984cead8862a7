"""Columns with every mobile number in them masked, by value: ``--mask-output`` and ``mask_output=True``.

A cell whose value is a mobile number in any spelling :func:`~qxt_pandas.normalize_mobiles` takes
(``+86 139-7256-5391``, full-width digits, ``13972565391.0``, ``1.3972565391E+10``, an integer) is
written as ``139****5391``. In any other cell, each number written inside the text (``139****5391 /
13800138000``, ``电话 +86 138 0013 8000``) is masked where it stands. The column becomes text.

Example::

    masked_column(pa.array(["+86 139 7256 5391", "a: 13800138000, b: 13900000000"]))
    # ["139****5391", "a: 138****8000, b: 139****0000"]
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .numbers import normalize_mobiles
from .results import text_series

__all__ = ["masked_column", "masked_series"]

_DIGIT = "[0-9０-９]"
_SEP = "[\\t \\x{a0}\\x{3000}\\x{2009}\\x{200b}\\-.—－．]?"  # between digits, as people and spreadsheets write
#: A number inside text: optional country code, 1, ten more digits with optional separators; not part of a longer
#: run of digits (RE2 has no look-around: the neighbours are matched and put back; rewrites reach only \\9).
_IN_TEXT = (
    f"(^|[^0-9０-９])((?:(?:\\+|＋|00|００)?[8８][6６]{_SEP})?)"
    f"([1１]{_SEP}{_DIGIT}{_SEP}{_DIGIT})(?:{_SEP}{_DIGIT}){{4}}"
    f"({_SEP}{_DIGIT}{_SEP}{_DIGIT}{_SEP}{_DIGIT}{_SEP}{_DIGIT})([^0-9０-９]|$)"
)


def masked_column(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``values`` (an Arrow column of any type) as text, every mobile number in them masked; nulls stay null."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    text = values.cast(pa.string()) if not pa.types.is_string(values.type) else values
    return _masked(normalize_mobiles(text_series(values))["qxt_mobile"], text)


def masked_series(values: pd.Series) -> pd.Series:
    """``values`` (a pandas column of any dtype, mixed objects included) as text, every number in it masked."""
    text = pa.array([None if pd.isna(v) else str(v) for v in values], pa.string()) if values.dtype == object else (
        pa.array(values.astype("string"), pa.string(), from_pandas=True))  # fmt: skip
    masked = _masked(normalize_mobiles(values)["qxt_mobile"], text)
    return pd.Series(pd.arrays.ArrowStringArray(masked.cast(pa.large_string())), index=values.index,
                     name=values.name)  # fmt: skip


def _masked(numbers: pd.Series, text: pa.Array) -> pa.Array:
    """A cell that is a number: that number masked; any other: the numbers inside its ``text`` masked."""
    valid = pa.array(numbers.astype(object).where(numbers.notna(), None).tolist(), pa.string())
    whole = pc.binary_join_element_wise(pc.utf8_slice_codeunits(valid, 0, 3), pc.utf8_slice_codeunits(valid, 7, 11),
                                        "****")  # fmt: skip
    inside = text
    for _ in range(2):  # twice: two numbers with one character between them share that neighbour
        inside = pc.replace_substring_regex(inside, _IN_TEXT, "\\1\\2\\3****\\4\\5")
    return pc.if_else(pc.is_valid(whole), whole, inside)
