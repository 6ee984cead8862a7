"""One answer per line: the stored record of an answer, and the journals that hold them.

A journal is a file of JSON lines, one :class:`Answer` each, appended by one
writer with one ``os.write`` per answer and fsynced by a thread at least once
a second. Reading is strict: a line counts only in exactly the shape a writer
writes; anything else (bit rot, a hand edit, a torn write) is skipped with
one warning, and its number is asked again.

Example::

    with JournalWriter(Path("runs/crm.qxt")) as journal:
        journal.append(Answer("13972565391", 0, "正常", "湖北-宜昌", True, "中国移动", "中国电信"))
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import threading
import time
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from ..errors import CheckpointError, StoreUnavailableError
from ..service.answers import ANSWER_SCHEMA, PAID_CODES, STORED_CODES, TEXT_FIELDS, Answer, answers_table
from ..system.durable import write_atomically
from ..system.locks import open_locked
from ._spill import Spiller, spilled

__all__ = [
    "ANSWER_SCHEMA",
    "PAID_CODES",
    "STORED_CODES",
    "Answer",
    "JournalWriter",
    "answers_table",
    "prune_spilled",
    "read_journal",
    "unwritable",
]

#: A journal is fsynced at least this often while answers arrive (the power-loss bound, seconds).
SYNC_EVERY = 1.0

_MOBILE = re.compile(r"[0-9]{11}|[0-9a-f]{32}")  # a number, or its keyed hash (keyed.py)


def forgotten(table: pa.Table, numbers: pa.Array, cutoff: float | None) -> pa.Array:
    """Which rows of ``table`` a forget removes: the answers for ``numbers``, and those checked before ``cutoff``."""
    drop = pc.is_in(table["mobile"], value_set=numbers)
    return drop if cutoff is None else pc.or_(drop, pc.less(table["checked_at"], cutoff))


def newest_per_number(table: pa.Table) -> pa.Table:
    """One row per mobile: the one with the latest ``checked_at``."""
    return table if table.num_rows == 0 else table.take(newest_indices(table))


def newest_indices(table: pa.Table) -> pa.Array:
    """The rows to keep: per mobile, the one with the latest ``checked_at`` (only the two keys are sorted)."""
    order = pc.sort_indices(table.select(["mobile", "checked_at"]),
                            sort_keys=[("mobile", "ascending"), ("checked_at", "descending")])  # fmt: skip
    mobiles = table["mobile"].take(order).combine_chunks()
    first = pc.not_equal(mobiles[1:], mobiles[:-1]) if len(mobiles) > 1 else pa.array([], pa.bool_())
    keep = pa.concat_arrays([pa.array([True]), pc.fill_null(first, True)])
    return order.filter(keep)


class JournalWriter:
    """Appends answers to this writer's own journal, one ``os.write`` each; fsynced at least once a second.

    A write that fails (a full disk, an I/O error, a file system gone read-only) stops the run:
    that answer and every later one go to a spill file on this machine (``store`` names the
    checkpoint there), which the next run on the checkpoint moves in.
    """

    def __init__(self, directory: Path, *, store: str = "", sync_every: float = SYNC_EVERY) -> None:
        self.path = directory / f"journal-{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self.name = self.path.name
        self.count = 0
        self.sync_every = sync_every
        self.failure: StoreUnavailableError | None = None
        self.kept = Spiller(store, self.path.stem)
        self._fd = -1
        self._size = 0  # bytes of whole lines written
        self._dirty = False
        self._closed = threading.Event()
        self._syncer: threading.Thread | None = None

    def append(self, answer: Answer) -> None:
        """Make ``answer`` durable against a crash of this process (microseconds), and within a second on disk."""
        self.count += 1
        if self.failure is None:
            try:
                if self._fd < 0:
                    self._open()
                line = answer.line()
                written = os.write(self._fd, line)
                if written < len(line):
                    written += self._rest(line[written:])
                self._dirty, self._size = True, self._size + written
                return
            except OSError as exc:
                told = f"Cannot write to the checkpoint {self.path.parent} ({exc.strerror or exc})."
                self.failure = StoreUnavailableError(f"{told} The run stopped asking.", hint="")
        self.kept.keep([answer])
        raise self.failure

    def _rest(self, rest: bytes) -> int:
        """The rest of a line after a short write; if that fails too, the torn line is cut off (no reader
        meets it as damage) and the error is the writer's."""
        try:
            written = os.write(self._fd, rest)
            if written == len(rest):
                return written
            raise OSError(errno.ENOSPC, "a short write (is the disk full?)")
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise

    async def settle(self) -> None:
        """Nothing to wait for: each answer is in the kernel's hands once appended."""

    def outcome(self) -> StoreUnavailableError | None:
        """Why answers paid for are not in the checkpoint, and where they are (None: every one is)."""
        return self.kept.outcome(self.failure)

    def _open(self) -> None:
        self._fd = open_locked(self.path)
        self._syncer = threading.Thread(target=self._sync_loop, name="qxt-journal-fsync", daemon=True)
        self._syncer.start()

    def _sync_loop(self) -> None:  # off the hot path: the event loop never waits for the disk
        while not self._closed.wait(self.sync_every):
            if self._dirty:
                self._dirty = False
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)

    def close(self) -> None:
        self._closed.set()
        if self._syncer is not None:
            self._syncer.join()
            self._syncer = None
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unwritable(path: Path, exc: OSError) -> CheckpointError:
    """The error for a checkpoint this process cannot write to (running again will not help)."""
    return CheckpointError(
        f"Cannot write to the checkpoint {path} ({exc.strerror or exc}). Running again will not help: make it "
        "writable or choose another checkpoint path."
    )


# Journals in which damaged lines were skipped: compaction sets them aside rather than deleting them.
DAMAGED: set[Path] = set()


def read_journal(path: Path, offset: int) -> tuple[pa.Table | None, int]:
    """A journal's complete lines from ``offset`` on, and the offset after them (a torn last line waits).

    Read a block at a time: a run's journal holds about 200 bytes an answer, twice what the
    answers take as a table, so it is never in memory whole.
    """
    tables, rest = [], b""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while block := f.read(_BLOCK):
                data = rest + block
                cut = data.rfind(b"\n") + 1
                data, rest = data[:cut], data[cut:]
                if data:
                    tables.append(_parse(path, data))
                    offset += len(data)
    except FileNotFoundError:
        pass
    except OSError as exc:
        warn_once(path, f"Checkpoint journal {path} cannot be read ({exc.strerror}); it is kept.")
    if not tables:
        return None, offset
    return (pa.concat_tables(tables) if len(tables) > 1 else tables[0]), offset


_BLOCK = 32 << 20


def _parse(path: Path, data: bytes) -> pa.Table:
    """Complete journal lines as a table."""
    if not _as_written(data):  # Arrow's JSON reader is fast but not safe on damaged input: read it by hand
        return _read_journal_line_by_line(path, data)
    options = pa_json.ParseOptions(explicit_schema=ANSWER_SCHEMA, unexpected_field_behavior="ignore")
    return pa_json.read_json(io.BytesIO(data), parse_options=options)


def _line_pattern() -> str:
    """A journal line exactly as ``Answer.line`` writes it (compact, or with spaces as before orjson)."""
    text, sep = r'(?:null|"(?:[^"\\]|\\.)*")', ", ?"
    values = {
        "mobile": '"(?:[0-9]{11}|[0-9a-f]{32})"',  # a number, or its keyed hash (keyed.py)
        "code": "(?:" + "|".join(map(str, sorted(STORED_CODES))) + ")",
        "Status": text,
        "Area": text,
        "Is_MNP": "(?:null|true|false)",
        "Init_isp": text,
        "Now_isp": text,
        "reason": text,
        "checked_at": "[0-9][0-9.eE+-]*",
    }
    return r"^\{" + sep.join(f'"{key}": ?{value}' for key, value in values.items()) + r"\}\n$"


#: Only data in which every line matches goes to Arrow's JSON reader: a stray ``null`` line
#: crashes that reader (apache/arrow#47409, a segfault).
_LINE = _line_pattern()


def _as_written(data: bytes) -> bool:
    """Whether every line of ``data`` (complete lines) is valid UTF-8 in the writer's exact shape."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1
    offsets = pa.py_buffer(np.concatenate([[0], ends]).astype(np.int64))
    lines = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(ends), [None, offsets, pa.py_buffer(data)])
    try:
        text = lines.view(pa.large_string())
        text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return bool(pc.all(pc.match_substring_regex(text, _LINE)).as_py())


def _read_journal_line_by_line(path: Path, data: bytes) -> pa.Table:
    answers, bad = [], 0
    for line in data.splitlines():
        answer = _parse_line(line)
        if answer is None:
            bad += bool(line.strip())
        else:
            answers.append(answer)
    if bad:
        DAMAGED.add(path)
        warn_once(path, f"Checkpoint journal {path}: {bad} damaged line(s) skipped; the other {len(answers)} "
                         "answers are used, and the numbers on damaged lines will be asked again.")  # fmt: skip
    return answers_table(answers)


def _parse_line(line: bytes) -> Answer | None:
    """One journal line as an Answer, or None when it is not exactly what a writer writes."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if not isinstance(row, dict):
        return None
    mobile, code, mnp, at = row.get("mobile"), row.get("code"), row.get("Is_MNP"), row.get("checked_at")
    if not (isinstance(mobile, str) and _MOBILE.fullmatch(mobile)):
        return None
    if isinstance(code, bool) or not isinstance(code, int) or code not in STORED_CODES:
        return None
    if not (mnp is None or isinstance(mnp, bool)) or isinstance(at, bool) or not isinstance(at, (int, float)):
        return None
    if not all(row.get(k) is None or isinstance(row.get(k), str) for k in TEXT_FIELDS):
        return None
    text: dict[str, str | None] = {k: row.get(k) for k in TEXT_FIELDS}
    return Answer(mobile, code, text["Status"], text["Area"], mnp, text["Init_isp"], text["Now_isp"], text["reason"],
                  float(at))  # fmt: skip


_warned: set[tuple[str, str]] = set()


def warn_once(path: Path, message: str) -> None:
    """One warning per file and message in a process, however many loads meet it."""
    if (str(path), message) not in _warned:
        _warned.add((str(path), message))
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def prune_spilled(store: str, numbers: Iterable[str], cutoff: float | None) -> int:
    """Remove from ``store``'s spill files the answers for ``numbers`` and those checked before ``cutoff`` (a
    forget, a retention); how many. Each file is rewritten aside and renamed over (0600), or removed if empty."""
    wanted = pa.array(list(numbers), pa.string())
    removed = 0
    for _, path in spilled(store):
        table, _ = read_journal(path, 0)
        if table is None:
            continue
        drop = forgotten(table, wanted, cutoff)
        gone = int(pc.sum(drop).as_py() or 0)
        if not gone:
            continue
        kept = table.filter(pc.invert(drop))
        if kept.num_rows:
            write_atomically(path, b"".join(Answer(**row).line() for row in kept.to_pylist()), mode=0o600)
        else:
            path.unlink(missing_ok=True)
        removed += gone
    return removed
