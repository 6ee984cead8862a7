"""Pass 1's answer to "which number is on each row", kept so that memory follows distinct numbers, not rows.

The command reads its input twice: pass 1 finds the distinct valid numbers and gives every row a code
into them; pass 2 writes each row's results by that code. The codes (4 bytes a row) and the reasons
of invalid rows (1 byte) go to two unlinked temporary files, written batch by batch and read back in
slices, so a 200M-row export holds in memory only its distinct numbers (12 bytes each: a valid number
is 11 digits from 1, an int64), their row counts, and one batch.

    codes = RowCodes(spill=spill_dir(Path("out/checked.parquet")))
    codes.add(*normalized(column))     # per batch of pass 1: its numbers, normalized
    codes.numbers()                    # the distinct numbers, in order of first appearance
    codes.rewind(); codes.read(n)      # pass 2: the next n rows' (codes, reasons)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..numbers import spread

__all__ = ["RowCodes", "spill_dir"]


class RowCodes:
    """Distinct numbers with stable codes (first appearance order), and each row's code and reason.

    With ``spill`` None only the distinct numbers and counts are kept (a plan needs no rows back).
    """

    def __init__(self, spill: Path | None = None) -> None:
        self._sorted = np.empty(0, np.int64)  # the distinct numbers, sorted, for lookups by batch
        self._order = np.empty(0, np.int32)  # the code of each of them
        self._counts = np.empty(0, np.int64)  # rows per code (with room to grow)
        self.rows = self.invalid = 0
        self._files: tuple[BinaryIO, BinaryIO] | None = None
        if spill is not None:  # unlinked at once (O_TMPFILE where it exists): a kill -9 leaves nothing behind
            self._files = (tempfile.TemporaryFile(dir=spill), tempfile.TemporaryFile(dir=spill))  # noqa: SIM115 (closed by close())

    def __len__(self) -> int:
        return len(self._sorted)

    def add(self, numbers: pa.Array | pa.ChunkedArray, rows: np.ndarray | None, reasons: np.ndarray) -> None:
        """One batch of pass 1 (as :func:`~qxt_pandas.numbers.normalized` gives it): its rows' normalized
        numbers (null where invalid), or with ``rows`` the batch's distinct ones with row ``i`` having
        ``numbers[rows[i]]`` (-1: none); and its rows' reasons."""
        values = self._codes(numbers)
        row_codes = values if rows is None else spread(values, rows)
        valid = row_codes >= 0
        if rows is None:
            np.add.at(self._counts, row_codes[valid], 1)  # (add.at: a number repeats within a batch)
        else:
            per_value = np.bincount(rows[rows >= 0], minlength=len(values))
            np.add.at(self._counts, values[values >= 0], per_value[values >= 0])  # spellings may share a number
        self.rows += len(row_codes)
        self.invalid += len(row_codes) - int(valid.sum())
        if self._files is not None:
            self._files[0].write(row_codes.tobytes())
            self._files[1].write(np.asarray(reasons, np.int8).tobytes())

    def _codes(self, numbers: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Each value's code (-1: null); numbers not seen before get the next codes, in order of first appearance."""
        valid = pc.is_valid(numbers).to_numpy(zero_copy_only=False)
        values = pc.cast(pc.drop_null(numbers), pa.int64()).to_numpy(zero_copy_only=False)
        found_labels, found_distinct = pd.factorize(values)  # in order of first appearance within the batch
        labels, distinct = np.asarray(found_labels), np.asarray(found_distinct, np.int64)
        ranked = np.argsort(distinct)  # sorted needles: a search 6x faster than in random order (cache)
        needles = distinct[ranked]
        where = np.searchsorted(self._sorted, needles)
        known = where < len(self._sorted)
        known[known] = self._sorted[where[known]] == needles[known]
        codes = np.empty(len(distinct), np.int32)
        codes[ranked[known]] = self._order[where[known]]
        new = np.zeros(len(distinct), bool)
        new[ranked[~known]] = True  # new numbers get the next codes in order of first appearance
        codes[new] = np.arange(len(self._sorted), len(self._sorted) + int(new.sum()), dtype=np.int32)
        if not known.all():
            self._sorted = np.insert(self._sorted, where[~known], needles[~known])
            self._order = np.insert(self._order, where[~known], codes[ranked[~known]])
            self._counts = _grown(self._counts, len(self._sorted))
        out = np.full(len(valid), -1, np.int32)
        out[valid] = codes[labels]
        return out

    @property
    def counts(self) -> np.ndarray:
        """Rows per code."""
        return self._counts[: len(self._sorted)]

    def numbers(self) -> pa.Array:
        """The distinct numbers as text, code ``i`` at position ``i``."""
        ordered = np.empty(len(self._sorted), np.int64)
        ordered[self._order] = self._sorted
        return pc.cast(pa.array(ordered), pa.string())

    def rewind(self) -> None:
        """Back to the first row, for pass 2."""
        for file in self._files or ():
            file.flush()
            file.seek(0)

    def read(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``rows`` rows' codes (-1: invalid) and reasons; fewer at the end."""
        if self._files is None:
            raise ValueError("these row codes were not kept (spill=None)")
        codes = np.frombuffer(self._files[0].read(4 * rows), np.int32)
        return codes, np.frombuffer(self._files[1].read(len(codes)), np.int8)

    def close(self) -> None:
        for file in self._files or ():
            file.close()
        self._files = None


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with room for ``size`` (doubling, so growing by batches costs O(size) in all)."""
    if size <= len(array):
        return array
    grown = np.zeros(max(size, 2 * len(array)), array.dtype)
    grown[: len(array)] = array
    return grown


def spill_dir(output: Path) -> Path:
    """Where row codes go: ``$QXT_SPILL_DIR`` (made if missing), else beside the output (a disk, where
    /tmp may be memory)."""
    where = Path(os.environ.get("QXT_SPILL_DIR") or output.parent)
    where.mkdir(parents=True, exist_ok=True)
    return where
