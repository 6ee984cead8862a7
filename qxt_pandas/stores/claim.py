"""What a run holds while it asks: the numbers it may ask, what others answered meanwhile, whom it waits for.

Each store's claims extend :class:`Claim` with how a claim is held: a locked file in a directory
(``directory/claims.py``), a row under a lease in PostgreSQL (``postgres/_write.py``). A run without a
store holds a plain one.

Example::

    claim = await store.claim(numbers, max_age=None)
    try:
        ...  # ask claim.mine
    finally:
        claim.release()
    await claim.wait(say=print, patience=300)  # then claim the numbers others were asking
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..system.sync import drainable, draining

__all__ = ["POLL", "SAY_EVERY", "Claim"]

#: How often a waiting run looks whether the claims it waits for have ended (seconds).
POLL = 0.2
#: How often a waiting run says that it still waits, and for whom (seconds).
SAY_EVERY = 10.0


@dataclass
class Claim:
    """The outcome of claiming: what this run may ask, what others answered, whom it waits for."""

    mine: list[str]
    answered: pa.Table | None = None  # stored by others since this run loaded, for its numbers
    others: dict[Any, tuple[str, list[str]]] = field(default_factory=dict)  # claim -> (owner, numbers)

    @property
    def waiting_for(self) -> list[str]:
        """The numbers this run needs that other runs are asking."""
        return [n for _, numbers in self.others.values() for n in numbers]

    def held(self, key: Any) -> bool:
        """Whether the other run's claim ``key`` is still held (each store says how; none are, without one)."""
        return False

    def ready(self, horizon: float) -> bool:
        """Whether this claim still stands for a request of ``horizon`` s (the engine's Lease)."""
        return True

    async def settle(self) -> bool:
        """Renew the claim (the engine's Lease): nothing to renew here."""
        return True

    def release(self) -> None:
        """End this run's claim (idempotent): the numbers in it are asked, or given up."""

    async def wait(self, say: Callable[[str], None], patience: float) -> float | None:
        """Wait until every claim this run waits for has ended: None; or the seconds waited when
        ``patience`` ran out first, or an interrupt came (polls; says every ``SAY_EVERY`` s why it waits)."""
        with drainable():
            return await self._wait(say, patience)

    async def _wait(self, say: Callable[[str], None], patience: float) -> float | None:
        started = time.monotonic()
        drain = draining()
        for key, (owner, numbers) in self.others.items():
            said = -SAY_EVERY
            while self.held(key):
                waited = time.monotonic() - started
                if drain is not None and drain.is_set():
                    return waited
                if waited >= patience:
                    say(f"gave up waiting for another run on this checkpoint ({owner}) after {waited:.0f} s "
                        f"(patience): {len(numbers):,} of these numbers are left unanswered; run again once it "
                        "has finished")  # fmt: skip
                    return waited
                if waited - said >= SAY_EVERY:
                    said = waited
                    say(f"waiting for another run on this checkpoint ({owner}), which is asking {len(numbers):,} "
                        f"of these numbers ({waited:.0f} s so far, at most {patience:.0f} s); its answers will be "
                        "used, not paid for again")  # fmt: skip
                await asyncio.sleep(POLL)
        return None
