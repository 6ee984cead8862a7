"""normalize_mobiles: every messy form, every dtype, and properties that must always hold."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from rowwise_reference import normalize_one

from qxt_pandas import normalize_mobiles
from qxt_pandas.numbers import IOT_PREFIXES, MOBILE_PREFIXES, REASONS

M = "13972565391"

CASES = [
    # clean, decorated, spaced
    (M, M), ("139-7256-5391", M), ("139 7256 5391", M), ("(139)72565391", M), ("139.7256.5391", M),
    ("  13972565391\t", M), ("\u00a013972565391\u3000", M), ("139\u20097256\u200b5391", M), ("139—7256—5391", M),
    # full-width
    ("１３９７２５６５３９１", M), ("＋８６ １３９７２５６５３９１", M), ("（１３９）７２５６５３９１", M),
    # country codes
    ("+86 139 7256 5391", M), ("+8613972565391", M), ("(+86)139-7256-5391", M), ("0086-13972565391", M),
    ("008613972565391", M), ("8613972565391", M), ("86 139 7256 5391", M),
    ("+1 415 555 0100", "foreign number"), ("+852 9123 4567", "foreign number"), ("00852 9123 4567", "foreign number"),
    # spreadsheet damage
    ("13972565391.0", M), ("13972565391.00", M), ("1.3972565391E+10", M), ("1.3972565391e10", M),
    ("1.39725653910E+10", M), ("1.39E+10", "digits lost in a spreadsheet"),
    ("1.397256539E+10", "digits lost in a spreadsheet"), ("13972565391.5", "not a number"),
    # junk and placeholders
    ("", "empty"), ("   ", "empty"), ("无", "empty"), ("null", "empty"), ("NULL", "empty"), ("N/A", "empty"),
    ("-", "empty"), ("暂无", "empty"), ("()", "empty"), ("abc", "not a number"), ("1397256539l", "not a number"),
    ("139****5391", "masked"), ("139xxxx5391", "masked"), ("＊＊＊", "not a number"),
    # not mobiles
    ("0755-26012345", "landline"), ("(0755)26012345", "landline"), ("010-12345678", "landline"),
    ("26012345", "landline"), ("10086", "service number"), ("95588", "service number"), ("110", "service number"),
    ("400-810-8888", "service number"), ("1397256539", "wrong length"), ("139725653911", "wrong length"),
    ("12345678901", "not a mobile prefix"), ("15412345678", "not a mobile prefix"),
    ("17412345678", "not a mobile prefix"), ("14812345678", "IoT number"), ("1440123456789", "IoT number"),
    # two numbers in a cell
    ("13972565391/13800138000", "several numbers"), ("13972565391,13800138000", "several numbers"),
    ("13972565391、13800138000", "several numbers"), ("13972565391 13800138000", "several numbers"),
    ("13972565391 或 13800138000", "several numbers"),
    # carriers the table must know
    ("19212345678", "19212345678"), ("17012345678", "17012345678"), ("16212345678", "16212345678"),
    ("14512345678", "14512345678"), ("19012345678", "19012345678"), ("19712345678", "19712345678"),
]  # fmt: skip


def one(value) -> tuple:
    row = normalize_mobiles(pd.Series([value], dtype=object)).iloc[0]
    return (None if pd.isna(row.qxt_mobile) else row.qxt_mobile, None if pd.isna(row.qxt_error) else row.qxt_error)


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_forms(raw, expected):
    want = (expected, None) if expected.isdigit() else (None, expected)
    assert one(raw) == want
    assert normalize_one(raw) == want  # the reference reads the rules the same way


def test_a_rounded_number_is_rejected_never_invented():
    assert one("1.39E+10") == (None, "digits lost in a spreadsheet")
    out = normalize_mobiles(pd.Series(["1.39E+10", "1.39e10", "1.390E+10"]))
    assert out.qxt_mobile.isna().all() and (out.qxt_error == "digits lost in a spreadsheet").all()


DTYPES = {
    "object mixed": (pd.Series([M, 13972565391, 13972565391.0, None, np.nan, "无", 5], dtype=object),
                     [M, M, M, None, None, None, None]),
    "str": (pd.Series([M, "139 7256 5391", None], dtype="str"), [M, M, None]),
    "string[pyarrow]": (pd.Series([M, "+86 13972565391", None], dtype="string[pyarrow]"), [M, M, None]),
    "string[python]": (pd.Series([M, None], dtype="string[python]"), [M, None]),
    "arrow string": (pd.Series([M, None], dtype=pd.ArrowDtype(pa.string())), [M, None]),
    "int64": (pd.Series([13972565391, 8613972565391, 10086, -13972565391]), [M, M, None, None]),
    "Int64": (pd.Series([13972565391, None, 10086], dtype="Int64"), [M, None, None]),
    "uint64": (pd.Series([13972565391], dtype="uint64"), [M]),
    "float64 with NaN": (pd.Series([13972565391.0, np.nan, 1.5, -1.0, 1e20, np.inf]), [M] + [None] * 5),
    "category": (pd.Series([M, "139-7256-5391", None, "x", M], dtype="category"), [M, M, None, None, M]),
    "int category": (pd.Series([13972565391, 10086], dtype="category"), [M, None]),
    "bool": (pd.Series([True, False]), [None, None]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(DTYPES))
def test_every_input_dtype(name):
    values, expected = DTYPES[name]
    out = normalize_mobiles(values)
    assert out.qxt_mobile.tolist() == [pd.NA if e is None else e for e in expected]
    assert list(out.columns) == ["qxt_mobile", "qxt_error"]
    assert (out.qxt_mobile.isna() != out.qxt_error.isna()).all()


def test_reasons_by_dtype():
    assert normalize_mobiles(pd.Series([np.nan, 1.5])).qxt_error.tolist() == ["empty", "not a number"]
    assert normalize_mobiles(pd.Series([None, 10086], dtype="Int64")).qxt_error.tolist() == ["empty", "service number"]
    assert normalize_mobiles(pd.Series([None, "x"], dtype="category")).qxt_error.tolist() == ["empty", "not a number"]


def test_index_and_order_are_kept_and_the_input_is_untouched():
    values = pd.Series(["b", M, "139-7256-5391", None], index=["z", "a", "a", 7], dtype=object)
    before = values.copy()
    out = normalize_mobiles(values)
    assert out.index.equals(values.index)
    assert out.qxt_mobile.tolist() == [pd.NA, M, M, pd.NA]
    pd.testing.assert_series_equal(values, before)


def test_output_dtypes_and_categories():
    out = normalize_mobiles(pd.Series([M, "x"]))
    assert isinstance(out.qxt_mobile.dtype, pd.StringDtype)
    assert list(out.qxt_error.cat.categories) == list(REASONS)


def test_empty_and_plain_list_inputs():
    assert normalize_mobiles(pd.Series([], dtype=object)).shape == (0, 2)
    assert normalize_mobiles(pd.Series([], dtype="str")).shape == (0, 2)
    assert normalize_mobiles([M, "x"]).qxt_mobile.tolist() == [M, pd.NA]  # type: ignore[arg-type]


def test_the_prefix_table():
    assert {"130", "139", "145", "147", "149", "162", "165", "167", "170", "171", "172", "192", "190", "196",
            "197", "199"} <= MOBILE_PREFIXES  # fmt: skip
    assert not ({"140", "141", "142", "143", "144", "146", "148", "154", "161", "164", "174", "194"} & MOBILE_PREFIXES)
    assert {"140", "141", "144", "146", "148"} == IOT_PREFIXES
    assert all(re.fullmatch(r"1[3-9]\d", p) for p in MOBILE_PREFIXES)


# -- Properties ------------------------------------------------------------------

valid_numbers = st.builds(lambda p, rest: p + rest, st.sampled_from(sorted(MOBILE_PREFIXES)),
                          st.from_regex(r"\A[0-9]{8}\Z"))  # fmt: skip

FULL = str.maketrans("0123456789+()", "０１２３４５６７８９＋（）")
SPACES = [" ", "\t", "\u00a0", "\u3000", "\u2009", "\u200b", "-", ".", "—"]


@st.composite
def formatted(draw, number: str) -> object:
    """One way a person or a spreadsheet might have written ``number``."""
    style = draw(
        st.sampled_from(["groups", "country", "fullwidth", "float", "scientific", "int", "float value", "pad"])
    )
    if style == "groups":
        sep = draw(st.sampled_from(SPACES))
        return f"{number[:3]}{sep}{number[3:7]}{sep}{number[7:]}"
    if style == "country":
        cc = draw(st.sampled_from(["+86", "+86 ", "0086", "0086-", "86", "(+86)", "+86-"]))
        return cc + number
    if style == "fullwidth":
        return draw(st.sampled_from(["", "+86 "])).translate(FULL) + number.translate(FULL)
    if style == "float":
        return number + "." + "0" * draw(st.integers(1, 3))
    if style == "scientific":
        return (
            f"{number[0]}.{number[1:]}{'0' * draw(st.integers(0, 2))}{draw(st.sampled_from(['E+10', 'e+10', 'E10']))}"
        )
    if style == "int":
        return int(number)
    if style == "float value":
        return float(number)
    return draw(st.sampled_from(SPACES[:4])) + number + draw(st.sampled_from(SPACES[:4]))


@given(valid_numbers.flatmap(lambda n: st.tuples(st.just(n), formatted(n))))
def test_every_formatting_of_a_valid_number_gives_that_number(case):
    number, written = case
    assert one(written) == (number, None)


MESSY = st.text(
    alphabet=st.sampled_from(list("0123456789") * 4 + list("+-. ()/*xXeE,、无null\t\u00a0\u3000１３９＋８６#")),
    max_size=24,
)
ANY_CELL = st.one_of(MESSY, valid_numbers, st.none(), st.integers(-10, 10**14), st.floats(allow_nan=True))


@given(st.lists(ANY_CELL, max_size=30))
@example([M, "1.39E+10", None, 13972565391.0, "+86 139 7256 5391"])
def test_output_is_11_ascii_digits_or_a_reason_and_matches_the_reference(cells):
    out = normalize_mobiles(pd.Series(cells, dtype=object))
    assert len(out) == len(cells)
    for (mobile, reason), cell in zip(out.itertuples(index=False), cells, strict=True):
        got = (None if pd.isna(mobile) else mobile, None if pd.isna(reason) else reason)
        assert (got[0] is None) != (got[1] is None)
        if got[0] is not None:
            assert re.fullmatch(r"1[3-9][0-9]{9}", got[0], re.ASCII)
        assert got == normalize_one(cell), cell


@given(st.lists(ANY_CELL, max_size=30))
def test_normalizing_is_idempotent(cells):
    once = normalize_mobiles(pd.Series(cells, dtype=object))
    twice = normalize_mobiles(once.qxt_mobile)
    pd.testing.assert_series_equal(twice.qxt_mobile, once.qxt_mobile)
    assert (twice.qxt_error.isna() == once.qxt_mobile.notna()).all()


@given(st.lists(ANY_CELL, max_size=20))
def test_categorical_and_object_agree(cells):
    as_text = [None if c is None or (isinstance(c, float) and c != c) else str(c) for c in cells]
    plain = normalize_mobiles(pd.Series(as_text, dtype=object))
    categorical = normalize_mobiles(pd.Series(as_text, dtype="category"))
    pd.testing.assert_frame_equal(plain, categorical)
