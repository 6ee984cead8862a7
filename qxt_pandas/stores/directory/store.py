"""The durable store of answers: resume, sharing between processes, compaction.

A checkpoint is a directory::

    runs/crm.qxt/
      meta.json                                format; the service's host; whether it is the simulator
      journal-<time>-<pid>-<id>.jsonl          one per writer: a line per answer, appended
      part-<time>-<id>-<crc32>.parquet         compacted answers; the file's CRC-32 in its name
      claim-<time>-<pid>-<id>.txt              numbers a run is asking right now (see claims.py)
      read.lock  compact.lock  claims.lock  meta.lock   flock files
      damaged/                                 files found damaged: kept for recovery, no longer read

Each answer is one ``os.write`` of one line to the writer's journal, before
the engine counts it as done. That takes microseconds, and the line survives
``kill -9`` of the process, because the kernel holds it; a thread fsyncs the
journal once a second, so a power cut loses at most the last second.
Measured before this design: a long-lived ``ParquetWriter``, or a Parquet
file written in place, was unreadable after ``kill -9`` every time.

A writer holds an ``flock`` on its journal, so a compaction only folds
journals whose writer is gone. The new part is written to a temporary file
and fsynced first; then, holding ``read.lock`` exclusively for milliseconds,
it is renamed into place and the folded files are deleted. Readers list and
read the files holding ``read.lock`` shared, so no reader ever sees the
folded files gone and the new part not yet there (measured before: a load
racing a compaction came up 300-350 answers short of 100k, once all of
them). A crash at any point leaves duplicates, never a gap; on load the
newest answer per number wins. A part whose bytes do not match the CRC-32 in
its name (bit rot: 185 of 300 single-bit flips read back "fine" before) is
treated as unreadable: a warning, its numbers are asked again, and the next
compaction moves it to ``damaged/``.

Example::

    store = Checkpoint("runs/crm.qxt", service="ps.szqxt.com")
    table = store.answers()            # pyarrow.Table, one row per number
    with store.writer() as journal:
        journal.append(answer)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ...errors import CheckpointError, StoreUnavailableError
from ...numbers import positions
from ...system.durable import fsync_dir, write_atomically
from ...system.locks import held_elsewhere, lock, try_lock
from .._spill import identity, spilled
from ..journal import (
    ANSWER_SCHEMA,
    DAMAGED,
    STORED_CODES,
    Answer,
    JournalWriter,
    answers_table,
    forgotten,
    newest_indices,
    newest_per_number,
    prune_spilled,
    read_journal,
    unwritable,
    warn_once,
)
from ..protocol import check_key, refuse_other_kind
from ..receipts import append_receipt, keep_end, pending_ends, read_runs, recover, write_in_ends
from ..tallies import merge_tallies, tally, tally_batches

if TYPE_CHECKING:
    from ..claim import Claim

__all__ = ["ANSWER_SCHEMA", "STORED_CODES", "Answer", "Checkpoint", "answers_table", "refuse_foreign", "unwritable"]

FORMAT = 2


class Checkpoint:
    """A checkpoint directory, bound to one ``service`` (a host name); created only when a run binds it
    (its key and service checked) or writes to it: a plan, or a check that fails before paying, leaves
    no trace.

    Reading is incremental: :meth:`answers` reads everything, :meth:`refresh` only what other
    writers stored since (new parts, and the new lines of journals).
    """

    def __init__(self, path: str | os.PathLike[str], *, service: str, key: object = None) -> None:
        self.path = Path(path)
        self.service = service
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"{self.path} is a file; a checkpoint is a directory. Choose another path.")
        refuse_foreign(self.path)
        self._key = key
        self._made = (self.path / "meta.json").exists()
        self._meta = self._read_meta() if self._made else self._new_meta()
        check_key(str(self.path), self._meta.get("key"), key)
        self._seen: dict[str, int] = {}  # file name -> bytes consumed (journals) or -1 (parts)
        self._unmoved: list[pa.Table] = []  # spilled answers the disk could not take yet: read as stored
        self._watched: dict[Path, tuple[int, bool]] = {}  # live journals busy() read: (bytes read, holds a number)
        if self._made:
            self._move_spilled()

    @property
    def identity(self) -> str:
        """The directory itself, however a path spells it (for spill files); it must exist."""
        stat = self.path.stat()
        return identity("directory", stat.st_dev, stat.st_ino)

    def _new_meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "service": self.service, "simulator": None,
                "key": self._key if isinstance(self._key, str) else None}  # fmt: skip

    def _exists(self) -> bool:
        """Whether the checkpoint exists now (another process may have made it since this one opened it)."""
        if not self._made and (self.path / "meta.json").exists():
            self._meta, self._made = self._read_meta(), True
        return self._made

    def create(self) -> None:
        """Make the directory and its meta.json, now that a run writes here (another process may race)."""
        if self._made:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(f"Cannot use {self.path} as a checkpoint: {exc.strerror}.") from None
        refuse_foreign(self.path)
        self._meta = self._read_meta()
        check_key(str(self.path), self._meta.get("key"), self._key)
        self._made = True

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r}, service={self.service!r})"

    @property
    def location(self) -> str:
        return str(self.path)

    def close(self) -> None:
        """Nothing to close: every file is opened and closed by the operation that uses it."""

    # -- which service's answers -----------------------------------------------

    def _read_meta(self) -> dict[str, Any]:
        meta_path = self.path / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            meta = self._new_meta()
            try:
                self._write_meta(meta, exclusive=True)
                return meta
            except FileExistsError:  # another process created it first: use what it wrote
                return self._read_meta()
        except (OSError, ValueError):
            meta = None
        if not isinstance(meta, dict) or not isinstance(meta.get("service"), str):
            raise CheckpointError(
                f"{meta_path} is damaged. If {self.path} is a qxt checkpoint, restore meta.json from a "
                "backup or delete it (the answers themselves are in the other files and are kept)."
            )
        if meta["service"] != self.service:
            raise CheckpointError(
                f"The checkpoint {self.path} holds answers from {meta['service']!r}, not from "
                f"{self.service!r}. Use another checkpoint path for this service (answers from a simulator "
                "and from the real vendor must not be mixed)."
            )
        if not isinstance(meta.get("format", 1), int) or meta.get("format", 1) > FORMAT:
            raise CheckpointError(f"{self.path} was written by a newer qxt-pandas; upgrade to read it.")
        return meta

    def _write_meta(self, meta: dict[str, Any], *, exclusive: bool = False) -> None:
        try:
            write_atomically(self.path / "meta.json", json.dumps(meta).encode(), exclusive=exclusive)
        except FileExistsError:
            raise
        except OSError as exc:
            raise unwritable(self.path, exc) from None

    @property
    def simulator(self) -> bool | None:
        """Whether the answers came from the bundled simulator (None: not known yet)."""
        value = self._meta.get("simulator")
        return value if isinstance(value, bool) else None

    def bind(self, simulator: bool) -> None:
        """Record which kind of service answers here, or refuse one of the other kind.

        The host alone cannot tell: a simulator and an SSH tunnel to the vendor are both 127.0.0.1.
        """
        self.create()
        if self.simulator is None:  # bound already: nothing to write (a read-only checkpoint re-runs)
            try:
                with lock(self.path / "meta.lock"):  # two first runs at once: one binds, the other sees it
                    self._meta = self._read_meta()
                    if self.simulator is None:
                        self._meta = {**self._meta, "format": FORMAT, "simulator": simulator}
                        self._write_meta(self._meta)
            except OSError as exc:  # another user's checkpoint: said before anything is paid, exit 2
                raise unwritable(self.path, exc) from None
        refuse_other_kind(f"checkpoint {self.path}", self.service, self.simulator, simulator,
                          "use another checkpoint path.")  # fmt: skip

    # -- reading ---------------------------------------------------------------

    def answers(self, max_age: float | None = None, numbers: pa.Array | None = None) -> pa.Table:
        """Every stored answer, one per number (the newest), optionally only those younger than ``max_age`` s
        and only for ``numbers`` (a directory is read whole either way)."""
        self._seen = {}
        table = self._read(max_age, whole=True)
        if numbers is None:
            return table
        wanted = pc.is_valid(positions(table["mobile"], numbers))
        return table if pc.all(wanted).as_py() is not False else table.filter(wanted)  # all wanted: no copy

    async def claim(self, numbers: list[str], max_age: float | None) -> Claim:
        """Claim those of ``numbers`` nobody answered since :meth:`answers` and nobody is asking (claims.py)."""
        from .claims import claim_numbers

        return await claim_numbers(self, numbers, max_age)

    def add_receipt(self, record: dict[str, Any]) -> None:
        """Append one line to the receipts (see receipts.py). A start that cannot be written stops the run
        before it pays; an end that cannot (a full disk) is a warning: the run's own error tells the rest."""
        try:
            self.create()
            append_receipt(self.path, record)
        except OSError as exc:
            if record.get("event") == "start":
                raise unwritable(self.path, exc) from None
            keep_end(self.identity, record, unwritable(self.path, exc).message)

    def runs(self) -> list[dict[str, Any]]:
        """Every run's receipt, oldest first (with the ends kept on this machine that are not written in yet)."""
        return read_runs(self.path, more=pending_ends(self.identity) if self._exists() else [])

    def refresh(self, max_age: float | None = None) -> pa.Table:
        """Answers stored since the last :meth:`answers`/:meth:`refresh` of this object (one per number)."""
        return self._read(max_age, whole=False)

    def _read(self, max_age: float | None, whole: bool) -> pa.Table:
        """What :meth:`refresh` reads; ``whole`` (a first read, from nothing seen) adds the spilled answers
        not moved in yet."""
        tables: list[pa.Table | None] = []
        if not self._exists():
            return ANSWER_SCHEMA.empty_table()
        with lock(self.path / "read.lock", shared=True):  # no compaction swaps files while we list and read
            names = sorted(os.listdir(self.path))
            for name in names:
                if _OWN["part"].fullmatch(name) and name not in self._seen:
                    tables.append(self._read_part(self.path / name))
                    self._seen[name] = -1
                elif _OWN["journal"].fullmatch(name):
                    table, self._seen[name] = read_journal(self.path / name, self._seen.get(name, 0))
                    tables.append(table)
            self._seen = {name: seen for name, seen in self._seen.items() if name in names}
        if whole:
            tables += self._unmoved
        found = [t for t in tables if t is not None and t.num_rows]
        if not found:
            return ANSWER_SCHEMA.empty_table()
        # A lone compacted part is already one row per number; anything else may repeat numbers.
        lone_part = len(found) == 1 and len(tables) == 1 and all(v == -1 for v in self._seen.values())
        table = found[0] if lone_part else newest_per_number(pa.concat_tables(found))
        if max_age is not None:
            table = table.filter(pc.greater_equal(table["checked_at"], time.time() - max_age))
        return table

    def batches(self, size: int = 100_000) -> Iterator[pa.Table]:
        """Every stored answer, ``size`` at a time (parts by row group, journals a slice at a time): memory
        flat in the store's size. A number may come more than once, older answers too: the newest wins
        wherever they go. Compactions wait meanwhile (the read lock is held)."""
        if not self._exists():
            return
        with lock(self.path / "read.lock", shared=True):
            for part in self.files("part"):
                whole = self._read_part(part, lazily=True)
                if whole is not None:
                    for batch in whole.iter_batches(size, use_threads=False):  # a row group decoded at a time
                        yield pa.Table.from_batches([batch]).cast(ANSWER_SCHEMA)
            for journal in self.files("journal"):
                table, _ = read_journal(journal, 0)
                if table is not None:
                    for start in range(0, table.num_rows, size):
                        yield table.slice(start, size)
        yield from self._unmoved

    def tallies(self) -> pa.Table:
        """Every answer's counts for a report (tallies.py), a batch at a time: no answer's text is held. A store
        that is one compacted part (one row per number) is counted batch by batch, keeping nothing per answer."""
        if self._exists():
            with lock(self.path / "read.lock", shared=True):
                parts = self.files("part")
                whole = self._read_part(parts[0], lazily=True) if len(parts) == 1 else None
                if whole is not None and not self.files("journal") and not self._unmoved:
                    schema = pa.schema([ANSWER_SCHEMA.field(name) for name in _TALLIED])
                    batches = whole.iter_batches(65_536, columns=_TALLIED, use_threads=False)
                    return merge_tallies(tally(pa.Table.from_batches([b]).cast(schema)) for b in batches)
        return tally_batches(self.batches())

    def busy(self, numbers: list[str]) -> tuple[int, int]:
        """Live runs here: (those claiming one of ``numbers`` or holding an answer for one in a journal still
        open, all others). A forget waits for the first, and cannot speak for the second."""
        from .claims import claimed_by

        if not self._exists():
            return 0, 0
        wanted = pa.array(numbers, pa.string())
        holding = others = 0
        for claim in (c for c in self.files("claim") if held_elsewhere(c)):
            touches = bool(set(claimed_by(claim)) & set(numbers))
            holding, others = holding + touches, others + (not touches)
        for journal in (j for j in self.files("journal") if held_elsewhere(j)):
            offset, touched = self._watched.get(journal, (0, False))  # read on: a forget asks again and again
            table, offset = read_journal(journal, offset)
            found = table is not None and bool(pc.any(pc.is_in(table["mobile"], value_set=wanted)).as_py())
            touches = touched or found
            self._watched[journal] = (offset, touches)
            holding, others = holding + touches, others + (not touches)
        return holding, others

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint of the store key its numbers are hashed with (None: numbers in clear)."""
        value = self._meta.get("key")
        return value if isinstance(value, str) else None

    def _read_part(self, path: Path, *, lazily: bool = False) -> Any:
        try:
            data = path.read_bytes()
            expected = _part_crc(path.name)
            if expected is not None and zlib.crc32(data) != expected:
                raise ValueError("its bytes do not match the checksum in its name (damaged on disk)")
            if lazily:  # a ParquetFile, read a row group at a time by the caller
                return pq.ParquetFile(pa.BufferReader(data))
            return pq.read_table(pa.BufferReader(data), schema=ANSWER_SCHEMA)
        except FileNotFoundError:
            return None  # only without flock (Windows): compacted away while listed
        except (OSError, ValueError, pa.ArrowException) as exc:
            warn_once(path, f"Checkpoint file {path} cannot be used ({exc}); it is kept, and the numbers only it "
                             "held will be asked again.")  # fmt: skip
            return None

    def files(self, kind: str) -> list[Path]:
        """This store's own files of one ``kind`` (``part``, ``journal``, ``claim``, ``tmp``), sorted.

        Only names this project writes match: a file someone else put here is never read,
        folded, moved or deleted.
        """
        with contextlib.suppress(FileNotFoundError):
            return sorted(self.path / n for n in os.listdir(self.path) if _OWN[kind].fullmatch(n))
        return []

    # -- writing ---------------------------------------------------------------

    def writer(self, patience: float | None = None) -> JournalWriter:
        """A new journal for this process's answers (use as a context manager); the file appears on first answer.
        A directory this process may not write to (another user's) is refused here, before anything is paid."""
        self.create()
        probe = self.path / f".tmp-{uuid.uuid4().hex}-part"  # named as our temporary files: a leftover is swept
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            raise unwritable(self.path, exc) from None
        with contextlib.suppress(FileNotFoundError):  # another run's compaction may have swept it meanwhile
            probe.unlink()
        return JournalWriter(self.path, store=self.identity)

    def _move_spilled(self) -> None:
        """Answers a run spilled on this machine when this checkpoint's disk failed: moved into a journal of
        their own, then their files removed; while the disk still fails, read as stored (never paid again). Receipt
        ends kept on this machine are written in first."""
        write_in_ends(self.identity, lambda record: append_receipt(self.path, record))
        for _, path in spilled(self.identity):
            table, _ = read_journal(path, 0)
            if table is None or not table.num_rows:
                path.unlink(missing_ok=True)
                continue
            journal = self.writer()
            try:
                with journal:
                    for row in table.to_pylist():
                        journal.append(Answer(**row))
            except StoreUnavailableError:  # the spill stays whole: this try's journal and its own spill go
                journal.kept.path.unlink(missing_ok=True)
                journal.path.unlink(missing_ok=True)
                self._unmoved.append(table)
                warn_once(path, f"{table.num_rows:,} answers spilled on this machine ({path}) cannot be moved into "
                                f"{self.path} yet; they are used, not paid for again.")  # fmt: skip
                continue
            path.unlink(missing_ok=True)

    def sweep(self) -> None:
        """Delete empty journals that killed runs left (a writer's file is locked from birth, so never one in use)."""
        for journal in self.files("journal"):
            with contextlib.suppress(FileNotFoundError):
                if journal.stat().st_size == 0 and not held_elsewhere(journal):
                    journal.unlink(missing_ok=True)

    def tidy(self, retention: float | None = None) -> int:
        """Forget answers older than ``retention`` s, if given (how many numbers lost theirs); compact when it
        pays: 8+ closed journals, or journals a tenth the size of the parts."""
        if not self._exists():
            return 0
        expired = self.forget(older_than=retention) if retention is not None else 0
        if expired:
            return expired  # forgetting compacted everything closed
        journals = [j.stat().st_size for j in self.files("journal")]
        parts = sum(p.stat().st_size for p in self.files("part"))
        if len(journals) >= 8 or sum(journals) * 10 >= parts:
            self.compact()
        return 0

    def forget(
        self, numbers: list[str] | None = None, older_than: float | None = None, *, dry_run: bool = False
    ) -> int:
        """Remove for good every stored answer for ``numbers`` and/or older than ``older_than`` s; how many numbers.

        Like a compaction (and under its lock): the parts and closed journals are folded into one new
        part without those answers, and the old files, claims of gone runs and ``damaged/`` (which may
        hold them) are deleted. A run still going keeps its journal: its matching answers are counted
        in a warning, to forget again when it ends.
        """
        if not self._exists():
            return 0
        wanted = pa.array(numbers or [], pa.string())
        cutoff = None if older_than is None else time.time() - older_than
        if not dry_run:  # spilled answers not yet moved in (a disk still full) are forgotten too
            prune_spilled(self.identity, numbers or [], cutoff)
            kept = (t.filter(pc.invert(forgotten(t, wanted, cutoff))) for t in self._unmoved)
            self._unmoved = [t for t in kept if t.num_rows]
        with lock(self.path / "compact.lock"):
            journals = self.files("journal")
            closed = [j for j in journals if not held_elsewhere(j)]
            read = self._read_folded(closed, recover_receipts=not dry_run)
            tables = [t for _, t in read if t is not None]
            history = pa.concat_tables(tables) if tables else ANSWER_SCHEMA.empty_table()
            keep = history.filter(pc.invert(forgotten(history, wanted, cutoff)))
            gone = _distinct(history) - _distinct(keep)
            live = [t for j in journals if j not in closed and (t := read_journal(j, 0)[0]) is not None]
            going = sum(int(pc.sum(pc.is_in(t["mobile"], value_set=wanted)).as_py() or 0) for t in live)
            if dry_run or (keep.num_rows == history.num_rows and not (self.path / "damaged").exists()):
                return gone
            written = self._write_part(keep) if keep.num_rows else None
            with lock(self.path / "read.lock"):
                if written is not None:
                    os.replace(written[1], self.path / written[0])
                for f, _ in read:
                    f.unlink(missing_ok=True)
                for claim in self.files("claim"):
                    if not held_elsewhere(claim):
                        claim.unlink(missing_ok=True)
                if (self.path / "damaged").is_dir():
                    for f in (self.path / "damaged").iterdir():
                        f.unlink(missing_ok=True)
                    (self.path / "damaged").rmdir()
                fsync_dir(self.path)
        if going:
            warn_once(self.path, f"{going:,} answer(s) to forget are in the journal of a run still going on "
                                 f"{self.path}; forget again when it has ended.")  # fmt: skip
        return gone

    def compact(self) -> bool:
        """Fold journals whose writers are gone, and all parts, into one part; True when done.

        Skipped (False) when another process is compacting or no journal is closed.
        """
        if not self._exists():
            return False
        with try_lock(self.path / "compact.lock") as locked:
            if not locked:
                return False
            for stale in self.files("tmp"):  # left by a compaction that was killed
                stale.unlink(missing_ok=True)
            journals = [j for j in self.files("journal") if not held_elsewhere(j)]
            if not journals:
                return False
            read = self._read_folded(journals)
            folded = [(f, t) for f, t in read if t is not None]
            name, tmp = self._write_part(pa.concat_tables([t for _, t in folded]))
            damaged = [f for f, t in read if t is None and f.exists()] + [f for f, _ in folded if f in DAMAGED]
            with lock(self.path / "read.lock"):  # readers see the old files or the new part, never neither
                os.replace(tmp, self.path / name)
                for f, _ in folded:
                    if f not in damaged:
                        f.unlink(missing_ok=True)
                for f in damaged:
                    _set_aside(f)
                fsync_dir(self.path)
            return True

    def _read_folded(
        self, journals: list[Path], *, recover_receipts: bool = True
    ) -> list[tuple[Path, pa.Table | None]]:
        """Every part and the closed ``journals``, read (None: unreadable), for a fold; the receipt of a run
        killed before its end is ended from its journal, which the fold removes."""
        parts = self.files("part")
        read = [(f, self._read_part(f)) for f in parts] + [(j, read_journal(j, 0)[0]) for j in journals]
        for journal, table in read[len(parts) :] if recover_receipts else []:
            if table is not None:
                recover(self.path, journal.name, table)
        return read

    def _write_part(self, everything: pa.Table) -> tuple[str, Path]:
        """The newest answer per number, written to a temporary part in slices; (its name, the temporary path).

        The history is in memory once; the answers kept are copied a slice at a time, never whole.
        """
        keep = newest_indices(everything)
        tmp = self.path / f".tmp-{uuid.uuid4().hex}-part"
        with pq.ParquetWriter(tmp, ANSWER_SCHEMA, compression="zstd") as out:
            for start in range(0, max(len(keep), 1), _SLICE):
                out.write_table(everything.take(keep[start : start + _SLICE]))
        data = tmp.read_bytes()  # compressed: a few bytes an answer
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        return f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}-{zlib.crc32(data):08x}.parquet", tmp


_SLICE = 1 << 18  # rows a compaction copies at a time
#: The names this project writes in a checkpoint (``<time>-<pid>-<id>``; parts end in their CRC-32).
_TALLIED = ["code", "Status", "Area", "Is_MNP", "Now_isp"]  # what a report counts by (tallies.py)
_OWN = {
    "part": re.compile(r"part-\d+-\w+(?:-[0-9a-f]{8})?\.parquet"),
    "journal": re.compile(r"journal-\d+-\d+-\w+\.jsonl"),
    "claim": re.compile(r"claim-\d+-\d+-\w+\.txt"),
    "tmp": re.compile(r"\.tmp-[0-9a-f]{32}-part"),
}
#: What else a checkpoint directory may hold: its meta, lock files, the damaged/ folder, a
#: receipts file, a file being replaced atomically; anything beyond this and no meta.json is not ours.
_KNOWN = re.compile(r"meta\.json|\w+\.lock|damaged|receipts\.jsonl|\.tmp-.*")


def refuse_foreign(path: Path) -> None:
    """Refuse a directory that is not empty and holds no checkpoint: its files are someone else's."""
    if (path / "meta.json").exists() or not path.is_dir():
        return
    try:
        theirs = sorted(n for n in os.listdir(path) if not (_KNOWN.fullmatch(n) or any(
            r.fullmatch(n) for r in _OWN.values())))  # fmt: skip
    except OSError:
        return
    if theirs:
        shown = ", ".join(theirs[:3]) + (f" and {len(theirs) - 3} more" if len(theirs) > 3 else "")
        raise CheckpointError(
            f"{path} is not a qxt checkpoint (it has no meta.json) and is not empty: it holds {shown}. "
            "Nothing was read, asked or touched. Pass a new or empty directory (e.g. runs/crm.qxt) as "
            "the checkpoint.",
        )


def _distinct(table: pa.Table) -> int:
    return int(pc.count_distinct(table["mobile"]).as_py()) if table.num_rows else 0


def _part_crc(name: str) -> int | None:
    """The CRC-32 recorded in a part's name (``None`` for parts written before checksums)."""
    pieces = name.removesuffix(".parquet").split("-")
    try:
        return int(pieces[3], 16) if len(pieces) == 4 and len(pieces[3]) == 8 else None
    except ValueError:
        return None


def _set_aside(path: Path) -> None:
    """Move a damaged file into ``damaged/``: kept for recovery, no longer read or warned about."""
    aside = path.parent / "damaged"
    aside.mkdir(exist_ok=True)
    os.replace(path, aside / path.name)
    DAMAGED.discard(path)
    warn_once(path, f"Checkpoint file {path.name} was damaged: moved to {aside} (kept for recovery, no longer read).")
