"""Reading exports in batches: CSV/TSV, Parquet, Excel, checked before anything is paid for.

Chinese CRM exports come as UTF-8, UTF-8 with a BOM, or GBK/GB18030. The
whole file is checked before anything is paid for: every byte must decode in
one encoding (a single GBK line in a UTF-8 file is an error naming the line,
never a silent re-decoding of every name), and the header must name each
column once. Every CSV column is read as text: a reader that turns
``13972565391`` into a float is how digits get lost. (Writing results is
:mod:`~qxt_pandas.command.outputs`'s job.)

Example::

    source = open_source("crm.csv")
    for table in source.tables(["mobile"]):
        ...
"""

from __future__ import annotations

import codecs
import mmap
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ..errors import ConfigurationError
from ..numbers import normalize_mobiles
from ..results import text_series

__all__ = ["InputError", "Source", "check_encoding", "guess_column", "numbers_in", "open_source"]

# The CSV reader reads ahead several blocks at once, so its block size sets the memory
# a pass needs (measured on 5M rows: 8 MiB blocks 298 MiB RSS, 1 MiB blocks 204 MiB).
# Small blocks are then grouped into tables of GROUP_ROWS for the per-batch work.
BLOCK_BYTES = 1 << 20
GROUP_ROWS = 200000
_CHECK_BYTES = 1 << 24  # encoding check: 16 MiB at a time, cut at a line end


class InputError(ConfigurationError):
    """The input file cannot be read as asked (format, encoding, column)."""


def _chunks(path: Path) -> Iterator[tuple[memoryview, int]]:
    """The file in pieces that end at a line end, each with its offset in the file (views, not copies: the
    whole-file check reads every byte of a 200 MB export, so a copy or a count per piece shows)."""
    offset, rest = 0, b""
    with open(path, "rb") as f:
        while block := f.read(_CHECK_BYTES):
            if rest:
                block = rest + block
            cut = block.rfind(b"\n") + 1  # b"\n" is never inside a UTF-8 or GB18030 character
            if cut == 0:
                rest = block
                continue
            yield memoryview(block)[:cut], offset
            offset += cut
            rest = block[cut:]
    if rest:
        yield memoryview(rest), offset


def _lines_before(path: Path, offset: int) -> int:
    """How many lines of ``path`` end before byte ``offset`` (for a message: only on the error path)."""
    lines = 0
    with open(path, "rb") as f:
        while offset > 0 and (block := f.read(min(_CHECK_BYTES, offset))):
            lines += block.count(b"\n")
            offset -= len(block)
    return lines


def _utf8_valid(chunk: bytes | memoryview) -> bool:
    """Whether ``chunk`` is UTF-8, checked in Arrow's C++ (about 4 GB/s; Python's decode is 10x slower)."""
    offsets = pa.py_buffer(np.array([0, len(chunk)], np.int64))
    text = pa.LargeBinaryArray.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(chunk)])
    try:
        text.view(pa.large_string()).validate(full=True)
        return True
    except pa.ArrowInvalid:
        return False


def _first_bad_line(path: Path, encoding: str, *, count: bool = False) -> tuple[int, int] | None:
    """The first line that does not decode as ``encoding`` (None: all do), and with ``count`` how many don't."""
    first, bad = None, 0
    for view, offset in _chunks(path):
        if encoding in ("utf-8", "utf-8-sig") and _utf8_valid(view):
            continue
        chunk = bytes(view)
        try:
            chunk.decode(encoding)
            continue
        except UnicodeDecodeError as exc:
            first = first or _lines_before(path, offset) + chunk.count(b"\n", 0, exc.start) + 1
        if not count:
            break
        bad += sum(1 for line in chunk.splitlines() if not _decodes(line, encoding))
    return None if first is None else (first, bad)


def _decodes(line: bytes, encoding: str) -> bool:
    try:
        line.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def _mostly_utf8(path: Path) -> bool:
    """Whether the non-ASCII text that decodes as UTF-8 outweighs the bytes that do not.

    GBK text is seldom valid UTF-8 by accident (its trail bytes rarely continue a UTF-8
    sequence), so in a GBK export invalid sequences dominate, and in a UTF-8 export with a
    stray GBK line the valid characters do.
    """
    good = bad = 0
    for chunk, _ in _chunks(path):
        text = bytes(chunk).decode("utf-8", errors="replace")
        lost = text.count("\ufffd")
        bad += lost
        good += len(text) - len(text.encode("ascii", errors="ignore")) - lost
    return good > bad


def _check_utf16(path: Path, encoding: str) -> str:
    """A UTF-16 file, decoded whole (a line-by-line check would split its two-byte units)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 1
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                lines += decoder.decode(block).count("\n")
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise InputError(f"{path}: about line {lines:,} is not valid {encoding}. Fix it or name the encoding "
                         "with --encoding. Nothing was asked or paid for.") from None  # fmt: skip
    return "utf-16"


def _looks_cjk(start: bytes) -> bool:
    """Whether bytes read as Latin-1 would be mostly accented letters in pairs: GBK's two-byte characters."""
    high = sum(1 for b in start if b >= 0x80)
    pairs = len(re.findall(rb"[\x81-\xfe][\x40-\xfe]", start))
    return high >= 8 and pairs * 2 >= 0.8 * high


def check_encoding(path: Path, encoding: str | None = None) -> str:
    """The encoding of the whole file (``utf-8``, ``utf-8-sig`` or ``gb18030`` when not given), every line checked."""
    with open(path, "rb") as f:
        start = f.read(4096)
    if encoding is None:
        encoding = "utf-8-sig" if start.startswith(codecs.BOM_UTF8) else None
        if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            encoding = "utf-16"  # Excel's "Unicode text"
    if encoding is not None and codecs.lookup(encoding).name.startswith("utf-16"):
        return _check_utf16(path, encoding)
    if encoding is None:
        if _first_bad_line(path, "utf-8") is None:
            return "utf-8"
        if _mostly_utf8(path):
            line, bad = _first_bad_line(path, "utf-8", count=True) or (0, 0)
            raise InputError(
                f"{path} is UTF-8 except for {bad:,} line(s) in another encoding (GBK?), the first at line {line:,}. "
                "Read as either encoding, some names would be garbled: re-save those lines as UTF-8, or pass "
                "--encoding to read the whole file one way. Nothing was asked or paid for."
            )
        encoding = "gb18030"  # covers GBK and GB2312
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InputError(f"unknown encoding {encoding!r}; use utf-8, utf-8-sig, gbk or gb18030.") from None
    if codecs.lookup(encoding).name in ("latin-1", "iso8859-1", "cp1252") and _looks_cjk(start):
        warnings.warn(f"{path} read as {encoding} shows runs of accented Latin letters where Chinese text usually "
                      "is (GBK read as Latin-1?): names will be garbled. Omit --encoding to detect it, or pass "
                      "--encoding gbk.", UserWarning, stacklevel=2)  # fmt: skip
    if _first_bad_line(path, encoding) is not None:
        found = _first_bad_line(path, encoding, count=True) or (0, 1)
        raise InputError(
            f"{path}: line {found[0]:,} (and {found[1] - 1:,} more) is not valid {encoding}; the file is neither "
            "UTF-8 nor GBK/GB18030 throughout. Fix those lines or name the encoding with --encoding. "
            "Nothing was asked or paid for."
        )
    return encoding


@dataclass
class Source:
    """An input file that can be read in batches, more than once, and tell whether it changed."""

    path: Path
    kind: str  # "csv", "parquet", "excel"
    schema: pa.Schema  # of the tables it yields
    encoding: str | None = None
    delimiter: str = ","
    sheet: str | None = None
    sheets: tuple[str, ...] = ()  # a workbook's sheets, in order
    note: str = ""  # what the user should know about how it was read (which sheet)
    block_bytes: int = BLOCK_BYTES  # Arrow's CSV block: at least twice the longest line (a 5 MiB row reads)

    def __post_init__(self) -> None:
        twice = sorted(name for name, n in Counter(self.columns).items() if n > 1)
        if twice:
            raise InputError(f"{self.path} names column(s) {', '.join(map(repr, twice))} more than once; rename "
                             "them so each column has its own name. Nothing was asked or paid for.")  # fmt: skip
        self._stamp = self.stamp()

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def stamp(self) -> tuple[int, int]:
        info = self.path.stat()
        return info.st_size, info.st_mtime_ns

    def unchanged(self) -> bool:
        """False when the file was rewritten since it was opened (an export still being written)."""
        try:
            return self.stamp() == self._stamp
        except OSError:
            return False

    def tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        """Tables of about ``GROUP_ROWS`` rows of ``columns`` (default all), in file order."""
        group: list[pa.RecordBatch] = []
        rows = 0
        for batch in self._batches(columns):
            group.append(batch)
            rows += batch.num_rows
            if rows >= GROUP_ROWS:
                yield pa.Table.from_batches(group)
                group, rows = [], 0
        if group:
            yield pa.Table.from_batches(group)

    def _batches(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        if self.kind == "parquet":
            yield from pq.ParquetFile(self.path).iter_batches(batch_size=GROUP_ROWS, columns=columns)
        elif self.kind == "excel":
            yield from (
                _excel_table(self.path, self.sheet, self.schema).select(columns or self.columns).to_batches(GROUP_ROWS)
            )
        else:
            yield from self._csv(columns)

    def _csv(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        bad: list[str] = []

        def ragged(row: Any) -> str:
            bad.append(f"has {row.actual_columns} fields where the header has {row.expected_columns}")
            bad.append(row.text or "")
            return "error"

        try:
            yield from self._csv_reader(columns, ragged)
        except pa.ArrowInvalid as exc:
            if not bad:
                raise InputError(f"{self.path} cannot be read as CSV: {exc}. Nothing was asked or paid for.") from None
            line = _line_of(self.path, bad[1], self.encoding or "utf-8")
            where = f"line {line:,}" if line else "a row"
            raise InputError(f"{self.path}: {where} {bad[0]}. Quote values that hold the delimiter, or fix the "
                             "row. Nothing was asked or paid for.") from None  # fmt: skip

    def _csv_reader(self, columns: list[str] | None, ragged: Any) -> Any:
        encoding = "utf8" if self.encoding in ("utf-8", "utf-8-sig") else self.encoding
        reader = pa_csv.open_csv(
            self.path,
            # our names, the file's header row skipped as a parsed row: a BOM or two, or a newline in a quoted
            # name, never reach Arrow's own naming
            read_options=pa_csv.ReadOptions(
                encoding=encoding, block_size=self.block_bytes, column_names=self.columns, skip_rows_after_names=1
            ),
            parse_options=pa_csv.ParseOptions(
                delimiter=self.delimiter, newlines_in_values=True, invalid_row_handler=ragged
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={c: pa.string() for c in self.columns},
                include_columns=columns,
                strings_can_be_null=False,
                check_utf8=False,  # open_source checked every byte of the file, in its encoding
                quoted_strings_can_be_null=False,
            ),
        )
        return reader


def _line_of(path: Path, text: str, encoding: str) -> int | None:
    """The line of ``path`` where the row ``text`` starts (None if it cannot be found)."""
    try:
        needle = text.encode("utf-8" if encoding.startswith("utf-8") else encoding)
        data = path.read_bytes()
    except (OSError, LookupError, UnicodeError):
        return None
    at = data.find(needle)
    return None if at < 0 or not needle else data.count(b"\n", 0, at) + 1


def _block_bytes(path: Path) -> int:
    """Arrow's CSV block size for ``path``: at least twice its longest line (Arrow cannot read a row that
    straddles two blocks); the default unless a line is longer than half of it."""
    block = BLOCK_BYTES
    if _lines_within(path, block // 2):
        return block
    longest = _longest_line(path)
    while block < 2 * longest and block < 1 << 30:
        block *= 2
    return block


def _lines_within(path: Path, limit: int) -> bool:
    """True when no line of ``path`` is longer than ``limit`` bytes (False: maybe one is). A newline within
    every ``limit/2`` bytes from every multiple of ``limit/2`` rules such a line out; looking for it touches
    a page in every ``limit/2``, not every byte (a 200 MB export: 800 pages)."""
    step = max(1, limit // 2)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return True
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return all(data.find(b"\n", at, at + step) >= 0 for at in range(0, size, step) if at + step <= size)


def _longest_line(path: Path) -> int:
    """The longest line of ``path`` in bytes, found a block at a time with numpy (GB/s)."""
    longest, carry = 0, 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
            if len(ends) == 0:
                carry += len(block)
                continue
            longest = max(longest, carry + int(ends[0]) + 1, int(np.diff(ends).max(initial=0)))
            carry = len(block) - int(ends[-1]) - 1
    return max(longest, carry)


def open_source(path: str | os.PathLike[str], *, encoding: str | None = None, sheet: str | None = None) -> Source:
    """Inspect ``path`` (by extension: .csv/.tsv/.txt, .parquet, .xlsx); a text file is checked whole."""
    path = Path(path)
    try:
        path.stat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file.") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, no permission
        raise InputError(f"{path} cannot be read: {getattr(exc, 'strerror', None) or exc}.") from None
    if path.is_dir():
        raise InputError(f"{path} is a directory; pass the export file itself.")
    suffix = path.suffix.lower()
    if sheet is not None and suffix not in (".xlsx", ".xlsm"):
        raise InputError(f"--sheet applies to .xlsx inputs only; {path.name} is not one.")
    try:
        if suffix in (".parquet", ".pq"):
            return Source(path, "parquet", pq.ParquetFile(path).schema_arrow)
        if suffix in (".xlsx", ".xlsm"):
            return _excel_source(path, sheet)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path} cannot be read: {exc}") from None
    encoding = check_encoding(path, encoding)
    with open(path, encoding=encoding, newline="") as f:
        header = f.readline().lstrip("\ufeff")
        blank = not header.strip() and f.read(1 << 16).strip() != ""
    delimiter = "\t" if suffix in (".tsv", ".tab") or header.count("\t") > header.count(",") else ","
    if blank:
        raise InputError(f"{path} starts with a blank line: the header must be its first line. Remove the blank "
                         "line(s) above the header.")  # fmt: skip
    if not header.strip():
        raise InputError(f"{path} is empty: a CSV export needs a header line.")
    block = _block_bytes(path)
    try:  # the header as Arrow parses it (a quoted name may hold a newline), from the first block only
        names = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(encoding="utf8" if encoding.startswith("utf-8")
                                                                      else encoding, block_size=block),
                                parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                                                  invalid_row_handler=lambda row: "skip"),
                                convert_options=pa_csv.ConvertOptions(column_types={})).schema.names  # fmt: skip
    except pa.ArrowException as exc:
        raise InputError(f"{path}: the header cannot be read ({exc}). Nothing was asked or paid for.") from None
    names = [name.lstrip("\ufeff").strip() if isinstance(name, str) else name for name in names]
    return Source(path, "csv", _text_schema(names), encoding, delimiter, block_bytes=block)


def _text_schema(names: list[str]) -> pa.Schema:
    return pa.schema([(str(name), pa.string()) for name in names])


def _excel_source(path: Path, sheet: str | None) -> Source:
    try:
        import pandas as pd

        sheets = [str(name) for name in pd.ExcelFile(path).sheet_names]
    except ImportError:
        raise InputError("Reading .xlsx needs the excel extra: pip install 'qxt-pandas[excel]'.") from None
    chosen = sheets[0] if sheet is None else sheet if sheet in sheets else None
    if chosen is None and sheet is not None and sheet.isdigit() and 0 < int(sheet) <= len(sheets):
        chosen = sheets[int(sheet) - 1]
    if chosen is None:
        raise InputError(f"{path} has no sheet {sheet!r}; its sheets are {', '.join(map(repr, sheets))}.")
    note = ""
    if len(sheets) > 1:
        note = (f"read sheet {chosen!r} of {len(sheets)} in {path.name} ({', '.join(map(repr, sheets))}); "
                "choose another with --sheet NAME or --sheet NUMBER")  # fmt: skip
    raw = pd.read_excel(path, sheet_name=chosen, dtype=str, header=None, nrows=1)
    names = [str(c) if isinstance(c, str) and c.strip() else f"column {k + 1}"  # an empty header cell
             for k, c in enumerate(raw.iloc[0].tolist() if len(raw) else [])]  # fmt: skip
    return Source(path, "excel", _text_schema(names), sheet=chosen, sheets=tuple(sheets), note=note)


def _excel_table(path: Path, sheet: str | None, schema: pa.Schema) -> pa.Table:
    """The sheet's rows as text (``sheet`` None: the first sheet)."""
    import pandas as pd

    frame = pd.read_excel(path, sheet_name=0 if sheet is None else sheet, dtype=str, header=None, skiprows=1)
    frame = frame.reindex(columns=range(len(schema.names)))  # a header wider or narrower than the rows
    frame.columns = schema.names
    return pa.Table.from_pandas(frame.astype(object).where(frame.notna(), None), schema=schema, preserve_index=False)


def guess_column(source: Source) -> str | None:
    """The column whose first 200 values normalize best into mobile numbers (the first column on a tie); None
    when none looks like one (fewer than a fifth of its values are mobile numbers): a guess must not pick ``name``.

    A file without rows has nothing to guess from: its first column.
    """
    table = next(iter(source.tables()), None)
    if table is None or table.num_rows == 0:
        return str(source.columns[0])
    valid, filled = [], []
    for name in source.columns:
        column = table.column(name).slice(0, 200)
        valid.append(int(normalize_mobiles(text_series(column))["qxt_mobile"].notna().sum()))
        try:
            filled.append(int(pc.sum(pc.not_equal(pc.utf8_trim_whitespace(column.cast(pa.string())), "")).as_py() or 0))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a type with no text form: its values, then
            filled.append(len(column) - column.null_count)
    best = max(range(len(valid)), key=lambda k: (valid[k], -k))
    return str(source.columns[best]) if valid[best] and valid[best] >= 0.2 * filled[best] else None


def numbers_in(path: str | os.PathLike[str], column: str | None = None) -> list[object]:
    """The values of a file of numbers: one a line (each line whole: ``+86 139 0000 0000`` is one number),
    or a column of a table (CSV/TSV with a header, xlsx, Parquet): ``column``, else the one that looks
    most like mobile numbers."""
    path = Path(path)
    if column is None and path.suffix.lower() in (".txt", ".csv", ""):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"Cannot read {path}: {exc.strerror or exc}.") from None
        text = _decoded(data, path)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        first = normalize_mobiles(pd.Series(lines[:1], dtype=object))["qxt_mobile"]
        if not (lines and first.isna().all() and any(sep in lines[0] for sep in ",\t;")):
            return list(lines)  # one number a line (a header-less list)
    source = open_source(path)
    chosen = column if column is not None else guess_column(source)
    if chosen is None:
        raise InputError(f"No column of {path} looks like mobile numbers ({', '.join(source.columns)}); "
                                 "name the one that holds them with --column.")  # fmt: skip
    if chosen not in source.columns:
        raise InputError(f"{path} has no column {chosen!r}; its columns are {source.columns}.")
    return [value for table in source.tables([chosen]) for value in table.column(0).to_pylist()]


def _decoded(data: bytes, path: Path) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise InputError(f"Cannot read {path}: it is neither UTF-8 nor GBK text.")
