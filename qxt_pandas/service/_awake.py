"""Timeouts that do not count time the process spent suspended.

A process stopped by Ctrl-Z, SIGSTOP or a closed laptop lid sees every timer
overdue when it runs again: each request in flight timed out and was sent
again, although its answer (already paid for) sat in the socket (measured:
125 numbers paid twice after a 4 s stop with a 2 s timeout). Here a loop's
*awake* time excludes any gap of more than ``STALL`` seconds in which the
loop ran nothing at all, and :class:`awake_timeout` expires only when the
request has been awake for its timeout: after a stop, the answers that
arrived are read first.

Example::

    async with awake_timeout(10.0):
        reply = await send()
"""

from __future__ import annotations

import asyncio
import time
import weakref
from types import TracebackType

__all__ = ["awake_timeout"]

BEAT = 0.25  # seconds between the loop's heartbeats
STALL = 1.0  # a gap this long with no heartbeat: the loop (the process) was not running


class _Clock:
    """Monotonic time of one loop, less the gaps in which the loop did not run."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.stalled, self.last = loop, 0.0, time.monotonic()
        self._beat()

    def _beat(self) -> None:
        self.now()
        self.loop.call_later(BEAT, self._beat)

    def now(self) -> float:
        moment = time.monotonic()
        if moment - self.last > STALL:
            self.stalled += moment - self.last - BEAT
        self.last = moment
        return moment - self.stalled


_CLOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Clock] = weakref.WeakKeyDictionary()


def _clock() -> _Clock:
    loop = asyncio.get_running_loop()
    if loop not in _CLOCKS:
        _CLOCKS[loop] = _Clock(loop)
    return _CLOCKS[loop]


class awake_timeout:
    """``asyncio.timeout(seconds)``, counting only time the loop was running: TimeoutError when it expires."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._expired = False

    async def __aenter__(self) -> awake_timeout:
        self._task = asyncio.current_task()
        self._clock = _clock()
        self._end = self._clock.now() + self.seconds
        self._handle = self._clock.loop.call_later(self.seconds, self._expire)
        return self

    def _expire(self) -> None:
        left = self._end - self._clock.now()
        if left > 0.001:  # the process was suspended meanwhile: the request gets its full awake time
            self._handle = self._clock.loop.call_later(left, self._expire)
            return
        self._expired = True
        assert self._task is not None
        self._task.cancel()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._handle.cancel()
        if self._expired and kind is asyncio.CancelledError and self._task is not None and self._task.uncancel() == 0:
            raise TimeoutError from exc
