"""Running many queries at once: fixed workers, rate limit, budget, stopping, progress.

A fixed set of ``concurrency`` workers pull numbers from one iterator. It is
not one task per number: a million tasks cost seconds and gigabytes before
the first request. Each answer goes to ``on_answer`` (the checkpoint makes it
durable there) *before* it is counted. A terminal answer (bad key, IP not
allowed, no balance) stops the run: no worker takes another number, and
requests already in flight get ``grace`` seconds to finish, because their
answers may already be paid for. Per-number answers are results. A number
whose transient failures outlast the client's retries is a failure on its
row, and the next run asks again.

Example::

    result = await query_numbers(client, ["13972565391"], concurrency=64, on_answer=journal.append)
    result.answers[0].Status
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from .checkpoint import Answer
from .client import AsyncClient
from .errors import NumberError, QxtError, TerminalError

__all__ = ["EngineResult", "Progress", "query_numbers"]

log = logging.getLogger("qxt_pandas")


@dataclass
class EngineResult:
    """What a run did: answers (in order of arrival), failures, and why it stopped early, if it did."""

    answers: list[Answer] = field(default_factory=list)
    failures: dict[str, QxtError] = field(default_factory=dict)
    stopped: TerminalError | None = None
    budget_reached: bool = False
    paid: int = 0  # answers with code 0: what the vendor charged for

    def add(self, other: EngineResult) -> None:
        """Fold a later round of the same run into this one."""
        self.answers += other.answers
        self.failures.update(other.failures)
        self.stopped = self.stopped or other.stopped
        self.budget_reached = self.budget_reached or other.budget_reached
        self.paid += other.paid


class Progress:
    """Live counts: a tqdm bar (a widget in Jupyter, text on a terminal), plain log lines, or nothing.

    ``style`` is ``"bar"``, ``"log"`` (a line to stderr every ``interval`` seconds, for ETL
    logs that are not terminals), or ``"off"``.
    """

    def __init__(
        self, total: int, *, from_checkpoint: int = 0, style: str = "bar", desc: str = "QXT", interval: float = 10.0
    ) -> None:
        self.counts: Counter[str] = Counter()
        self.from_checkpoint = from_checkpoint
        self.total, self.done, self.style, self.interval = total, 0, style, interval
        self._started = self._logged = time.monotonic()
        self._bar = tqdm(total=total, desc=desc, unit="num", disable=style != "bar", dynamic_ncols=True, smoothing=0.1)
        self._shown = 0.0

    def record(self, answer: Answer | None) -> None:
        """One number done: ``answer`` for an answer, ``None`` for a failure."""
        if answer is None:
            self.counts["errors"] += 1
        elif answer.code == 0:
            self.counts["answered"] += 1
            if answer.Status in ("空号", "停机"):
                self.counts[answer.Status] += 1
        else:
            self.counts["errors"] += 1
        self._bar.update(1)
        self.done += 1
        now = time.monotonic()
        if now - self._shown > 0.25:  # building the postfix per number would cost more than the bar
            self._shown = now
            self._bar.set_postfix_str(self.summary(), refresh=False)
            if self.style == "log" and now - self._logged >= self.interval:
                self._logged = now
                self._log(now)

    def found(self, count: int) -> None:
        """``count`` numbers were answered by another run meanwhile: done, and from the checkpoint."""
        if count:
            self.from_checkpoint += count
            self.done += count
            self._bar.update(count)

    def note(self, message: str) -> None:
        """A one-off line about the run (not a count), shown whatever the style but ``off``."""
        log.info("QXT: %s", message)
        if self.style == "bar":
            self._bar.write(f"QXT: {message}", file=sys.stderr)
        elif self.style == "log":
            print(f"QXT: {message}", file=sys.stderr, flush=True)

    def _log(self, now: float) -> None:
        elapsed = now - self._started
        rate = self.done / elapsed if elapsed else 0.0
        eta = f", ETA {(self.total - self.done) / rate:.0f} s" if rate and self.done < self.total else ""
        print(f"QXT {self.done:,}/{self.total:,} numbers ({rate:.0f}/s{eta}): {self.summary()}",
              file=sys.stderr, flush=True)  # fmt: skip

    def summary(self) -> str:
        c = self.counts
        return (
            f"answered={c['answered']} 空号={c['空号']} 停机={c['停机']} errors={c['errors']} "
            f"from checkpoint={self.from_checkpoint}"
        )

    def close(self) -> None:
        self._bar.set_postfix_str(self.summary(), refresh=False)
        self._bar.close()
        if self.style == "log":
            self._log(time.monotonic())


class _Pacer:
    """Spaces request starts ``1/rate`` seconds apart across all workers."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0 requests per second")
        self._interval = 1.0 / rate
        self._next = 0.0

    async def wait(self) -> None:
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


async def query_numbers(
    client: AsyncClient,
    numbers: Sequence[str],
    *,
    concurrency: int = 64,
    rate: float | None = None,
    budget: int | None = None,
    on_answer: Callable[[Answer], None] | None = None,
    progress: Progress | None = None,
    grace: float | None = None,
    ramp: float = 0.0,
) -> EngineResult:
    """Ask for each of ``numbers`` (already unique and valid) at most once.

    ``budget`` caps answers paid for (code 0); at most that many queries are in
    flight against what is left of it. ``grace`` bounds how long in-flight requests
    may finish after a terminal answer (default: the client's timeout). ``ramp``
    spreads the workers' first requests over that many seconds (one round trip is
    right): started all at once, their answers come back in waves that queue behind
    the event loop for the whole run.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    result = EngineResult()
    todo = iter(numbers)
    stop = asyncio.Event()
    pacer = _Pacer(rate) if rate else None
    room = asyncio.Condition()  # budget bookkeeping: paid + in flight must stay <= budget
    in_flight = 0

    def record(answer: Answer | None, mobile: str, error: QxtError | None = None) -> None:
        if answer is not None:
            if on_answer is not None:
                on_answer(answer)  # durable first, counted after
            result.answers.append(answer)
            result.paid += answer.code == 0
        else:
            result.failures[mobile] = error  # type: ignore[assignment]
        if progress is not None:
            progress.record(answer)

    async def take() -> str | None:
        nonlocal in_flight
        if budget is not None:
            async with room:
                await room.wait_for(lambda: stop.is_set() or result.paid + in_flight < budget or in_flight == 0)
                if stop.is_set() or result.paid + in_flight >= budget:
                    result.budget_reached = result.budget_reached or not stop.is_set()
                    return None
        mobile = next(todo, None)
        if mobile is not None:
            in_flight += 1
        return mobile

    async def release() -> None:
        nonlocal in_flight
        in_flight -= 1
        if budget is not None:
            async with room:
                room.notify_all()

    async def worker(delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        while not stop.is_set():
            mobile = await take()
            if mobile is None:
                return
            try:
                if pacer is not None:
                    await pacer.wait()
                try:
                    status = await client.status(mobile)
                    answer = Answer(mobile, 0, status.status, status.area, status.is_mnp, status.init_isp,
                                    status.now_isp, None, time.time())  # fmt: skip
                    record(answer, mobile)
                except NumberError as exc:
                    if exc.code is None:  # never from the vendor; not an answer, so never counted as one
                        record(None, mobile, exc)
                    else:
                        record(Answer(mobile, exc.code, reason=exc.reason, checked_at=time.time()), mobile)
                except TerminalError as exc:
                    result.stopped = result.stopped or exc
                    stop.set()
                    return
                except QxtError as exc:
                    record(None, mobile, exc)
            finally:
                await release()

    workers = min(concurrency, len(numbers))
    tasks = [asyncio.create_task(worker(ramp * i / workers)) for i in range(workers)]
    everything = asyncio.gather(*tasks)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({everything, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not everything.done():  # stopped: let in-flight answers arrive, within reason
            await asyncio.wait({everything}, timeout=client.timeout if grace is None else grace)
        if everything.done():
            everything.result()  # a worker's unexpected exception surfaces here
    finally:
        stopped.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if everything.done() and not everything.cancelled():
            everything.exception()  # retrieved: no "exception never retrieved" warning
    return result
