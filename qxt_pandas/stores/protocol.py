"""The one protocol through which runs reach a store of answers: what a store does, and nothing of how.

A store keeps answers (durable before they are counted), the claims of runs
asking right now, which service answered (and whether it was the simulator),
and the runs' receipts. Two implement it: a directory
(:mod:`.directory.store`, the embedded default) and PostgreSQL
(:mod:`.postgres.store`, for teams, containers and clusters). The pipeline,
claims, receipts and report know only this protocol; a third store is one new
module and one line in :func:`qxt_pandas.stores.open_store`. This module
imports no implementation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import pyarrow as pa

from ..errors import CheckpointError, StoreUnavailableError
from ..service.answers import Answer

__all__ = ["ANY_KEY", "DATABASE_SCHEMES", "AnswerWriter", "Claimed", "Store", "check_key", "refuse_other_kind"]

#: URI schemes that name a PostgreSQL store (any libpq URI).
DATABASE_SCHEMES = ("postgresql://", "postgres://")


class AnswerWriter(Protocol):
    """Where a run's answers go: each durable (or on its way, within a documented bound) before it is counted.

    ``append`` never loses an answer: what the store cannot take is spilled on this machine (moved in
    by the next run), or kept in ``unsaved``; it raises (and the run stops asking) once the store
    has failed for good. ``settle`` makes everything appended durable in the store, as far as it
    can, before the claims it answers end; ``outcome`` is then the truth: None, or why answers paid
    for are not in the store and where they are.
    """

    name: str  # for the receipt: which writer holds this run's answers

    def append(self, answer: Answer) -> None: ...
    async def settle(self) -> None: ...
    def outcome(self) -> StoreUnavailableError | None: ...
    def close(self) -> None: ...


class Claimed(Protocol):
    """The outcome of claiming numbers: what this run may ask, what others answered, whom it waits for."""

    mine: list[str]
    answered: pa.Table | None
    others: dict[Any, tuple[str, list[str]]]

    @property
    def waiting_for(self) -> list[str]: ...
    def ready(self, horizon: float) -> bool: ...
    async def settle(self) -> bool: ...
    def release(self) -> None: ...
    def wait(self, say: Callable[[str], None], patience: float) -> Awaitable[float | None]: ...


class Store(Protocol):
    """A store of answers bound to one ``service`` (a host name)."""

    service: str

    @property
    def location(self) -> str:
        """Where it is, for messages: a path, or a URI without its password."""
        ...

    @property
    def simulator(self) -> bool | None: ...
    def bind(self, simulator: bool) -> None: ...
    def answers(self, max_age: float | None = None, numbers: pa.Array | None = None) -> pa.Table: ...
    def batches(self, size: int = 100_000) -> Iterator[pa.Table]:
        """Every stored answer, ``size`` at a time, in memory flat in the store's size (copying a store)."""
        ...

    def tallies(self) -> pa.Table:
        """The newest answer per number counted by code, Status, carrier, province and ported (tallies.py):
        what a report shows, counted where the answers are."""
        ...

    @property
    def fingerprint(self) -> str | None: ...
    @property
    def identity(self) -> str:
        """What names the store for good, whatever spelling of its location (spill files, copies)."""
        ...

    def writer(self, patience: float | None = None) -> AnswerWriter: ...
    def claim(self, numbers: list[str], max_age: float | None) -> Awaitable[Claimed]: ...
    def add_receipt(self, record: dict[str, Any]) -> None: ...
    def runs(self) -> list[dict[str, Any]]: ...
    def tidy(self, retention: float | None = None) -> int:
        """Remove answers older than ``retention`` s (how many numbers lost theirs), and what gone runs left."""
        ...

    def busy(self, numbers: list[str]) -> tuple[int, int]:
        """Live runs: (those that may still store an answer for one of ``numbers``, all others)."""
        ...

    def forget(
        self, numbers: list[str] | None = None, older_than: float | None = None, *, dry_run: bool = False
    ) -> int:
        """Remove answers for good (by number, or older than ``older_than`` s); how many."""
        ...

    def close(self) -> None: ...


#: ``key=`` for a caller that reads only counts (a report, forgetting by age): any key, or none, will do.
ANY_KEY = object()


def refuse_other_kind(where: str, service: str, stored: bool | None, simulator: bool, instead: str) -> None:
    """Refuse a store bound to the other kind of service (the simulator, or the vendor): answers never cross."""
    if stored is None or stored == simulator:
        return
    held, now = ("simulated", "the real service") if stored else ("real", "the bundled simulator")
    raise CheckpointError(f"The {where} holds {held} answers, but the service at {service} is {now}. Answers never "
                          f"cross between the simulator and the vendor: {instead}")  # fmt: skip


def check_key(location: str, recorded: str | None, given: object) -> None:
    """Refuse a store key that is not the store's (another, none, or one for a plain store): before paying."""
    if given is ANY_KEY or recorded == given:
        return
    if recorded is None:
        raise CheckpointError(f"{location} was made without a store key: it holds numbers in clear, so a store key "
                              "cannot apply to it. Drop the key, or use a new store for keyed answers. Nothing "
                              "was read, written or paid for.")  # fmt: skip
    if given is None:
        raise CheckpointError(f"{location} holds numbers only as keyed hashes: pass its store key (store_key=, "
                              "$QXT_STORE_KEY or --store-key-file). Without it every answer would be paid for "
                              "again. Nothing was read, written or paid for.")  # fmt: skip
    raise CheckpointError(f"{location} was made with another store key (its fingerprint differs). With this one "
                          "no stored answer can be found, and every number would be paid for again. Pass the "
                          "store's own key. Nothing was read, written or paid for.")  # fmt: skip
