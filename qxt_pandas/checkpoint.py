"""The durable store of answers: resume, sharing between processes, compaction.

A checkpoint is a directory::

    runs/crm.qxt/
      meta.json                          format and the service that answered
      journal-<time>-<pid>-<id>.jsonl    one per writer: a line per answer, appended
      part-<time>-<id>.parquet           compacted answers

Each answer is one ``os.write`` of one line to the writer's journal, before
the engine counts it as done. That takes microseconds, and the line survives
``kill -9`` of the process, because the kernel holds it. Measured before
this design: a long-lived ``ParquetWriter``, or a Parquet file written in
place, was unreadable after ``kill -9`` every time. A writer holds an
``flock`` on its journal, so a compaction (another process's included) only
folds journals whose writer is gone. A new part is written to a temporary
file, fsynced and renamed into place before any journal or old part is
deleted. A crash at any point leaves duplicates, never a gap, and duplicates
are resolved on load (newest answer wins). A file that cannot be read is
kept, never deleted, and reported with a warning.

Example::

    store = Checkpoint("runs/crm.qxt", service="ps.szqxt.com")
    table = store.answers()            # pyarrow.Table, one row per number
    with store.writer() as journal:
        journal.append(answer)
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from .errors import CheckpointError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process compaction safety
    fcntl = None  # type: ignore[assignment]

__all__ = ["ANSWER_SCHEMA", "STORED_CODES", "Answer", "Checkpoint"]

log = logging.getLogger("qxt_pandas")

FORMAT = 1
#: Codes that are answers about the number itself, kept so they are never asked again.
#: (1 is not: it usually means the request, not the number, was wrong.)
STORED_CODES = frozenset({0, -2, -3, -4})

ANSWER_SCHEMA = pa.schema(
    [
        ("mobile", pa.string()),
        ("code", pa.int16()),
        ("Status", pa.string()),
        ("Area", pa.string()),
        ("Is_MNP", pa.bool_()),
        ("Init_isp", pa.string()),
        ("Now_isp", pa.string()),
        ("reason", pa.string()),
        ("checked_at", pa.float64()),  # seconds since the epoch, UTC
    ]
)
_KEYS = ANSWER_SCHEMA.names


@dataclass(frozen=True, slots=True)
class Answer:
    """One number's answer as stored: the vendor's fields, its code and reason, and when."""

    mobile: str
    code: int
    Status: str | None = None
    Area: str | None = None
    Is_MNP: bool | None = None
    Init_isp: str | None = None
    Now_isp: str | None = None
    reason: str | None = None
    checked_at: float = 0.0

    def line(self) -> bytes:
        return (json.dumps(dict(zip(_KEYS, self.values(), strict=True)), ensure_ascii=False) + "\n").encode()

    def values(self) -> tuple:
        return tuple(getattr(self, k) for k in _KEYS)


def answers_table(answers: Iterable[Answer]) -> pa.Table:
    """A list of answers as a table in :data:`ANSWER_SCHEMA`."""
    columns = list(zip(*(a.values() for a in answers), strict=True)) or [[] for _ in _KEYS]
    return pa.table([pa.array(col, type=f.type) for col, f in zip(columns, ANSWER_SCHEMA, strict=True)],
                    schema=ANSWER_SCHEMA)  # fmt: skip


class Checkpoint:
    """A checkpoint directory, created on first use, bound to one ``service`` (a host name)."""

    def __init__(self, path: str | os.PathLike[str], *, service: str) -> None:
        self.path = Path(path)
        self.service = service
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"{self.path} is a file; a checkpoint is a directory. Choose another path.")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(f"Cannot use {self.path} as a checkpoint: {exc.strerror}.") from None
        self._check_meta()

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, service={self.service!r})"

    def _check_meta(self) -> None:
        meta_path = self.path / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            _atomic_write(meta_path, json.dumps({"format": FORMAT, "service": self.service}).encode())
            return
        except (OSError, ValueError):
            raise CheckpointError(
                f"{meta_path} is damaged. If {self.path} is a qxt checkpoint, restore meta.json from a "
                "backup or delete it (the answers themselves are in the other files and are kept)."
            ) from None
        if meta.get("service") != self.service:
            raise CheckpointError(
                f"The checkpoint {self.path} holds answers from {meta.get('service')!r}, not from "
                f"{self.service!r}. Use another checkpoint path for this service (answers from a simulator "
                "and from the real vendor must not be mixed)."
            )
        if meta.get("format", FORMAT) > FORMAT:
            raise CheckpointError(f"{self.path} was written by a newer qxt-pandas; upgrade to read it.")

    # -- reading ---------------------------------------------------------------

    def answers(self, max_age: float | None = None) -> pa.Table:
        """Every stored answer, one per number (the newest), optionally only those younger than ``max_age`` s."""
        tables = [t for f in self._files("part-*.parquet") if (t := self._read_part(f)) is not None]
        journals = self._files("journal-*.jsonl")
        tables += [t for f in journals if (t := _read_journal(f)) is not None]
        if not tables:
            return ANSWER_SCHEMA.empty_table()
        table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        if len(tables) > 1 or journals:  # a lone compacted part is already one row per number
            table = _newest_per_number(table)
        if max_age is not None:
            table = table.filter(pc.greater_equal(table["checked_at"], time.time() - max_age))
        return table

    def _files(self, pattern: str) -> list[Path]:
        return sorted(self.path.glob(pattern))

    def _read_part(self, path: Path) -> pa.Table | None:
        try:
            return pq.read_table(path, schema=ANSWER_SCHEMA)
        except (OSError, pa.ArrowException) as exc:
            _warn(f"Checkpoint file {path} cannot be read ({exc}); it is kept, not deleted, and its answers "
                  "are not used. Numbers only it held will be asked again.")  # fmt: skip
            return None

    # -- writing ---------------------------------------------------------------

    def writer(self) -> JournalWriter:
        """A new journal for this process's answers (use as a context manager)."""
        return JournalWriter(self.path)

    def tidy(self) -> bool:
        """Compact when it pays: 8+ closed journals, or journals a tenth the size of the parts."""
        journals = [j.stat().st_size for j in self._files("journal-*.jsonl")]
        parts = sum(p.stat().st_size for p in self._files("part-*.parquet"))
        return (len(journals) >= 8 or sum(journals) * 10 >= parts) and self.compact()

    def compact(self) -> bool:
        """Fold journals whose writers are gone, and all parts, into one part; True when done.

        Skipped (False) when another process is compacting or no journal is closed.
        """
        with _try_lock(self.path / "compact.lock") as locked:
            if not locked:
                return False
            for stale in self.path.glob(".tmp-*"):  # left by a compaction that was killed
                stale.unlink(missing_ok=True)
            journals = [j for j in self._files("journal-*.jsonl") if _writer_gone(j)]
            parts = self._files("part-*.parquet")
            if not journals:
                return False
            tables = [(f, self._read_part(f)) for f in parts] + [(j, _read_journal(j)) for j in journals]
            readable = [(f, t) for f, t in tables if t is not None]
            merged = _newest_per_number(pa.concat_tables([t for _, t in readable]))
            target = self.path / f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
            buffer = io.BytesIO()
            pq.write_table(merged, buffer, compression="zstd")
            _atomic_write(target, buffer.getvalue())
            for f, _ in readable:  # only now, with the new part durable
                f.unlink(missing_ok=True)
            return True


class JournalWriter:
    """Appends answers to this writer's own journal, one ``os.write`` each."""

    def __init__(self, directory: Path) -> None:
        name = f"journal-{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self.path = directory / name
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        if fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # released by the kernel even on kill -9
        self.count = 0

    def append(self, answer: Answer) -> None:
        """Make ``answer`` durable against a crash of this process; microseconds."""
        os.write(self._fd, answer.line())
        self.count += 1

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)  # and against power loss, once, at the end
            os.close(self._fd)
            self._fd = -1
            if self.count == 0:
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_journal(path: Path) -> pa.Table | None:
    """A journal's complete lines; a torn last line (a kill mid-write) is ignored."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        _warn(f"Checkpoint journal {path} cannot be read ({exc.strerror}); it is kept.")
        return None
    data = data[: data.rfind(b"\n") + 1]
    if not data:
        return None
    try:
        options = pa_json.ParseOptions(explicit_schema=ANSWER_SCHEMA, unexpected_field_behavior="ignore")
        return pa_json.read_json(io.BytesIO(data), parse_options=options)
    except pa.ArrowException:
        return _read_journal_line_by_line(path, data)


def _read_journal_line_by_line(path: Path, data: bytes) -> pa.Table:
    answers, bad = [], 0
    for line in data.splitlines():
        try:
            row = json.loads(line)
            answers.append(Answer(**{k: row.get(k) for k in _KEYS}))
        except (ValueError, TypeError):
            bad += 1
    if bad:
        _warn(f"Checkpoint journal {path}: {bad} damaged line(s) skipped; the other {len(answers)} answers are used.")
    return answers_table(answers)


def _newest_per_number(table: pa.Table) -> pa.Table:
    """One row per mobile: the one with the latest ``checked_at``."""
    if table.num_rows == 0:
        return table
    order = pc.sort_indices(table, sort_keys=[("mobile", "ascending"), ("checked_at", "descending")])
    table = table.take(order)
    mobiles = table["mobile"].combine_chunks()
    first = pc.not_equal(mobiles[1:], mobiles[:-1]) if len(mobiles) > 1 else pa.array([], pa.bool_())
    keep = pa.concat_arrays([pa.array([True]), pc.fill_null(first, True)])
    return table.filter(keep)


def _writer_gone(journal: Path) -> bool:
    """True when no process holds this journal open for writing."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = os.open(journal, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also drops the lock


@contextlib.contextmanager
def _try_lock(path: Path):
    if fcntl is None:  # pragma: no cover
        yield True
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        yield False
        return
    try:
        yield True
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never half."""
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _warn(message: str) -> None:
    log.warning(message)
    warnings.warn(message, RuntimeWarning, stacklevel=3)
