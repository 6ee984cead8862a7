"""Receipts: what each run asked, received and was charged, kept in the checkpoint beside the answers.

Every run that asks anything appends two lines to ``receipts.jsonl`` in its
checkpoint: one before its first paid query (when, which service, the fee type
and balance, read for free) and one after its last (answers by code, numbers
paid for, failures, why it stopped, the balance again). The balance's drop is
what the vendor charged; the answers received with code 0 are what it
delivered; ``qxt report`` calls out the difference.

A run whose store cannot take its end line (the disk that filled, the database
that went away: what stopped it) keeps that line on this machine beside its
spilled answers (_spill.py); reports read it from there, and the next run on
the store writes it in. A run killed before its end line leaves only its start. Its journal still
holds every answer it received, so the compaction that folds that journal
appends the end line from it (marked ``recovered``): a crash leaves the record
of what was answered, never a false one.

Example::

    receipt = Receipt.begin(store, journal, balance, to_ask=2_016, simulator=False)
    ...
    receipt.end(run, balance_after, "finished")
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import QxtError
from ..service.protocol import Balance
from ._spill import spill_end, spilled_ends
from .journal import PAID_CODES, warn_once

if TYPE_CHECKING:
    from ..service.engine import EngineResult
    from .protocol import AnswerWriter, Store

__all__ = [
    "RECEIPTS",
    "Receipt",
    "append_receipt",
    "keep_end",
    "merge_runs",
    "pending_ends",
    "read_runs",
    "recover",
    "recovered_end",
    "write_in_ends",
]

RECEIPTS = "receipts.jsonl"


class Receipt:
    """One run's receipt: :meth:`begin` before its first paid query, :meth:`end` after its last."""

    def __init__(self, store: Store, run: str) -> None:
        self.store, self.run = store, run

    @classmethod
    def begin(cls, store: Store, writer: AnswerWriter, balance: Balance, to_ask: int, simulator: bool) -> Receipt:
        receipt = cls(store, f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        store.add_receipt({
            "run": receipt.run, "event": "start", "started": _now(), "host": socket.gethostname(),
            "pid": os.getpid(), "service": store.service, "simulator": simulator, "fee_type": balance.fee_type,
            "balance_before": balance.balance, "to_ask": to_ask, "journal": writer.name,
        })  # fmt: skip
        return receipt

    def end(self, run: EngineResult, balance: Balance | None, stopped: str) -> None:
        """The run's totals (``run`` is the engine's result) and the balance after it, if it could be read."""
        by_code = Counter(str(answer.code) for answer in run.answers)
        failure = run.store_failed  # answers the store could not take: spilled, or only in the results
        self.store.add_receipt({
            "run": self.run, "event": "end", "ended": _now(), "by_code": dict(by_code), "paid": run.paid,
            "failures": len(run.failures), "requests": run.requests, "stopped": stopped,
            "balance_after": None if balance is None else balance.balance, "recovered": False,
            "spilled": getattr(failure, "spilled", 0), "unsaved": getattr(failure, "unsaved", 0),
        })  # fmt: skip


def keep_end(store: str, record: dict[str, Any], problem: str) -> None:
    """An end line the store ``store`` (its identity) could not take, because of ``problem``: kept on this
    machine (read by reports there, written in by the next run), so that the receipt still says what the run
    paid and received."""
    try:
        where = f"it is kept in {spill_end(store, record)} and written in by the next run on this store"
    except OSError as exc:
        where = f"nor could it be kept on this machine ({exc.strerror or exc})"
    warnings.warn(f"{problem}: this run's receipt could not be ended there; {where}.", RuntimeWarning, stacklevel=3)


def pending_ends(store: str) -> list[dict[str, Any]]:
    """Receipt ends of ``store`` kept on this machine, not written in yet: a report reads them with the rest."""
    return [record for _, record in spilled_ends(store)]


def write_in_ends(store: str, add: Callable[[dict[str, Any]], object]) -> None:
    """The receipt ends kept on this machine for ``store``, written in by ``add`` (which raises when it cannot:
    then they stay, for a later run)."""
    for path, record in spilled_ends(store):
        try:
            add(record)
        except (OSError, QxtError):
            return
        path.unlink(missing_ok=True)


def recover(directory: Path, journal: str, answers: pa.Table) -> None:
    """Called when a compaction folds ``journal``: end the receipt of a run that died without its end line."""
    runs = read_runs(directory, warn=False)
    for run in runs:
        if run.get("journal") == journal and "ended" not in run:
            counted = pc.value_counts(answers["code"])
            codes, numbers = counted.field("values").to_pylist(), counted.field("counts").to_pylist()
            counts = {str(code): int(n) for code, n in zip(codes, numbers, strict=True)}
            append_receipt(directory, {"run": run["run"], "event": "end", **recovered_end(counts, "its journal")})


def recovered_end(counts: dict[str, int], source: str) -> dict[str, Any]:
    """The end of the receipt of a run that died without writing it: its answers by code, counted from ``source``."""
    return {
        "ended": None, "recovered": True, "by_code": counts, "failures": None, "requests": None,
        "paid": sum(counts.get(str(code), 0) for code in PAID_CODES), "balance_after": None,
        "stopped": f"the run ended without its record (killed?); its answers were counted from {source}",
    }  # fmt: skip


def read_runs(directory: Path, *, warn: bool = True, more: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every run's receipt, its start and end lines merged, oldest first; ``more`` records (ends kept elsewhere)
    merged last."""
    bad = 0
    try:
        lines = (directory / RECEIPTS).read_bytes().splitlines()
    except FileNotFoundError:
        lines = []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            bad += bool(line.strip())
    merged = merge_runs(records + (more or []))
    bad += sum(1 for r in records if not (isinstance(r, dict) and isinstance(r.get("run"), str)
                                          and all(_typed(k, v) for k, v in r.items())))  # fmt: skip
    if bad and warn:
        warn_once(directory / RECEIPTS, f"{directory / RECEIPTS}: {bad} damaged line(s) skipped.")
    return merged


#: The type each known receipt field must have; a value of another type (a damaged line) is left out.
_TYPES: dict[str, tuple[type, ...]] = {
    "started": (str,), "ended": (str, type(None)), "host": (str,), "pid": (int,), "service": (str,),
    "simulator": (bool,), "fee_type": (str,), "balance_before": (int, type(None)), "to_ask": (int,),
    "journal": (str,), "paid": (int, type(None)), "failures": (int, type(None)), "requests": (int, type(None)),
    "stopped": (str,), "balance_after": (int, type(None)), "recovered": (bool,), "by_code": (dict,),
    "spilled": (int,), "unsaved": (int,),
}  # fmt: skip


def _typed(key: str, value: Any) -> bool:
    kinds = _TYPES.get(key)
    if kinds is None:
        return True
    if isinstance(value, bool) and bool not in kinds:
        return False  # True is an int to Python, not to a receipt
    if key == "by_code":
        return isinstance(value, dict) and all(isinstance(n, int) and not isinstance(n, bool) for n in value.values())
    return isinstance(value, kinds)


def merge_runs(records: list[Any]) -> list[dict[str, Any]]:
    """Receipt records (start and end lines) merged per run, oldest first; malformed records and fields skipped."""
    runs: dict[str, dict[str, Any]] = {}
    for record in records:
        if isinstance(record, dict) and isinstance(record.get("run"), str):
            kept = {k: v for k, v in record.items() if k != "event" and _typed(k, v)}
            runs.setdefault(record["run"], {}).update(kept)
    return sorted(runs.values(), key=lambda run: str(run.get("started", "")))


def append_receipt(directory: Path, record: dict[str, Any]) -> None:
    """One line, one ``os.write`` on an O_APPEND file (runs sharing the checkpoint never interleave), synced."""
    fd = os.open(directory / RECEIPTS, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(record, ensure_ascii=False) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
