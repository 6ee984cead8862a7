"""Answers a store could not take, kept on this machine until a later run on the same store moves them in.

A run whose store fails (a database gone or read-only, a full disk) has
already paid for the answers it holds. They go, fsynced, to a spill file::

    $QXT_SPILL_DIR (default ~/.cache/qxt-pandas/spill)
      answers/                            mode 0700, made by qxt (the directory above may be shared)
        <store identity>-<run>.jsonl      mode 0600, journal lines (journal.py)
        <store identity>-<run>.end.json   mode 0600, the end of the run's receipt, when the store could
                                          not take that either (receipts.py): written in by the next run

The identity names the store, not the text that located it: for PostgreSQL the
cluster's system identifier, the database and the schema (so a re-run through
another spelling of the URI, a password or a pooler still finds them); for a
directory, its device and inode. The run in the name is the run that paid:
moved in, the answers stay its own, in its receipt.

Example::

    spill("pg-6f3a…", "20261205T0410-host-42-ab12cd", [answer])
    for run, path in spilled("pg-6f3a…"):
        ...
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from ..errors import StoreUnavailableError
from ..system.durable import write_atomically


class Answer(Protocol):
    """An answer as a spill keeps it: its journal line (journal.Answer; this module imports no store)."""

    def line(self) -> bytes: ...


__all__ = ["Answer", "Spiller", "identity", "spill", "spill_dir", "spill_end", "spilled", "spilled_ends"]

_NAME = re.compile(r"(?P<identity>[0-9a-f]{16})-(?P<run>[\w.-]+)\.jsonl")
_END = re.compile(r"(?P<identity>[0-9a-f]{16})-(?P<run>[\w.-]+)\.end\.json")


def spill_dir() -> Path:
    """``answers/`` in ``$QXT_SPILL_DIR``, else in ``$XDG_CACHE_HOME/qxt-pandas/spill`` (``~/.cache``)."""
    return _base() / "answers"


def _base() -> Path:
    if os.environ.get("QXT_SPILL_DIR"):
        return Path(os.environ["QXT_SPILL_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qxt-pandas" / "spill"


def identity(*parts: object) -> str:
    """A store's identity from what names it for good (16 hex digits: file names stay short)."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


def spill(store: str, run: str, answers: Iterable[Answer]) -> Path:
    """Append ``answers`` to the spill file of ``run`` on ``store``, fsynced; its path. OSError when the
    spill itself cannot be written (then the answers are only in the caller's memory)."""
    path = _path(store, run)
    _made()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        data = memoryview(b"".join(answer.line() for answer in answers))
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def _made() -> None:
    """``answers/``, private to its user (the spill directory above it may be shared)."""
    spill_dir().parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        spill_dir().mkdir(mode=0o700)


def _path(store: str, run: str) -> Path:
    return spill_dir() / f"{store}-{run}.jsonl"


def spill_end(store: str, record: dict[str, Any]) -> Path:
    """Keep the end of a run's receipt that ``store`` could not take (a full disk, a database gone), fsynced;
    its path. OSError when that cannot be written either."""
    _made()
    path = spill_dir() / f"{store}-{record['run']}.end.json"
    write_atomically(path, json.dumps(record, ensure_ascii=False).encode(), mode=0o600)
    return path


def spilled_ends(store: str) -> list[tuple[Path, dict[str, Any]]]:
    """The receipt ends of ``store`` kept on this machine (see :func:`spill_end`); unreadable files skipped."""
    found = []
    with contextlib.suppress(OSError):
        for name in sorted(os.listdir(spill_dir())):
            if (m := _END.fullmatch(name)) and m["identity"] == store:
                with contextlib.suppress(OSError, ValueError):
                    found.append((spill_dir() / name, json.loads((spill_dir() / name).read_bytes())))
    return [(path, record) for path, record in found if isinstance(record, dict)]


def spilled(store: str) -> list[tuple[str, Path]]:
    """The spill files of ``store`` on this machine: (the run that paid, the file), oldest run first
    (also those that qxt 0.1 left directly in the spill directory)."""
    found = []
    for where in (spill_dir(), _base()):
        with contextlib.suppress(OSError):
            found += [(m["run"], where / name) for name in sorted(os.listdir(where))
                      if (m := _NAME.fullmatch(name)) and m["identity"] == store]  # fmt: skip
    return found


class Spiller:
    """What one run's writer could not put in its store: spilled answers counted, unsaved ones held."""

    def __init__(self, store: str, run: str) -> None:
        self.store, self.run = store, run
        self.spilled = 0  # answers written to the spill file
        self.unsaved: list[Answer] = []  # answers neither stored nor spilled: only in the run's results

    @property
    def path(self) -> Path:
        """This run's spill file (it exists once something was spilled)."""
        return _path(self.store, self.run)

    def keep(self, answers: list[Answer]) -> None:
        """Spill ``answers``; those the spill cannot take either stay in ``unsaved``."""
        try:
            spill(self.store, self.run, answers)
            self.spilled += len(answers)
        except OSError:
            self.unsaved += answers

    def outcome(self, failure: StoreUnavailableError | None) -> StoreUnavailableError | None:
        """``failure`` (why the run stopped for its store) retold with where the answers it could not take are."""
        if failure is None:
            return None
        kept = []
        if self.spilled:
            kept.append(f"{self.spilled:,} answers received meanwhile are kept on this machine in {spill_dir()} and "
                        "are moved into the store by the next run on it, before it pays for anything")  # fmt: skip
        if self.unsaved:
            kept.append(f"{len(self.unsaved):,} answers paid for could be written neither to the store nor to a "
                        "spill file: they are only in this run's results")  # fmt: skip
        told = StoreUnavailableError(" ".join([failure.message, "; ".join(kept) + "."] if kept else [failure.message]),
                                     code=failure.code, hint="")  # fmt: skip
        told.transient, told.spilled, told.unsaved = failure.transient, self.spilled, len(self.unsaved)
        return told
