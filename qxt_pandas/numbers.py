"""Normalization and local validation of messy mobile numbers, a whole column at once.

Every number sent costs money, so a value that cannot be a Chinese mobile is
caught here and never sent, and a valid one written any of the usual ways
(``139-7256-5391``, ``+86 139 7256 5391``, ``１３９７２５６５３９１``,
``13972565391.0``, ``1.3972565391E+10``) becomes the same 11 digits, so it
is paid for once. The work is done with pyarrow compute kernels over the
whole column; only the rare scientific-notation cells take a Python path.

Example::

    >>> normalize_mobiles(pd.Series(["+86 139-7256-5391", "1.39E+10", "无"]))
        qxt_mobile                     qxt_error
    0  13972565391                           NaN
    1         <NA>  digits lost in a spreadsheet
    2         <NA>                         empty
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["IOT_PREFIXES", "MOBILE_PREFIXES", "PLACEHOLDERS", "REASONS", "normalize_mobiles", "positions"]

# -- The prefix table ----------------------------------------------------------
# Three-digit prefixes allocated to Chinese mobile service, compiled 2026-11 from:
# MIIT 电信网编号计划 (2017) as tabulated by github.com/VincentSit/ChinaMobilePhoneNumberRegex
# (release 2019-01-07), plus MIIT's 2019-12-24 allocation of 190 (电信), 196 (联通),
# 197 (移动) and 192 (中国广电), and 162/172/193/195 allocated before that. Unallocated
# in 2022: 142, 143, 154, 161, 164, 194.
# Decisions: 145/147/149 (data-plan numbers, 11 digits, some with voice) are accepted,
# the vendor answers for them. 140/141/144/146/148 are IoT ranges whose numbers have
# 13 digits: rejected as "IoT number". 174 (satellite and MIIT emergency service)
# is rejected as not a mobile prefix.
MOBILE_PREFIXES = frozenset(
    "130 131 132 133 134 135 136 137 138 139 "
    "145 147 149 "
    "150 151 152 153 155 156 157 158 159 "
    "162 165 166 167 "
    "170 171 172 173 175 176 177 178 "
    "180 181 182 183 184 185 186 187 188 189 "
    "190 191 192 193 195 196 197 198 199".split()
)
IOT_PREFIXES = frozenset("140 141 144 146 148".split())

# -- Reasons -------------------------------------------------------------------
#: Every value ``qxt_error`` can take, in this order (the column's categories).
REASONS = (
    "empty",  # missing, blank, or a placeholder such as 无 / null / N/A / -
    "not a number",  # letters or other characters that are not decoration
    "masked",  # digits hidden: 139****5391
    "several numbers",  # 13972565391/13800138000: see docs/numbers.md for why not the first
    "digits lost in a spreadsheet",  # 1.39E+10: the digits are gone, never invented
    "foreign number",  # +1 ..., 00852 ...
    "landline",  # 0755-26012345, or 7-8 digits without an area code
    "service number",  # 10086, 95588, 400-xxx-xxxx
    "IoT number",
    "not a mobile prefix",  # 11 digits starting with 1, prefix not allocated to mobiles
    "wrong length",
)
_CODE = {reason: i for i, reason in enumerate(REASONS)}
_VALID = -1

#: Cell texts that mean "no number" (compared lower-cased, after trimming).
PLACEHOLDERS = frozenset(
    {"", "-", "--", "---", "/", "\\", ".", "0", "无", "空", "暂无", "没有", "未知", "不详", "null", "none",
     "nan", "nil", "n/a", "na", "#n/a", "undefined", "(null)"}
)  # fmt: skip
_PLACEHOLDERS = pa.array(sorted(PLACEHOLDERS), pa.large_string())

_FAST = r"^1[3-9]\d{9}$"  # already clean: most cells of most exports
_SAMPLE = 10_000  # values looked at to tell whether a column repeats itself
_FAST_86 = r"^\+?86[ -]?1[3-9]\d{9}$"  # the next most common: +86 in front (the last 11 characters are the number)
_FLOAT_TEXT = r"^(\d+)\.0*$"  # 13972565391.0
_SCIENTIFIC = r"^\+?\d(?:\.\d*)?[eE]\+?\d+$"  # 1.3972565391E+10
_FRACTION = r"^\d{7,}\.\d*[1-9]\d*$"  # 13972565391.5: a number, but not a whole one
_SEVERAL = r"\d{7,}\D+\d{7,}"  # two long digit runs apart: 13972565391/13800138000
_DECORATION = r"[\s\-‐‑‒–—―−.·•()\[\]{}（）【】_~/\\'\"\x{200b}\x{200c}\x{200d}\x{2060}\x{feff}]"
_MASKED = r"^\d{2,}[*xX#?]{2,}\d{2,}$"
_NOT_DIGIT = r"[^0-9]"


def normalize_mobiles(values: pd.Series) -> pd.DataFrame:
    """Normalize and validate mobile numbers; only ``qxt_mobile`` values are ever sent.

    Returns a frame with the input's index and two columns: ``qxt_mobile``
    (11 ASCII digits, or missing) and ``qxt_error`` (missing when valid,
    otherwise one of :data:`REASONS`). Takes any dtype: object with mixed
    str/int/float/None, ``str``/``string``, integers, floats with NaN,
    ``category``.

    Example::

        >>> normalize_mobiles(pd.Series(["１３９ ７２５６ ５３９１", "0755-26012345"])).qxt_error.tolist()
        [nan, 'landline']
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if isinstance(series.dtype, pd.CategoricalDtype):
        return _via_categories(series)
    text, preset = _as_text(series)
    mobile, codes = _normalize(text)
    if preset is not None:
        codes = np.where(preset != _VALID, preset, codes)
        mobile = pc.if_else(pa.array(preset != _VALID), pa.scalar(None, pa.large_string()), mobile)
    return _frame(mobile, codes, series.index)


def _frame(mobile: pa.Array, codes: np.ndarray, index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "qxt_mobile": pd.Series(pd.arrays.ArrowStringArray(mobile), index=index),
            "qxt_error": pd.Series(pd.Categorical.from_codes(codes, categories=pd.Index(REASONS)), index=index),
        },
        index=index,
    )


def _via_categories(series: pd.Series) -> pd.DataFrame:
    """A categorical column: normalize each category once, then spread by code."""
    lookup = normalize_mobiles(pd.Series(series.cat.categories))
    # One extra row at the end stands for a missing cell (code -1).
    mobiles = pa.concat_arrays([pa.array(lookup["qxt_mobile"].array).cast(pa.large_string()), _nulls(1)])
    reasons = np.append(lookup["qxt_error"].cat.codes.to_numpy(), _CODE["empty"]).astype(np.int8)
    codes = series.cat.codes.to_numpy()
    rows = np.where(codes < 0, len(lookup), codes)
    return _frame(mobiles.take(pa.array(rows)), reasons[rows], series.index)


def _nulls(n: int) -> pa.Array:
    return pa.nulls(n, pa.large_string())


# -- From any dtype to text ----------------------------------------------------


def _as_text(series: pd.Series) -> tuple[pa.Array, np.ndarray | None]:
    """The column as Arrow text, and codes for cells already judged by their type."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return _nulls(len(series)), np.full(len(series), _CODE["not a number"], np.int8)
    if pd.api.types.is_integer_dtype(dtype):
        return _from_integers(pa.array(series.array, from_pandas=True))
    if pd.api.types.is_float_dtype(dtype):
        return _from_floats(series.to_numpy(dtype="float64", na_value=np.nan))
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return _arrow_text(pa.array(series.array, from_pandas=True)), None
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind in ("string", "empty"):
        return _arrow_text(pa.array(series.to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)), None
    if kind == "integer":
        return _from_integers(pa.array(series.to_numpy(dtype=object), from_pandas=True))
    if kind in ("floating", "mixed-integer-float"):
        return _from_floats(series.to_numpy(dtype="float64", na_value=np.nan))
    # Mixed objects: each cell by its own type, so that a float reads the same here as
    # in a float column. A Python-level pass, but only over columns of mixed types.
    text = series.map(_cell_text, na_action="ignore").to_numpy(dtype=object)
    return pa.array(text, type=pa.large_string(), from_pandas=True), None


def _cell_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "not a number"
    if isinstance(value, (int, np.integer)):
        return str(value) if value >= 0 else "not a number"
    if isinstance(value, (float, np.floating)):
        if not (np.isfinite(value) and value >= 0 and value == np.floor(value)):
            return "not a number"
        return str(int(value))
    return str(value)


def _arrow_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.cast(pa.large_string())


def _from_integers(arr: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    negative = pc.fill_null(pc.less(arr, 0), False).to_numpy(zero_copy_only=False)
    preset = np.where(negative, _CODE["not a number"], _VALID).astype(np.int8)
    return arr.cast(pa.large_string()), preset


def _from_floats(values: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Floats as read_csv makes them: 13972565391.0 is the number; 1.5 or -3 is not."""
    missing = np.isnan(values)
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(values) & (np.floor(values) == values) & (values >= 0)
        huge = whole & (values >= 1e18)
    preset = np.full(len(values), _VALID, np.int8)
    preset[~missing & ~whole] = _CODE["not a number"]
    preset[huge] = _CODE["wrong length"]
    ints = np.where(whole & ~huge, values, 0).astype(np.int64)
    return pa.array(ints, mask=missing).cast(pa.large_string()), preset


# -- Text to numbers -----------------------------------------------------------


def _normalize(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(11-digit numbers or null, reason codes) for an Arrow text column."""
    fast = pc.fill_null(pc.match_substring_regex(text, _FAST), False).to_numpy(zero_copy_only=False)
    codes = np.full(len(text), _VALID, np.int8)
    digits = text
    rest = np.flatnonzero(~fast)
    if rest.size:
        others = text.take(pa.array(rest))
        prefixed = pc.fill_null(pc.match_substring_regex(others, _FAST_86), False).to_numpy(zero_copy_only=False)
        rest_digits, rest_codes = others, np.full(len(rest), _VALID, np.int8)
        if prefixed.any():
            rest_digits = pc.if_else(pa.array(prefixed), pc.utf8_slice_codeunits(others, -11), others)
        slow = np.flatnonzero(~prefixed)
        if slow.size:  # everything else: the full cleaning (full-width digits, decoration, floats ...)
            slow_digits, rest_codes[slow] = _clean_distinct(others.take(pa.array(slow)))
            rest_digits = pc.replace_with_mask(rest_digits, pa.array(~prefixed), slow_digits)
        digits = pc.replace_with_mask(text, pa.array(~fast), rest_digits)
        todo = rest_codes == _VALID
        rest_codes[todo] = _classify(rest_digits.filter(pa.array(todo)))
        codes[rest] = rest_codes
    if rest.size < len(text):
        codes[fast] = _classify_clean(text.filter(pa.array(fast)))
    mobile = pc.if_else(pa.array(codes == _VALID), digits, pa.scalar(None, pa.large_string()))
    return mobile, codes


def _classify_clean(digits: pa.Array) -> np.ndarray:
    """:func:`_classify` for values matching ``_FAST`` (11 digits from 13-19), by their prefix as a number:
    most cells of most exports, so no string kernel runs over them."""
    prefix = pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False) // 10**8
    return np.select(
        [np.isin(prefix, _PREFIX_INTS), np.isin(prefix, _IOT_INTS)],
        [_VALID, _CODE["IoT number"]],
        _CODE["not a mobile prefix"],
    ).astype(np.int8)


def _clean_distinct(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """:func:`_clean` of each distinct value once: what needs cleaning is mostly a few placeholders
    repeated ("无", "n/a", "0"), and the cleaning is the costly part (measured: 5 % of rows, half the time)."""
    encoded = pc.dictionary_encode(text)
    if len(encoded.dictionary) > len(text) // 2:
        return _clean(text)
    digits, codes = _clean(encoded.dictionary)
    rows = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    reasons = spread(codes, rows)
    reasons[rows < 0] = _CODE["empty"]  # a missing value, as _clean says of it
    return digits.take(encoded.indices), reasons


def _clean(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Strip decoration and country codes; codes for what cannot become digits."""

    def flag(arr: pa.Array) -> np.ndarray:
        return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False))

    s = pc.utf8_trim_whitespace(pc.utf8_normalize(text, "NFKC"))  # full-width -> ASCII, odd spaces -> " "
    s = pc.replace_substring_regex(s, _FLOAT_TEXT, r"\1")
    empty = flag(pc.is_null(s)) | flag(pc.is_in(pc.utf8_lower(s), value_set=_PLACEHOLDERS))
    fraction = flag(pc.match_substring_regex(s, _FRACTION))
    scientific = flag(pc.match_substring_regex(s, _SCIENTIFIC))
    lost = np.zeros(len(s), bool)
    if scientific.any():
        s, lost = _expand_scientific(s, scientific)
    several = flag(pc.match_substring_regex(s, _SEVERAL))
    d = pc.replace_substring_regex(s, _DECORATION, "")
    plus = flag(pc.starts_with(d, "+"))
    d = pc.replace_substring_regex(d, r"^\+", "")
    masked = flag(pc.match_substring_regex(d, _MASKED))
    junk = flag(pc.match_substring_regex(d, _NOT_DIGIT))
    length = pc.fill_null(pc.utf8_length(d), 0).to_numpy(zero_copy_only=False)
    starts86 = flag(pc.starts_with(d, "86"))
    starts0086 = flag(pc.starts_with(d, "0086"))
    foreign = (plus & ~starts86) | (~plus & flag(pc.starts_with(d, "00")) & ~starts0086)
    drop2 = (plus & starts86) | (~plus & starts86 & (length == 13))
    d = pc.if_else(pa.array(drop2), pc.utf8_slice_codeunits(d, 2), d)
    d = pc.if_else(pa.array(~plus & starts0086), pc.utf8_slice_codeunits(d, 4), d)
    codes = np.select(
        [empty, several, lost, masked, junk | fraction, foreign, length == 0],
        [_CODE[r] for r in ("empty", "several numbers", "digits lost in a spreadsheet", "masked", "not a number",
                            "foreign number", "empty")],
        _VALID,
    ).astype(np.int8)  # fmt: skip
    return d, codes


def _expand_scientific(s: pa.Array, scientific: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Write out scientific notation when every integer digit is there; flag it when not."""
    rows = np.flatnonzero(scientific)
    lost = np.zeros(len(s), bool)
    written = []
    for i, cell in zip(rows, s.take(pa.array(rows)).to_pylist(), strict=True):
        digits = _scientific_digits(cell)
        lost[i] = digits is None
        written.append(digits or "")
    return pc.replace_with_mask(s, pa.array(scientific), pa.array(written, pa.large_string())), lost


def _scientific_digits(cell: str) -> str | None:
    """``'1.3972565391E+10'`` -> ``'13972565391'``; ``'1.39E+10'`` -> ``None`` (digits lost)."""
    mantissa, exponent = cell.lstrip("+").lower().split("e")
    lead, _, fraction = mantissa.partition(".")
    places = int(exponent.lstrip("+"))
    if len(fraction) < places:
        return None  # fewer digits written than the number has: a spreadsheet rounded it
    if fraction[places:].strip("0"):
        return cell  # not a whole number: stays text, and fails as "not a number"
    return lead + fraction[:places]


def _classify(digits: pa.Array) -> np.ndarray:
    """Reason codes for clean digit strings (``_VALID`` for a mobile number)."""

    def flag(arr: pa.Array) -> np.ndarray:
        return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False))

    length = pc.fill_null(pc.utf8_length(digits), 0).to_numpy(zero_copy_only=False)
    prefix = pc.utf8_slice_codeunits(digits, 0, 3)
    mobile = flag(pc.is_in(prefix, value_set=_PREFIX_SET))
    iot = flag(pc.is_in(prefix, value_set=_IOT_SET))
    toll_free = flag(pc.is_in(prefix, value_set=_TOLL_FREE))
    starts1 = flag(pc.starts_with(digits, "1"))  # no Python strings: this runs over every distinct value
    return np.select(
        [
            (length == 11) & mobile,
            ((length == 11) | (length == 13)) & iot,
            flag(pc.starts_with(digits, "0")),
            ((length >= 3) & (length <= 6) & (starts1 | flag(pc.starts_with(digits, "9"))))
            | ((length == 10) & toll_free),
            (length == 7) | (length == 8),
            (length == 11) & starts1,
        ],
        [_VALID, _CODE["IoT number"], _CODE["landline"], _CODE["service number"], _CODE["landline"],
         _CODE["not a mobile prefix"]],
        _CODE["wrong length"],
    ).astype(np.int8)  # fmt: skip


_PREFIX_SET = pa.array(sorted(MOBILE_PREFIXES), pa.large_string())
_IOT_SET = pa.array(sorted(IOT_PREFIXES), pa.large_string())
_TOLL_FREE = pa.array(["400", "800"], pa.large_string())
_PREFIX_INTS = np.array(sorted(int(p) for p in MOBILE_PREFIXES))
_IOT_INTS = np.array(sorted(int(p) for p in IOT_PREFIXES))


def normalized(values: pd.Series) -> tuple[pa.Array, np.ndarray | None, np.ndarray]:
    """``(mobiles, rows, reasons)``: row ``i``'s number is ``mobiles[i]``, or with ``rows``, ``mobiles[rows[i]]``
    (-1: none), and its reason ``reasons[i]``.

    A text column that repeats its values is deduplicated before normalizing; one whose
    values are mostly distinct is not, since there the deduplication costs a quarter of the
    normalizing and saves nothing. A sample tells which: ``n`` values of ``N`` rows holding ``D``
    distinct values repeat about ``n²/2D`` times, so more than ``2n²/N`` repeats in the sample
    mean fewer than ``N/4`` distinct values, where deduplicating starts to pay (measured: 5M rows
    over 200k numbers, 0.44 s not 1.48; over 1M, 1.67 s not 1.48). 5M rows over 200k numbers show
    ~160 repeats in 10k, over 1M ~30, all distinct ~10: a sample's share of distinct values, ~98 %
    in all three, cannot tell them apart.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    text = not isinstance(series.dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(series)
    if text and len(series) > 2 * _SAMPLE:
        sample = series.iloc[:: len(series) // _SAMPLE]
        repeats = len(sample) - sample.nunique(dropna=False)
        text = repeats * len(series) > 2 * len(sample) ** 2
    if not text:
        norm = normalize_mobiles(series)
        return pa.array(norm["qxt_mobile"].array).cast(pa.string()), None, norm["qxt_error"].cat.codes.to_numpy()
    rows, distinct = pd.factorize(series, use_na_sentinel=True)
    norm = normalize_mobiles(pd.Series(distinct, dtype=series.dtype))
    mobiles = pa.array(norm["qxt_mobile"].array).cast(pa.string())
    if isinstance(mobiles, pa.ChunkedArray):
        mobiles = mobiles.combine_chunks()
    present = rows >= 0
    reasons = np.full(len(series), _CODE["empty"], np.int8)
    reasons[present] = norm["qxt_error"].cat.codes.to_numpy()[rows[present]]
    return mobiles, np.asarray(rows), reasons


def spread(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows[i]]`` for each row, -1 where ``rows[i]`` is -1 (also when ``values`` is empty)."""
    out = np.full(len(rows), -1, values.dtype)
    present = rows >= 0
    out[present] = values[rows[present]]
    return out


def positions(numbers: pa.Array | pa.ChunkedArray, among: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``pc.index_in(numbers, value_set=among)``; hashed as int64 when both hold only 11-digit numbers from 1
    (as normalized numbers are): 0.14 s where the strings take 0.34, a million in a million."""
    if isinstance(among, pa.ChunkedArray):
        among = among.combine_chunks()
    ints = [_as_ints(numbers), _as_ints(among)]
    if ints[0] is not None and ints[1] is not None:
        return pc.index_in(ints[0], value_set=ints[1])
    return pc.index_in(numbers, value_set=among)


def _as_ints(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray | None:
    """``text`` as int64 when every value is 11 digits from 1 (null stays null), else None."""
    if len(text) == 0 or not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        return None
    lengths = pc.min_max(pc.binary_length(text))
    if lengths["min"].as_py() != 11 or lengths["max"].as_py() != 11:
        return None
    try:
        ints = pc.cast(text, pa.int64())
    except pa.ArrowInvalid:
        return None
    bounds = pc.min_max(ints)  # 11 characters that parse to 1e10..2e10-1 are 11 digits from 1 (no sign, no 0)
    return ints if bounds["min"].as_py() >= 10**10 and bounds["max"].as_py() < 2 * 10**10 else None


def number_codes(values: pd.Series) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """Each row's number as a code: ``(codes, numbers, reasons)``.

    ``numbers`` are the distinct valid numbers in order of first appearance;
    ``codes[i]`` is row i's position in them (-1 when invalid); ``reasons[i]`` is
    the index of row i's reason in :data:`REASONS` (-1 when valid).
    """
    mobiles, rows, reasons = normalized(values)
    encoded = pc.dictionary_encode(mobiles)  # with rows: of the distinct values only, not one a row
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    if rows is not None:
        codes = spread(codes, rows)
    return codes, encoded.dictionary, reasons
