"""The one protocol through which runs reach a store of answers, and which store a location means.

A store keeps answers (durable before they are counted), the claims of runs
asking right now, which service answered (and whether it was the simulator),
and the runs' receipts. Two implement it: a directory (:mod:`.checkpoint`,
the embedded default) and PostgreSQL (:mod:`.postgres`, for teams, containers
and clusters). The pipeline, claims, receipts and report know only this
protocol; a third store is one new module and one line in :func:`open_store`.

Example::

    store = open_store("postgresql://etl@db/qxt", service="ps.szqxt.com")
    stored = store.answers(numbers=pa.array(["13972565391"]))
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import pyarrow as pa

from .journal import Answer

__all__ = ["AnswerWriter", "Claimed", "Store", "is_database", "open_store", "shown"]

#: URI schemes that name a PostgreSQL store (any libpq URI).
DATABASE_SCHEMES = ("postgresql://", "postgres://")


class AnswerWriter(Protocol):
    """Where a run's answers go: each durable (or on its way, within a documented bound) before it is counted."""

    name: str  # for the receipt: which writer holds this run's answers

    def append(self, answer: Answer) -> None: ...
    def close(self) -> None: ...


class Claimed(Protocol):
    """The outcome of claiming numbers: what this run may ask, what others answered, whom it waits for."""

    mine: list[str]
    answered: pa.Table | None
    others: dict[Any, tuple[str, list[str]]]

    @property
    def waiting_for(self) -> list[str]: ...
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
    def writer(self) -> AnswerWriter: ...
    def claim(self, numbers: list[str], max_age: float | None) -> Awaitable[Claimed]: ...
    def add_receipt(self, record: dict[str, Any]) -> None: ...
    def runs(self) -> list[dict[str, Any]]: ...
    def tidy(self) -> None: ...
    def close(self) -> None: ...


def is_database(location: str | os.PathLike[str] | None) -> bool:
    """Whether ``location`` names a database (a URI) rather than a directory."""
    return isinstance(location, str) and location.strip().lower().startswith(DATABASE_SCHEMES)


def shown(location: str | os.PathLike[str]) -> str:
    """``location`` as messages show it: a URI's password replaced by ``***``."""
    if not is_database(location):
        return str(location)
    from .postgres import without_password

    return without_password(str(location))


def open_store(location: str | os.PathLike[str], *, service: str, create: bool = True) -> Store:
    """The store at ``location``: a PostgreSQL URI, or a directory. ``create=False`` (reports) refuses one
    that does not exist yet instead of making it."""
    if is_database(location):
        from .postgres import PostgresStore

        return PostgresStore(str(location), service=service, create=create)
    from .checkpoint import Checkpoint

    return Checkpoint(location, service=service)
