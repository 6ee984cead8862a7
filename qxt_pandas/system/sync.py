"""Run coroutines from synchronous code on a private event loop in a worker thread.

One implementation serves sync and async callers: the async code is the truth
and the sync API hands its coroutines to this loop. A worker thread (not
``asyncio.run`` in the caller's thread) is what makes the sync API work where
a loop is already running, as in Jupyter, without ``nest_asyncio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import weakref
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: How long an interrupted call waits for its coroutine to wind down
#: (finish in-flight writes) before the interrupt is re-raised.
INTERRUPT_GRACE = 0.8


class _Drain:
    """A loop's interrupt state: ``event`` set on the first Ctrl-C while ``active`` code can drain."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.active = 0


_DRAINS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Drain] = weakref.WeakKeyDictionary()


def draining() -> asyncio.Event | None:
    """Set when a sync caller was interrupted once: start nothing new, finish (and keep) what is in
    flight, then end. None under a loop that is not the library's own (an async caller's)."""
    drain = _DRAINS.get(asyncio.get_running_loop())
    return drain.event if drain is not None else None


@contextlib.contextmanager
def drainable() -> Iterator[None]:
    """Mark code that watches :func:`draining`: a first Ctrl-C while it runs drains instead of cancelling."""
    drain = _DRAINS.get(asyncio.get_running_loop())
    if drain is None:
        yield
        return
    drain.active += 1
    try:
        yield
    finally:
        drain.active -= 1


#: The signals that stop a run (Ctrl-C, SIGTERM, a closed terminal): held back while files change as a set.
_STOPS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP} if hasattr(signal, "SIGHUP") else {signal.SIGINT}


@contextlib.contextmanager
def stops_held() -> Iterator[None]:
    """Hold back Ctrl-C and SIGTERM for the few renames that put a set of files in place: a stop that comes
    meanwhile is handled after them, so the files are all old or all new when it is told. Python runs signal
    handlers in the main thread only, whichever thread the kernel picked: handlers that note the signal,
    then the ones before, called once the set is in place. (Elsewhere than the main thread nothing is held.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {int(sig): signal.signal(sig, lambda number, frame: caught.append(number)) for sig in _STOPS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        for number in caught:  # as if it came now (Ctrl-C's handler raises KeyboardInterrupt)
            handler = previous[number]
            if callable(handler):
                handler(number, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(number)


class Interrupted(Exception):
    """A run drained after an interrupt; the interrupt itself is re-raised to the sync caller."""


class LoopThread:
    """A daemon thread running one event loop; ``run(coro)`` blocks for the result."""

    def __init__(self, name: str = "qxt-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._drain = _DRAINS[self._loop] = _Drain()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._closed = False

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop; Ctrl-C re-raises when it ends.

        The first Ctrl-C (or SIGTERM, which the command turns into one) during a run that can
        drain (:func:`drainable`) sets :func:`draining`: the run stops sending, waits for the
        answers in flight (they may be paid for) and keeps them, bounded by the request timeout.
        A second one, or one at any other moment, cancels at once.
        """
        if self._closed:
            coro.close()
            raise RuntimeError("this client is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a sync call was made from inside the library's own loop")
        done = threading.Event()
        box: dict[str, asyncio.Task[T]] = {}
        cancelled = False

        # start() and cancel() both run on the loop thread, in the order they were
        # scheduled, so a Ctrl-C at any moment cancels the task or keeps it from starting.
        def start() -> None:
            if cancelled:
                return
            box["task"] = self._loop.create_task(coro)
            box["task"].add_done_callback(lambda _: done.set())

        def cancel() -> None:
            nonlocal cancelled
            cancelled = True
            if "task" in box:
                box["task"].cancel()
            else:
                coro.close()
                done.set()

        try:
            self._loop.call_soon_threadsafe(start)
            _wait(done)
        except KeyboardInterrupt:
            if not self._drain.active:  # nothing that could be paid for is in flight: stop at once
                self._loop.call_soon_threadsafe(cancel)
                done.wait(INTERRUPT_GRACE)
                raise
            self._loop.call_soon_threadsafe(self._drain.event.set)
            try:
                _wait(done)
            except BaseException:
                self._loop.call_soon_threadsafe(cancel)
                done.wait(INTERRUPT_GRACE)
                raise
            task = box.get("task")
            if task is not None and not task.cancelled():
                task.exception()  # retrieved (Interrupted, as a rule): the interrupt is what the caller gets
            raise
        except BaseException:
            self._loop.call_soon_threadsafe(cancel)
            done.wait(INTERRUPT_GRACE)
            raise
        return box["task"].result()

    def close(self) -> None:
        """Stop the loop and join the thread; idempotent."""
        _DRAINS.pop(self._loop, None)
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def _wait(done: threading.Event) -> None:
    # Short waits, not one long one: a signal delivered to another thread does
    # not wake a blocked wait, but Python runs the handler when each one returns.
    while not done.wait(0.1):
        pass


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh private loop thread (works inside Jupyter)."""
    runner = LoopThread()
    try:
        return runner.run(coro)
    finally:
        runner.close()
