"""Writing results: Parquet, CSV/TSV or an Excel workbook, atomically, and split by outcome.

An output goes to a hidden, locked temporary file beside the target, opened
with its final columns before anything is paid for (an unwritable path, or a
column the format cannot hold, fails for free), written group by group by a
thread while the next group is built, and renamed into place only when
complete. ``--split`` writes one more such file per outcome beside it.

Example::

    out = AtomicWriter("checked.xlsx")
    out.open(schema)
    out.write(table)
    out.commit()
"""

from __future__ import annotations

import codecs
import contextlib
import datetime
import hashlib
import json
import os
import queue
import re
import threading
import unicodedata
import uuid
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ..errors import ConfigurationError
from ..results import DOCUMENTED_STATUSES, RESERVED_OUTCOMES, outcomes
from ..system.durable import write_atomically
from ..system.locks import held_elsewhere, open_locked
from ..system.sync import stops_held

__all__ = ["EXCEL_ROWS", "AtomicWriter", "OutputError", "SplitWriter", "Targets", "written_by_qxt"]

#: Rows an Excel sheet holds below its header (1,048,576 in all); more continue on further sheets.
EXCEL_ROWS = 1_048_575
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".tsv": "csv", ".xlsx": "excel"}


class OutputError(ConfigurationError):
    """The output cannot be written as asked (path, format, a column the format cannot hold)."""


def _naive_utc(table: pa.Table) -> pa.Table:
    """Time-zone-aware timestamps as naive UTC: pyarrow writes those to CSV 24x faster
    (measured: 0.87 s against 0.036 s per million), and Excel has no time zones. Same instants."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            table = table.set_column(i, field.name, table.column(i).cast(pa.timestamp(field.type.unit)))
    return table


class _Parquet:
    """A Parquet writer made at the first table, which tells the columns of mostly distinct values (ids,
    phone numbers): those are not dictionary-encoded, as a dictionary of distinct values is bigger and
    about twice as slow to write (measured: 0.46 s not 0.31 for 5M numbers; 2.07 s not 2.41 for an output)."""

    def __init__(self, file: IO[bytes], schema: pa.Schema) -> None:
        self.file, self.schema = file, schema
        self._writer: pq.ParquetWriter | None = None

    def write_table(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = self._made(table)
        self._writer.write_table(table)

    def close(self) -> None:
        (self._writer or self._made(self.schema.empty_table())).close()

    def _made(self, first: pa.Table) -> pq.ParquetWriter:
        plain = set()
        for name in first.column_names:
            head = first[name].slice(0, 10_000)
            text = pa.types.is_string(head.type) or pa.types.is_large_string(head.type)
            if text and len(head) and pc.count_distinct(head).as_py() > len(head) // 2:
                plain.add(name)
        dictionary = [name for name in self.schema.names if name not in plain]
        return pq.ParquetWriter(self.file, self.schema, compression="zstd", use_dictionary=dictionary,
                                write_statistics=[f.name for f in self.schema if not _text(f.type)])  # fmt: skip


def _text(kind: pa.DataType) -> bool:
    """Text, or dictionary-encoded text: such columns get no min/max statistics. An export's text columns
    rarely prune a row group by them (every group holds every Status, city and spread of numbers), and
    computing them took 0.66 s of 2.67 writing 5M rows of 13 columns (benchmarks/command_cost.py's output)."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


class _Excel:
    """A streaming workbook (openpyxl's write-only mode): rows go to disk as they come.

    Text stays text, and whole numbers of 10 digits or more are written as text too, so that
    Excel never shows a phone number as 1.39E+10. The header row is frozen; column widths fit
    the header and the first rows, counting a Chinese character as two.
    """

    def __init__(self, file: IO[bytes], schema: pa.Schema) -> None:
        try:
            from openpyxl import Workbook
        except ImportError:
            raise OutputError("Writing .xlsx needs the excel extra: pip install 'qxt-pandas[excel]'. "
                              "Nothing was asked or paid for.") from None  # fmt: skip
        self.file, self.names = file, schema.names
        self.book = Workbook(write_only=True)
        self.sheet: Any = None
        self.sheets = 0
        self.left = 0

    def _new_sheet(self, sample: list[list[Any]]) -> None:
        from openpyxl.utils import get_column_letter

        self.sheets += 1
        self.sheet = self.book.create_sheet("checked" if self.sheets == 1 else f"checked ({self.sheets})")
        self.sheet.freeze_panes = "A2"
        for k, name in enumerate(self.names):
            width = max([_width(name), *(_width(row[k]) for row in sample[:200])])
            self.sheet.column_dimensions[get_column_letter(k + 1)].width = min(60, width + 2)
        self.sheet.append([self.sheet_cell(n) if n.startswith("=") else n for n in self.names])
        self.left = EXCEL_ROWS

    def write_table(self, table: pa.Table) -> None:
        rows = [list(row) for row in zip(*(_cells(column) for column in _naive_utc(table).columns), strict=True)]
        while rows:
            if self.left == 0:
                self._new_sheet(rows)
            chunk, rows = rows[: self.left], rows[self.left :]
            for row in chunk:
                if any(type(v) is _Text for v in row):
                    row = [self.sheet_cell(v) if type(v) is _Text else v for v in row]
                self.sheet.append(row)
            self.left -= len(chunk)

    def close(self) -> None:
        if self.sheets == 0:
            self._new_sheet([])
        self.book.save(self.file)

    def sheet_cell(self, text: str) -> Any:
        """A cell that holds ``text`` as text, even when it starts with ``=`` (never a live formula)."""
        from openpyxl.cell import WriteOnlyCell

        cell = WriteOnlyCell(self.sheet, value=None)
        cell.value, cell.data_type = text, "s"
        return cell


#: What an .xlsx file cannot hold (XML 1.0 forbids these control characters): dropped, not fatal.
_XML_ILLEGAL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"


class _Text(str):
    """Text that openpyxl would take for a formula (it starts with ``=``): written as text."""


def _cells(column: pa.ChunkedArray) -> list[Any]:
    if pa.types.is_integer(column.type):
        return [str(v) if v is not None and abs(v) >= 10**9 else v for v in column.to_pylist()]
    if pa.types.is_floating(column.type):  # a phone column read as float64 (Parquet): whole 10+ digits as text
        return [str(int(v)) if v is not None and v == v and abs(v) >= 1e9 and v == int(v) else v
                for v in column.to_pylist()]  # fmt: skip
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return list(column.to_pylist())
    values = pc.replace_substring_regex(column, _XML_ILLEGAL, "").to_pylist()
    return [_Text(v) if v is not None and v.startswith("=") else v for v in values]


def _width(value: object) -> int:
    value = getattr(value, "value", value)  # a text cell made by sheet_cell
    if value is None:
        return 0
    if isinstance(value, datetime.datetime):
        return 19
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in str(value))


def _defused(table: pa.Table) -> pa.Table:
    """Text cells that Excel would run as a formula (``= + - @``, tab, CR first) behind a ``'``: OWASP's
    rule for CSV opened in a spreadsheet. Only for ``--excel-friendly``; a ``+86`` number then reads
    ``'+86 139…``, which Excel shows without the quote."""
    for i, field in enumerate(table.schema):
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            column = table.column(i).cast(kind)
            risky = pc.fill_null(pc.match_substring_regex(column, r"^[=+\-@\t\r]"), False)
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
            # A phone number Excel would turn into a number (1.66E+10, a lost leading 0): a tab first keeps it text
            digits = pc.fill_null(pc.match_substring_regex(column, r"^(0\d+|\d{10,})$"), False)
            table = table.set_column(i, field.name, pc.if_else(digits, pc.binary_join_element_wise("\t", column, ""),
                                                                column))  # fmt: skip
    return table


class _Transcoded:
    """A file that takes UTF-8 bytes (pyarrow's CSV writer) and stores them as GB18030 (GBK's superset)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self.closed = False

    def write(self, data: bytes) -> int:
        self.raw.write(self._decoder.decode(bytes(data)).encode("gb18030"))
        return len(data)

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        self.closed = True  # the raw file is the writer's own: AtomicWriter closes it


class AtomicWriter:
    """Writes tables to a locked temporary file; ``commit()`` renames it into place, ``discard()`` deletes it.

    The format follows the extension: ``.parquet``, ``.csv``/``.tsv`` or ``.xlsx``.
    ``open(schema)`` comes first, before anything is paid for: it proves the path writable
    and the columns writable in the format. ``excel_friendly`` starts a CSV with a UTF-8 BOM
    so Excel on Windows shows Chinese. Partial files that killed runs left beside the target
    are removed.
    """

    def __init__(self, path: str | os.PathLike[str], *, excel_friendly: bool = False, encoding: str = "utf-8") -> None:
        self.path = Path(path)
        kind = _SUFFIXES.get(self.path.suffix.lower())
        if kind is None:
            raise OutputError(f"{self.path}: the output must end in .parquet, .csv, .tsv or .xlsx.")
        self.kind = kind
        self.delimiter = "\t" if self.path.suffix.lower() == ".tsv" else ","
        self.excel_friendly = excel_friendly
        if encoding.lower().replace("-", "").replace("_", "") not in ("utf8", "gbk", "gb18030"):
            raise OutputError(f"--output-encoding {encoding}: use utf-8 (the default) or gbk.")
        self.gbk = encoding.lower() in ("gbk", "gb18030")
        self.tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.partial")
        self._writer: Any = None
        self._file: IO[bytes] | None = None
        self.rows = 0
        self.committed = False
        self._queue: queue.Queue[pa.Table | None] = queue.Queue()
        self._idle = threading.Event()  # the writer has no table
        self._idle.set()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def open(self, schema: pa.Schema, *, paid: bool = False) -> None:
        """Create the temporary file for ``schema``; an OutputError says why it cannot be
        (``paid``: opened after answers were paid for, which the message then says)."""
        spent = ("The answers paid for so far are kept in the checkpoint, if any" if paid
                 else "Nothing was asked or paid for")  # fmt: skip
        with contextlib.suppress(OSError):  # any output's partial file here whose run was killed (ours by name)
            for stale in self.path.parent.glob(".*.partial"):
                if _PARTIAL.fullmatch(stale.name) and not held_elsewhere(stale):
                    stale.unlink(missing_ok=True)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = os.fdopen(open_locked(self.tmp, append=False), "w+b")  # zip (xlsx) seeks back
        except OSError as exc:
            raise OutputError(f"Cannot write the output {self.path}: {exc.strerror or exc}. {spent}; choose "
                              "another --output.") from None  # fmt: skip
        try:
            if self.kind == "parquet":
                self._writer = _Parquet(self._file, schema)
            elif self.kind == "excel":
                self._writer = _Excel(self._file, schema)
            else:
                if self.excel_friendly and not self.gbk:
                    self._file.write(codecs.BOM_UTF8)
                self._writer = pa_csv.CSVWriter(
                    _Transcoded(self._file) if self.gbk else self._file, _naive_utc(schema.empty_table()).schema,
                    write_options=pa_csv.WriteOptions(delimiter=self.delimiter),
                )  # fmt: skip
            if self.kind != "parquet":
                bad = [f for f in schema if pa.types.is_nested(f.type)]
                if bad:
                    raise TypeError(bad)
        except (pa.ArrowException, TypeError) as exc:
            self.discard()
            kinds = ", ".join(f"{f.name!r} ({f.type})" for f in schema if pa.types.is_nested(f.type))
            raise OutputError(
                f"{self.path}: {self.kind.upper()} cannot hold column(s) {kinds or exc}. Write "
                f".parquet output, or drop those columns first. {spent}."
            ) from None

    def write(self, table: pa.Table) -> None:
        """Queue ``table``; a thread writes it while the caller reads and builds the next one.

        Encoding and compressing Parquet take about as long as computing the rows (measured:
        1.4 s for 5M rows of 13 columns); on two cores the two overlap. Two tables alive at most.
        """
        assert self._writer is not None, "open() first"
        if self._error is not None:
            raise self._error
        if self._thread is None:
            self._thread = threading.Thread(target=self._drain, name="qxt-output-writer", daemon=True)
            self._thread.start()
        while not self._idle.wait(0.1):  # the previous table written first; short waits, so that
            pass  # Ctrl-C stays prompt while the writer is busy
        self._idle.clear()
        self._queue.put(table)
        self.rows += table.num_rows

    def _drain(self) -> None:
        while (table := self._queue.get()) is not None:
            if self._error is None:
                try:
                    if self.kind == "csv":
                        table = _naive_utc(_defused(table) if self.excel_friendly else table)
                    self._writer.write_table(table)
                except BaseException as exc:  # told to the caller at its next write or commit
                    self._error = exc
            del table
            self._idle.set()

    def _finish(self) -> None:
        """Wait until every queued table is written."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def finish(self) -> None:
        """Write out every queued table and close the file, not yet in place (:meth:`commit` puts it there)."""
        self._finish()
        if self._error is not None:
            raise self._error
        self._close()

    def commit(self) -> None:
        """Finish the file and put it in place (atomically replacing any old one)."""
        self.finish()
        os.replace(self.tmp, self.path)
        self.committed = True

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.flush()
            with contextlib.suppress(OSError):
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def discard(self) -> None:
        self._finish()
        with contextlib.suppress(Exception):
            self._close()
        self.tmp.unlink(missing_ok=True)


#: A partial output's name (``.<name>.<8 hex>.partial``), and the manifest of a run's files (``OUT.files.json``).
_PARTIAL = re.compile(r"\..+\.[0-9a-f]{8}\.partial")
MANIFEST = ".files.json"


def publish(main: AtomicWriter, parts: SplitWriter | None) -> None:
    """Put a run's files in place as one set: its split files first, then the output, then ``OUT.files.json``
    (written last: the files it lists are that run's), and the split files an earlier run listed there that
    this run did not write (an outcome gone) removed before the output appears. A reader keyed on the output
    never sees a new output beside old split files."""
    main.finish()  # the writing first, while a stop is still prompt
    if parts is not None:
        parts.finish()
    with stops_held():  # then the renames: a Ctrl-C or SIGTERM meanwhile is told once the set is in place
        _publish(main, parts)


def _publish(main: AtomicWriter, parts: SplitWriter | None) -> None:
    manifest = main.path.with_name(main.path.stem + MANIFEST)
    previous: list[str] = []
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        previous = [str(name) for name in json.loads(manifest.read_text(encoding="utf-8"))["split"].values()]
    if parts is not None:
        parts.commit()
    now = {writer.path.name for writer in parts.writers.values()} if parts is not None else set()
    for name in previous:
        old = main.path.with_name(Path(name).name)
        if old.name not in now and old != main.path and old.exists() and written_by_qxt(old):
            old.unlink()
    main.commit()
    if parts is None:
        manifest.unlink(missing_ok=True)
        return
    listed = {"output": main.path.name, "rows": main.rows,
              "split": {outcome: w.path.name for outcome, w in parts.writers.items()},
              "rows_by_file": {w.path.name: w.rows for w in parts.writers.values()}}  # fmt: skip
    write_atomically(manifest, json.dumps(listed, ensure_ascii=False, indent=1).encode())


class Targets:
    """Where a run may write: never an input (links included), a directory, the checkpoint, or a
    file someone else made (unless ``overwrite``); an earlier qxt output may be replaced.

    Checked before anything is paid for (:meth:`refuse`); :meth:`free` answers for a file name
    only known after paying (a split by a Status the vendor just sent).
    """

    def __init__(self, inputs: list[Path] = [], keep: list[Path] = [], overwrite: bool = False) -> None:  # noqa: B006
        self.inputs, self.keep, self.overwrite = inputs, [k.resolve() for k in keep], overwrite

    def why_not(self, path: Path) -> str | None:
        """Why ``path`` must not be written, or None."""
        where = path.resolve()
        if any(where == k or k in where.parents for k in self.keep):
            return "it is the checkpoint"
        for source in self.inputs:
            with contextlib.suppress(OSError, RuntimeError):  # an input that is a symlink loop: said when read
                if where == source.resolve() or (path.exists() and os.path.samefile(source, path)):
                    return "it is the input file"
        if path.is_dir():
            return "it is a directory"
        if path.exists() and not self.overwrite and not written_by_qxt(path):
            return "it exists and was not written by qxt (--overwrite replaces it)"
        return None

    def free(self, path: Path) -> bool:
        return self.why_not(path) is None

    def refuse(self, paths: list[Path]) -> None:
        """An OutputError naming every path that must not be written; nothing is paid for yet."""
        bad = [f"{p} ({why})" for p in paths if (why := self.why_not(p)) is not None]
        if bad:
            raise OutputError(f"Will not write {'; '.join(bad)}. Nothing was asked or paid for; choose another "
                              "--output, or pass --overwrite to replace files that are not the input.")  # fmt: skip


def written_by_qxt(path: Path) -> bool:
    """Whether ``path`` looks like an output of this project: its header has the result columns."""
    ours = {"qxt_code", "qxt_checked_at"}
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return ours <= set(pq.read_schema(path).names)
        if path.suffix.lower() == ".xlsx":
            from openpyxl import load_workbook

            book = load_workbook(path, read_only=True)
            try:
                header = next(book.worksheets[0].iter_rows(max_row=1, values_only=True), ())
            finally:
                book.close()
            return ours <= {str(c) for c in header}
        with open(path, "rb") as f:
            head = f.read(1 << 16).split(b"\n", 1)[0]
        return all(name.encode() in head for name in ours)
    except Exception:  # unreadable, not the format its name says, openpyxl missing: not provably ours
        return False


#: Longest outcome part of a split file's name, in bytes: names stay far below NAME_MAX (255).
_OUTCOME_BYTES = 80


class SplitWriter:
    """``--split``: beside ``<stem>.<ext>``, one ``<stem>.<outcome>.<ext>`` per outcome present.

    Outcomes: each vendor ``Status`` (正常, 空号, 停机, 沉默号 …), ``invalid``, ``unknown``,
    ``unanswered`` (see :func:`~qxt_pandas.results.outcomes`). Every row goes to exactly one
    file, and distinct outcomes to distinct files: a Status that is not a safe file name as it
    is (``a/b``, control characters, very long), or whose file is taken, gets a short hash.
    """

    def __init__(self, main: AtomicWriter, schema: pa.Schema, prefix: str = "", targets: Targets | None = None):
        self.main, self.schema, self.prefix = main, schema, prefix
        self.targets = targets or Targets()
        self.writers: dict[str, AtomicWriter] = {}
        self._taken = {main.path.name.lower()}

    def path(self, outcome: str) -> Path:
        """The file for ``outcome``: its plain name when that is safe and free, else with a hash."""
        safe = re.sub(r'[\\/:*?"<>|\x00-\x1f\x7f]', "_", outcome).strip(" .") or "_"
        while len(safe.encode()) > _OUTCOME_BYTES:
            safe = safe[:-1]
        plain = self._named(safe)
        if safe == outcome and plain.name.lower() not in self._taken and self.targets.free(plain):
            return plain
        tag = hashlib.blake2b(outcome.encode(), digest_size=4).hexdigest()
        return self._named(f"{safe}~{tag}")

    def planned(self) -> list[Path]:
        """The files of the outcomes known before paying: the document's statuses and ours."""
        return [self._named(o) for o in (*DOCUMENTED_STATUSES, *sorted(RESERVED_OUTCOMES))]

    def _named(self, part: str) -> Path:
        return self.main.path.with_name(f"{self.main.path.stem}.{part}{self.main.path.suffix}")

    def write(self, table: pa.Table) -> None:
        each = outcomes(table[self.prefix + "qxt_code"], table[self.prefix + "Status"])
        for outcome in pc.unique(each).to_pylist():
            if outcome not in self.writers:
                path = self.path(outcome)
                self._taken.add(path.name.lower())
                writer = AtomicWriter(path, excel_friendly=self.main.excel_friendly,
                                      encoding="gbk" if self.main.gbk else "utf-8")  # fmt: skip
                writer.open(self.schema, paid=True)
                self.writers[outcome] = writer
            self.writers[outcome].write(table.filter(pc.equal(each, outcome)))

    def finish(self) -> None:
        """Write out every file, once their rows are proven to add up to the output's; none in place yet."""
        split = sum(w.rows for w in self.writers.values())
        if split != self.main.rows:
            raise OutputError(f"The split holds {split:,} rows, the output {self.main.rows:,}; no split file "
                              "was written. This is a bug: please report it.")  # fmt: skip
        for writer in self.writers.values():
            writer.finish()

    def commit(self) -> None:
        """Put every file in place (written out first, if :meth:`finish` was not called)."""
        self.finish()
        for writer in self.writers.values():
            writer.commit()

    def discard(self) -> None:
        for writer in self.writers.values():
            writer.discard()
