"""Moving answers between stores: a laptop's directory to the team's PostgreSQL, and back, without paying again.

Every answer travels with its time; the destination is bound to the source's service and kind
(a simulator's answers never reach a store of the vendor's, and the other way round: refused before
anything is written), and the source's receipts follow. An answer the destination holds already, as
new or newer, is not written again, so copying twice adds nothing. Answers stream a batch at a time:
memory stays flat in the size of the store. Plain to keyed hashes the numbers on the way (with the
store key); keyed to keyed needs the same key on both sides; keyed to plain is refused (a hash cannot
be turned back into a number).

Example::

    copied = qxt_pandas.copy_answers("runs/crm.qxt", "postgresql://etl@db/qxt")
    copied.answers, copied.already, copied.receipts
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CheckpointError
from ..options import store_key as checked_key
from ..service._secret import Secret
from . import open_existing, open_store, shown
from .journal import Answer
from .keyed import KeyedStore, fingerprint
from .protocol import ANY_KEY, Store

__all__ = ["Copied", "copy_answers"]

BATCH = 10_000


@dataclass(frozen=True)
class Copied:
    """What a copy did: answers written, answers the destination held already (as new or newer), receipts."""

    answers: int
    already: int
    receipts: int

    def __str__(self) -> str:
        return (f"{self.answers:,} {_plural(self.answers, 'answer')} copied ({self.already:,} were there already, "
                f"as new or newer) and {self.receipts:,} {_plural(self.receipts, 'receipt')}")  # fmt: skip


def copy_answers(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    store_key: Secret | str | None = None,
    batch: int = BATCH,
) -> Copied:
    """Copy every answer and receipt of the store ``source`` into ``destination`` (made if need be).

    ``store_key`` (default ``$QXT_STORE_KEY``): with a plain source, the destination keeps numbers only
    as hashes with it; with a keyed source, it must be the source's key (and the destination's).

    Example::

        copy_answers("runs/crm.qxt", "postgresql://etl@db/qxt")   # then a check there pays nothing
    """
    secret = checked_key(store_key)
    src = open_existing(source, key=ANY_KEY)
    try:
        hashed = src.fingerprint is not None
        if hashed and (secret is None or fingerprint(secret) != src.fingerprint):
            raise CheckpointError(
                f"{shown(source)} holds numbers only as keyed hashes: copying it needs its own store key "
                "(--store-key-file or $QXT_STORE_KEY), and the destination keeps them with that key. Nothing "
                "was copied." if secret is None else f"The store key given is not the one {shown(source)} was "
                "made with (its fingerprint differs). Nothing was copied.",
            )  # fmt: skip
        dst = open_store(destination, service=src.service, key=secret)
        try:
            if _identity(src) is not None and _identity(src) == _identity(dst):
                raise CheckpointError(f"{shown(source)} and {shown(destination)} are one store. Nothing was copied.")
            if src.simulator is not None:
                dst.bind(src.simulator)  # another service or kind: refused here, before anything is written
            target = dst.inner if hashed and isinstance(dst, KeyedStore) else dst  # hashes go as they are
            copied = _answers(src, target, batch)
            receipts = _receipts(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
    return Copied(copied[0], copied[1], receipts)


def _identity(store: Store) -> str | None:
    """What names ``store`` for good (see _spill.identity); None when it cannot tell (it is not made yet)."""
    inner = store.inner if isinstance(store, KeyedStore) else store
    try:
        return str(inner.identity)
    except (AttributeError, OSError):
        return None


def _answers(src: Store, dst: Store, batch: int) -> tuple[int, int]:
    """Each batch of ``src``'s answers less those ``dst`` holds as new or newer, written to ``dst``."""
    fresh = next(iter(dst.batches(1)), None) is None  # an empty destination: nothing there to compare with
    writer = dst.writer()
    written = already = 0
    try:
        for table in src.batches(batch):
            held = table.schema.empty_table() if fresh else dst.answers(numbers=table["mobile"])
            newer = _newer(table, held)
            already += table.num_rows - newer.num_rows
            for row in newer.to_pylist():
                writer.append(Answer(**row))
            written += newer.num_rows
    finally:
        writer.close()
    failure = writer.outcome()
    if failure is not None:
        raise failure
    return written, already


def _newer(table: pa.Table, held: pa.Table) -> pa.Table:
    """The rows of ``table`` that ``held`` has no answer for, or only an older one."""
    if held.num_rows == 0:
        return table
    at = pc.index_in(table["mobile"], value_set=held["mobile"])
    theirs = pc.take(held["checked_at"], at)
    return table.filter(pc.or_(pc.is_null(at), pc.greater(table["checked_at"], pc.fill_null(theirs, 0.0))))


def _receipts(src: Store, dst: Store) -> int:
    """The source's receipts the destination lacks (by run), each as one record."""
    there = {run.get("run") for run in dst.runs()}
    added = 0
    for run in src.runs():
        if run.get("run") not in there:
            dst.add_receipt({**run, "copied_from": src.location})
            added += 1
    return added


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"
