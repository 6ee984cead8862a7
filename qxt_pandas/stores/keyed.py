"""Stores that never hold a number: each one kept only as a keyed hash.

A number is personal information, and an unkeyed hash of one is no
protection: China's ~500k seven-digit blocks make about 5 billion possible
numbers, enumerated in hours. With a *store key* (``store_key=``,
``$QXT_STORE_KEY``, ``--store-key-file``) a store keeps each number as keyed
BLAKE2b of it (32 hex characters), so the store alone reveals nothing; runs
join their rows to answers through the same hash. :class:`KeyedStore` wraps
either store, so the directory and PostgreSQL share this one implementation.

The store records a fingerprint of its key (a keyed digest of a constant,
never the key): another key, no key, or a key for a plain store is refused
before anything is paid.

Example::

    store = KeyedStore(open_store("runs/crm.qxt", service=host, key=fingerprint(key)), key)
    store.answers(numbers=pa.array(["13972565391"]))  # looked up by hash; "mobile" comes back in clear
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..service._secret import Secret
from .journal import Answer

__all__ = ["KeyedStore", "fingerprint", "hashed"]

_PERSON = b"qxt-number"  # BLAKE2b personalisation: these digests are of numbers, and of nothing else


def _key_bytes(key: Secret) -> bytes:
    return hashlib.sha256(key.reveal().encode()).digest()


def fingerprint(key: Secret | None) -> str | None:
    """What a store records of its key: enough to tell keys apart, useless for hashing numbers."""
    if key is None:
        return None
    return "blake2b:" + hashlib.blake2b(b"qxt-store-key-fingerprint", key=_key_bytes(key), digest_size=8).hexdigest()


def hashed(key: Secret) -> Callable[[str], str]:
    """The keyed hash of one number (32 hex characters)."""
    secret = _key_bytes(key)

    def digest(mobile: str) -> str:
        return hashlib.blake2b(mobile.encode(), key=secret, digest_size=16, person=_PERSON).hexdigest()

    return digest


class KeyedStore:
    """A store (the :class:`~qxt_pandas.stores.protocol.Store` protocol) whose numbers are keyed hashes; callers
    see numbers."""

    def __init__(self, inner: Any, key: Secret) -> None:
        self.inner = inner
        self._hash = hashed(key)
        self._clear: dict[str, str] = {}  # hash -> number, for the numbers this run has seen

    def __repr__(self) -> str:
        return f"KeyedStore({self.inner!r})"

    def __getattr__(self, name: str) -> Any:  # service, location, simulator, bind, add_receipt, runs, tidy, close
        return getattr(self.inner, name)

    def hashes(self, numbers: list[str]) -> list[str]:
        out = []
        for mobile in numbers:
            digest = self._hash(mobile)
            self._clear[digest] = mobile
            out.append(digest)
        return out

    def _in_clear(self, table: pa.Table | None) -> pa.Table | None:
        """``table`` with each hashed ``mobile`` back as the number (rows of numbers this run never saw dropped)."""
        if table is None or table.num_rows == 0:
            return table
        digests = table["mobile"].to_pylist()
        clear = pa.array([self._clear.get(d) for d in digests], pa.string())
        return table.set_column(0, "mobile", clear).filter(pc.is_valid(clear))

    def answers(self, max_age: float | None = None, numbers: pa.Array | None = None) -> pa.Table:
        if numbers is None:
            return self.inner.answers(max_age)  # hashes: counts, not numbers (the report)
        wanted = pa.array(self.hashes(numbers.to_pylist()), pa.string())
        return self._in_clear(self.inner.answers(max_age, numbers=wanted))

    def writer(self, patience: float | None = None) -> _KeyedWriter:
        return _KeyedWriter(self.inner.writer(patience), self)

    async def claim(self, numbers: list[str], max_age: float | None) -> Any:
        claim = await self.inner.claim(self.hashes(numbers), max_age)
        claim.mine = [self._clear[d] for d in claim.mine]
        claim.answered = self._in_clear(claim.answered)
        claim.others = {k: (owner, [self._clear[d] for d in held]) for k, (owner, held) in claim.others.items()}
        return claim

    def busy(self, numbers: list[str]) -> tuple[int, int]:
        return tuple(self.inner.busy(self.hashes(numbers)))

    def forget(
        self, numbers: list[str] | None = None, older_than: float | None = None, *, dry_run: bool = False
    ) -> int:
        return int(self.inner.forget(None if numbers is None else self.hashes(numbers), older_than, dry_run=dry_run))


class _KeyedWriter:
    def __init__(self, inner: Any, store: KeyedStore) -> None:
        self.inner, self.store = inner, store
        self.name = inner.name

    def append(self, answer: Answer) -> None:
        (digest,) = self.store.hashes([answer.mobile])
        self.inner.append(Answer(digest, *answer.values()[1:]))

    async def settle(self) -> None:
        await self.inner.settle()

    def outcome(self) -> Any:
        return self.inner.outcome()

    def close(self) -> None:
        self.inner.close()
