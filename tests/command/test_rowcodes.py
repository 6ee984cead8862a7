"""Pass 1's row codes (qxt_pandas/command/_rowcodes.py): the same codes as encoding the whole column at once,
whatever the batches, and kept on disk, not in memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from qxt_pandas.command._rowcodes import RowCodes
from qxt_pandas.numbers import normalized, number_codes

SPELLINGS = ["13800138000", "+86 13800138000", "139-1234-5678", "13912345678", "无", "", None, "0755-26012345",
             "15000000001", "8613800138000", "1380013800"]  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.sampled_from(SPELLINGS), max_size=300),
    sizes=st.lists(st.integers(1, 80), min_size=1, max_size=10),
)
def test_batches_give_the_codes_of_the_whole_column(values, sizes, tmp_path_factory):
    column = pd.Series(values, dtype="str")
    whole = pc.dictionary_encode(pa.array(normalize(column), pa.string()))
    expected = pc.fill_null(whole.indices, -1).to_numpy(zero_copy_only=False)
    codes = RowCodes(tmp_path_factory.mktemp("spill"))
    start, k = 0, 0
    while start < len(column):
        size = sizes[k % len(sizes)]
        codes.add(*normalized(column.iloc[start : start + size]))
        start, k = start + size, k + 1
    assert codes.numbers().to_pylist() == whole.dictionary.to_pylist()  # first appearance order
    codes.rewind()
    got, reasons = codes.read(len(column) + 5)
    assert got.tolist() == expected.tolist() and len(reasons) == len(column)
    assert ((reasons >= 0) == (got < 0)).all()  # a reason exactly where there is no number
    assert codes.counts.tolist() == np.bincount(expected[expected >= 0], minlength=len(whole.dictionary)).tolist()
    assert codes.rows == len(column) and codes.invalid == int((expected < 0).sum())
    codes.close()


def normalize(column: pd.Series) -> list[str | None]:
    from qxt_pandas import normalize_mobiles

    return [None if pd.isna(v) else v for v in normalize_mobiles(column)["qxt_mobile"]]


def test_a_repeating_batch_is_read_through_its_distinct_values(tmp_path):
    column = pd.Series(["13800138000", "+86 13800138000", "无"] * 20_000, dtype="str")
    numbers, rows, _ = normalized(column)
    assert rows is not None and len(numbers) == 3  # deduplicated: three spellings, not 60,000 rows
    codes = RowCodes(tmp_path)
    codes.add(*normalized(column))
    codes.rewind()
    got, _ = codes.read(len(column))
    assert got[:3].tolist() == [0, 0, -1] and codes.counts.tolist() == [40_000]


def test_row_codes_leave_no_file_and_no_memory_per_row(tmp_path):
    codes = RowCodes(tmp_path)
    for _ in range(20):
        codes.add(*normalized(pd.Series([f"139{i:08d}" for i in range(1000)] * 50, dtype="str")))
    assert list(tmp_path.iterdir()) == []  # unlinked at once: a kill -9 leaves nothing behind
    held = codes._sorted.nbytes + codes._order.nbytes + codes._counts.nbytes
    assert codes.rows == 1_000_000 and len(codes) == 1000 and held < 100_000  # 1M rows: ~16 kB in memory
    codes.close()


def test_a_batch_with_no_number_at_all_is_coded_as_invalid(tmp_path):
    empty = pd.Series([None, "", "无"] * 10_000, dtype="str")  # deduplicated: no number among its values
    codes = RowCodes(tmp_path)
    codes.add(*normalized(empty))
    codes.rewind()
    assert (codes.read(len(empty))[0] == -1).all() and codes.invalid == len(empty) and len(codes) == 0
    assert (number_codes(empty)[0] == -1).all()
