"""Reading exports in batches and writing results atomically: CSV/TSV, Parquet, Excel.

Chinese CRM exports come as UTF-8, UTF-8 with a BOM, or GBK/GB18030; the
encoding is detected from the first megabyte unless named. Every CSV column
is read as text: a reader that turns ``13972565391`` into a float is how
digits get lost. Outputs go to a temporary file beside the target and are
renamed into place only when complete, so a failed or interrupted run never
leaves a file that looks finished.

Example::

    source = open_source("crm.csv")
    for table in source.tables(["mobile"]):
        ...
    with AtomicWriter("checked.parquet") as out:
        out.write(table)
"""

from __future__ import annotations

import codecs
import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from .errors import ConfigurationError

__all__ = ["AtomicWriter", "InputError", "Source", "detect_encoding", "open_source"]

# The CSV reader reads ahead several blocks at once, so its block size sets the memory
# a pass needs (measured on 5M rows: 8 MiB blocks 298 MiB RSS, 1 MiB blocks 204 MiB).
# Small blocks are then grouped into tables of GROUP_ROWS for the per-batch work.
BLOCK_BYTES = 1 << 20
GROUP_ROWS = 200_000


class InputError(ConfigurationError):
    """The input file cannot be read as asked (format, encoding, column)."""


def detect_encoding(path: Path, sample: int = 1 << 20) -> str:
    """``utf-8-sig`` (BOM), ``utf-8``, or ``gb18030`` (covers GBK and GB2312)."""
    with open(path, "rb") as f:
        head = f.read(sample)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 4:  # the sample cut a character in two
            return "utf-8"
    try:
        head.decode("gb18030")
        return "gb18030"
    except UnicodeDecodeError:
        raise InputError(f"{path} is neither UTF-8 nor GBK/GB18030; name its encoding with --encoding.") from None


@dataclass
class Source:
    """An input file that can be read in batches, more than once."""

    path: Path
    kind: str  # "csv", "parquet", "excel"
    columns: list[str]
    encoding: str | None = None
    delimiter: str = ","

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
            yield from _excel_table(self.path).select(columns or self.columns).to_batches(GROUP_ROWS)
        else:
            yield from self._csv(columns)

    def _csv(self, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
        encoding = "utf8" if self.encoding in ("utf-8", "utf-8-sig") else self.encoding
        reader = pa_csv.open_csv(
            self.path,
            read_options=pa_csv.ReadOptions(encoding=encoding, block_size=BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={c: pa.string() for c in self.columns},
                include_columns=columns,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        yield from reader


def open_source(path: str | os.PathLike[str], *, encoding: str | None = None) -> Source:
    """Inspect ``path`` (by extension: .csv/.tsv/.txt, .parquet, .xlsx) without reading it whole."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return Source(path, "parquet", pq.ParquetFile(path).schema_arrow.names)
        if suffix in (".xlsx", ".xlsm"):
            return Source(path, "excel", _excel_columns(path))
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path} cannot be read: {exc}") from None
    encoding = encoding or detect_encoding(path)
    try:
        with open(path, encoding=encoding, newline="") as f:
            header = f.readline().lstrip("\ufeff")
    except (LookupError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} cannot be read as {encoding}: {exc}") from None
    delimiter = "\t" if suffix in (".tsv", ".tab") or header.count("\t") > header.count(",") else ","
    if not header.strip():
        raise InputError(f"{path} is empty: a CSV export needs a header line.")
    names = pa_csv.read_csv(
        pa.py_buffer(header.encode()), parse_options=pa_csv.ParseOptions(delimiter=delimiter)
    ).column_names
    return Source(path, "csv", names, encoding, delimiter)


def _excel_columns(path: Path) -> list[str]:
    return list(_excel_frame(path, nrows=0).columns)


def _excel_table(path: Path) -> pa.Table:
    frame = _excel_frame(path)
    return pa.Table.from_pandas(frame.astype(object).where(frame.notna(), None), preserve_index=False)


def _excel_frame(path: Path, nrows: int | None = None):
    import pandas as pd

    try:
        return pd.read_excel(path, dtype=str, nrows=nrows)
    except ImportError:
        raise InputError("Reading .xlsx needs the excel extra: pip install 'qxt-pandas[excel]'.") from None


def _naive_utc(table: pa.Table) -> pa.Table:
    """Time-zone-aware timestamps as naive UTC: pyarrow writes those to CSV 24x faster
    (measured: 0.87 s against 0.036 s per million). The values are the same instants."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            naive = pa.timestamp(field.type.unit)
            table = table.set_column(i, field.name, table.column(i).cast(naive))
    return table


class AtomicWriter:
    """Writes batches to a temporary file; ``commit()`` renames it into place, anything else deletes it.

    The format follows the extension: ``.parquet`` or ``.csv``/``.tsv``.
    ``excel_friendly`` starts a CSV with a UTF-8 BOM so Excel on Windows shows Chinese.
    """

    def __init__(self, path: str | os.PathLike[str], *, excel_friendly: bool = False) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in (".parquet", ".pq", ".csv", ".tsv"):
            raise InputError(f"{self.path}: the output must end in .parquet, .csv or .tsv.")
        self.kind = "parquet" if suffix in (".parquet", ".pq") else "csv"
        self.delimiter = "\t" if suffix == ".tsv" else ","
        self.excel_friendly = excel_friendly
        self.tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.partial")
        self._writer: pq.ParquetWriter | pa_csv.CSVWriter | None = None
        self._file = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self.kind == "csv":
            table = _naive_utc(table)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.kind == "parquet":
                self._writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
            else:
                self._file = open(self.tmp, "wb")  # noqa: SIM115 (closed in close())
                if self.excel_friendly:
                    self._file.write(codecs.BOM_UTF8)
                self._writer = pa_csv.CSVWriter(
                    self._file, table.schema, write_options=pa_csv.WriteOptions(delimiter=self.delimiter)
                )
        self._writer.write_table(table)
        self.rows += table.num_rows

    def commit(self) -> None:
        """Finish the file and put it in place (atomically replacing any old one)."""
        self._close()
        if not self.tmp.exists():  # no batch was ever written
            raise InputError(f"{self.path}: nothing to write.")
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.path)

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        self._close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
