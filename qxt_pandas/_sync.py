"""Run coroutines from synchronous code on a private event loop in a worker thread.

One implementation serves sync and async callers: the async code is the truth
and the sync API hands its coroutines to this loop. A worker thread (not
``asyncio.run`` in the caller's thread) is what makes the sync API work where
a loop is already running, as in Jupyter, without ``nest_asyncio``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: How long an interrupted call waits for its coroutine to wind down
#: (finish in-flight writes) before the interrupt is re-raised.
INTERRUPT_GRACE = 0.8


class LoopThread:
    """A daemon thread running one event loop; ``run(coro)`` blocks for the result."""

    def __init__(self, name: str = "qxt-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._closed = False

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop; Ctrl-C cancels it, waits briefly, and re-raises."""
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
            # Short waits, not one long one: a signal delivered to another thread does
            # not wake a blocked wait, but Python runs the handler when each one returns.
            while not done.wait(0.1):
                pass
        except BaseException:
            self._loop.call_soon_threadsafe(cancel)
            done.wait(INTERRUPT_GRACE)
            raise
        return box["task"].result()

    def close(self) -> None:
        """Stop the loop and join the thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh private loop thread (works inside Jupyter)."""
    runner = LoopThread()
    try:
        return runner.run(coro)
    finally:
        runner.close()
