"""What a run writes to a PostgreSQL store: its answers in batches, and its claim with the lease it holds.

Split from :mod:`.store` (the store: schema, lookups, claims, receipts) so that each stays readable;
nothing outside the PostgreSQL store uses this module.

Example::

    writer = store.writer(patience=300)
    writer.append(answer)
    await writer.settle()  # committed (or, the store gone past the patience, spilled) before the claim ends
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ...errors import StoreUnavailableError
from .._spill import Spiller
from ..claim import Claim
from ..journal import Answer

__all__ = ["COMMIT_BATCH", "COMMIT_EVERY", "PostgresClaim", "PostgresWriter"]

COMMIT_EVERY = 0.05  # seconds: the most an answer waits for its commit while a run goes on
COMMIT_BATCH = 500  # answers: a batch this large is committed at once
T = TypeVar("T")


class PostgresStore(Protocol):
    """What the writer and the claim use of their store (store.py's ``PostgresStore``, which imports this
    module: a protocol here, so that the two modules import each other in one direction only)."""

    run: str
    lease: float
    fault: StoreUnavailableError | None
    identity: str

    @property
    def location(self) -> str: ...
    def beat(self) -> None: ...
    def confirm(self, held: int) -> bool: ...
    def lease_left(self) -> float: ...
    async def recover(self, then: Callable[[], T]) -> T: ...
    def writer(self, patience: float | None = None) -> PostgresWriter: ...
    def _holds(self, run: str) -> bool: ...
    def _release(self) -> None: ...
    def _upsert(self, rows: list[tuple[Any, ...]]) -> None: ...


class PostgresWriter:
    """Buffers answers and commits them every ``COMMIT_EVERY`` s or ``COMMIT_BATCH`` answers.

    A batch leaves the buffer only once committed. When a commit fails, the batch is spilled
    (fsynced on this machine) at once and so is every answer after it, until the store is back
    (:meth:`PostgresStore.recover`, driven by the claim's lease before the next request) and the
    spill is moved in. A fault that does not pass stops the run: ``append`` raises ``failure``.
    """

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.name = store.run
        self.count = 0
        self._rows: list[tuple[Any, ...]] = []
        self._timer: asyncio.TimerHandle | None = None
        self.failure: StoreUnavailableError | None = None  # set once the run must stop for the store
        self.kept = Spiller(store.identity, store.run)

    def append(self, answer: Answer) -> None:
        self.count += 1
        if self.store.fault is not None:  # the store cannot take it now: kept on this machine at once
            self.kept.keep([answer])
            if self.failure is not None:
                raise self.failure
            return
        if not self._rows:
            self._schedule()
        self._rows.append((*answer.values(), self.name))
        if len(self._rows) >= COMMIT_BATCH:
            self.flush()
            if self.failure is not None:
                raise self.failure

    def _schedule(self) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop (a sync caller): committed on close
            self._timer = asyncio.get_running_loop().call_later(COMMIT_EVERY, self.flush)

    def flush(self) -> None:
        """Commit what is buffered; if the store fails, spill it and remember why (never raises: a timer
        calls this, and the next request's lease, or ``settle``, acts on the fault)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._rows:
            return
        rows, self._rows = self._rows, []
        try:
            self.store._upsert(rows)
        except Exception as exc:
            self.kept.keep([Answer(*row[:-1]) for row in rows])
            fault = exc if isinstance(exc, StoreUnavailableError) else _unavailable(self.store.location, exc, False)
            self.store.fault = fault
            if not fault.transient:
                self.failure = self._failed(fault)

    def _failed(self, fault: StoreUnavailableError) -> StoreUnavailableError:
        """The run's stop: the store's fault, and where the answers it could not take are."""
        failure = StoreUnavailableError(f"{fault.message.split(' Answers already')[0]} The run stopped asking.",
                                        code=fault.code, reason=fault.reason, hint="")  # fmt: skip
        failure.transient = fault.transient
        return failure

    async def settle(self) -> None:
        """Everything appended so far durable in the store before the claims it answers end: committed, or
        (the store back within the patience) moved in from the spill. ``failure`` says what could not be."""
        self.flush()
        if self.store.fault is not None and self.failure is None:
            try:
                await self.store.recover(lambda: None)
            except StoreUnavailableError as exc:
                self.failure = self._failed(exc)

    def outcome(self) -> StoreUnavailableError | None:
        """Why answers paid for are not in the store, and where they are (None: every one is)."""
        return self.kept.outcome(self.failure)

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> PostgresWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PostgresClaim(Claim):
    """A claim in the ``claims`` table; live while its run holds its advisory lock and renews its heartbeat."""

    store: PostgresStore
    _beating: asyncio.TimerHandle | None = None
    lost = False  # another run took over some of its numbers: nothing more is asked under it

    def keep_alive(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._beating = asyncio.get_running_loop().call_later(self.store.lease / 4, self._beat)

    def _beat(self) -> None:
        if self.store.fault is None:
            try:
                self.store.beat()
            except StoreUnavailableError as exc:  # the next request's lease renews, or stops the run
                self.store.fault = exc
            except Exception as exc:  # a timer's failure must not vanish into the loop's log
                self.store.fault = _unavailable(self.store.location, exc, False)
        self.keep_alive()

    def ready(self, horizon: float) -> bool:
        """Whether a request that takes up to ``horizon`` s (at most half the lease) ends before the lease can
        lapse, with the store taking answers."""
        store = self.store
        return not self.lost and store.fault is None and store.lease_left() > min(horizon, store.lease / 2)

    async def settle(self) -> bool:
        """Renew the lease: the store back (within the patience), then every number of this claim still this
        run's (False: another run took some over while the lease was lapsed)."""
        if not self.lost:
            self.lost = not await self.store.recover(lambda: self.store.confirm(len(self.mine)))
        return not self.lost

    def held(self, key: Any) -> bool:
        return self.store._holds(key)

    def release(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            self._beating = None
        if self.mine:
            with contextlib.suppress(StoreUnavailableError):
                self.store._release()
            self.mine = []


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _transient(exc: BaseException, conn: Any) -> bool:
    """Whether a database failure may pass by itself: a lost or refused connection, a restart, a read-only
    moment (a failover, ``default_transaction_read_only``), a conflict. A value or a table it refuses will not."""
    import psycopg

    passing = (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.SerializationFailure,
               psycopg.errors.DeadlockDetected, psycopg.errors.InvalidSqlStatementName)  # fmt: skip
    return isinstance(exc, passing) or bool(getattr(conn, "broken", False))


def _unavailable(location: str, exc: BaseException, transient: bool) -> StoreUnavailableError:
    failure = StoreUnavailableError(
        f"The answer store {location} cannot take answers now: {_first_line(exc)}. "
        "Answers already stored are kept; run again when the database is back."
    )
    failure.transient = transient
    return failure
