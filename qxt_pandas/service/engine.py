"""Running many queries at once: a limit on requests in flight, rate, budget, push-back, stopping.

Workers (as many as the limit can ever allow; not one task per number: a
million tasks cost seconds and gigabytes before the first request) take
numbers from one queue, and each waits for a slot before it sends: the
:mod:`~qxt_pandas.service.concurrency` controller says how many may be in flight,
fixed or adapted to the service's push-back, and when the service asked for
a pause (``Retry-After``). Each answer goes to ``on_answer`` (the checkpoint
makes it durable there) *before* it is counted. With an adaptive limit, a
busy answer (-8, HTTP 429/503) is not a failure of the number: it goes back
to the queue and is asked again when there is room, without spending its
retries; a service that answers nothing but push-back for ``patience``
seconds ends the run, the rest unanswered. A terminal answer (bad key, IP
not allowed, no balance) stops the run: no worker takes another number, and
requests already in flight get ``grace`` seconds to finish, because their
answers may already be paid for. A number whose other transient failures
outlast the client's retries is a failure on its row; the next run asks again.

Example::

    result = await query_numbers(client, ["13972565391"], controller=Adaptive(), on_answer=journal.append)
    result.answers[0].Status
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import HttpStatusError, NumberError, QxtError, TerminalError
from ..system.sync import drainable, draining
from .answers import PAID_CODES, Answer
from .client import MAX_BACKOFF, AsyncClient
from .concurrency import Adaptive, Controller, Fixed
from .progress import Progress

__all__ = ["DEFAULT_PATIENCE", "EngineResult", "Lease", "Progress", "horizon", "query_numbers"]

#: How long a run goes on while the service answers nothing but push-back (seconds).
DEFAULT_PATIENCE = 300.0


class _Wait(enum.Enum):
    WAIT = 0  # no number now, but one may come back


WAIT = _Wait.WAIT


@dataclass
class EngineResult:
    """What a run did: answers (in order of arrival), failures, and why it stopped early, if it did."""

    answers: list[Answer] = field(default_factory=list)
    failures: dict[str, QxtError] = field(default_factory=dict)
    stopped: TerminalError | None = None
    budget_reached: bool = False
    gave_up: float | None = None  # seconds of nothing but push-back after which the run stopped asking
    paid: int = 0  # answers the vendor charged for: code 0, and code 0 that could not be read
    requests: int = 0  # attempts sent, retries and push-backs included
    pushbacks: int = 0  # attempts the service pushed back (busy, 429/502/503/504, refused, timed out)
    busy: int = 0  # of which refused busy (-8, 429, 503)
    faults: Counter[str] = field(default_factory=Counter)  # failed attempts by kind (refused connections …)
    held: float = 0.0  # requests in flight on average while the run asked (time-weighted)
    interrupted: bool = False  # Ctrl-C or SIGTERM: stopped sending, kept what was in flight
    abandoned: int = 0  # requests in flight when a second interrupt cancelled the run (may be charged)
    waited: float | None = None  # seconds waited for another run's claim before giving up (patience)
    store_failed: BaseException | None = None  # the store refused an answer: the run stopped asking (see Lease)
    lease_lost: bool = False  # another run took over numbers of this run's claim: the rest was not asked
    expired: int = 0  # answers the store's retention removed after the run

    def add(self, other: EngineResult) -> None:
        """Fold a later round of the same run into this one."""
        weight = self.requests + other.requests
        self.held = (self.held * self.requests + other.held * other.requests) / weight if weight else 0.0
        self.answers += other.answers
        self.failures.update(other.failures)
        self.stopped = self.stopped or other.stopped
        self.budget_reached = self.budget_reached or other.budget_reached
        self.gave_up = self.gave_up or other.gave_up
        self.interrupted = self.interrupted or other.interrupted
        self.waited = self.waited or other.waited
        self.store_failed = self.store_failed or other.store_failed
        self.lease_lost = self.lease_lost or other.lease_lost
        for name in ("paid", "requests", "pushbacks", "busy", "abandoned"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.faults.update(other.faults)

    def refusals(self) -> str:
        """The kinds of push-back the service gave, most first, in words (``refused connections, HTTP 502``)."""
        return ", ".join(kind for kind, _ in self.faults.most_common(3)) or "busy"

    def why(self) -> str:
        """Why the run ended, for its receipt."""
        if self.store_failed is not None:
            return f"stopped: the store failed ({type(self.store_failed).__name__})"
        if self.interrupted:
            return "interrupted"
        if self.stopped is not None:
            return f"stopped: {type(self.stopped).__name__} (code {self.stopped.code})"
        if self.waited is not None:
            return f"gave up waiting {self.waited:.0f} s for another run's numbers"
        if self.gave_up is not None:
            return f"gave up: the service refused every request for {self.gave_up:.0f} s ({self.refusals()})"
        return "budget reached" if self.budget_reached else "finished"

    def closing(self) -> str:
        """What the service allowed, in words ("" when it never pushed back)."""
        if not self.pushbacks:
            return ""
        held = f"about {self.held:.0f}" if self.held >= 1 else "fewer than 1 on average"
        return (f"the service held {held} requests in flight; {self.busy / self.requests:.1%} of "
                f"requests were refused busy, {self.pushbacks / self.requests:.1%} pushed back in all")  # fmt: skip


class Lease(Protocol):
    """What a run's claim on its numbers must say before each request: that it still stands.

    ``ready`` is asked before every request and must be cheap; ``horizon`` is the longest a request
    may take (every attempt and backoff), which must end before the claim could lapse. When it is
    not ready, ``settle`` (one at a time) renews the claim with the store: True when every number
    of it is still this run's, False when another run took some over (the run then stops asking
    and claims again); it raises when the store cannot be reached within the run's patience.
    """

    def ready(self, horizon: float) -> bool: ...
    async def settle(self) -> bool: ...


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


def wake(waiting: deque[asyncio.Future[None]], count: int | None = None) -> None:
    """Wake ``count`` of the futures ``waiting`` (all: None), so that their tasks look again."""
    while waiting and (count is None or count > 0):
        woken = waiting.popleft()
        if not woken.done():
            woken.set_result(None)
            count = None if count is None else count - 1


class _Slots:
    """Requests in flight, kept within the controller's limit and pauses; also the watch of every attempt.

    Waiters are plain futures woken one per freed slot: a Condition would wake and re-lock
    for every request (measured: a tenth of the engine's CPU at 256 in flight).
    """

    def __init__(
        self,
        controller: Controller,
        result: EngineResult,
        requeue_busy: bool,
        stop: asyncio.Event,
        patience: float = DEFAULT_PATIENCE,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.controller, self.result, self.requeue_busy, self.stop = controller, result, requeue_busy, stop
        self.patience, self.say = patience, say
        self.in_flight = 0
        self.last_answer = self._mark = time.monotonic()
        self._area = 0.0  # integral of in_flight over time, for EngineResult.held
        self._started: float | None = None
        self._waiting: deque[asyncio.Future[None]] = deque()
        self.sent: dict[int, float] = {}  # a request in flight (its worker's id) -> when it was sent
        self.faults: Counter[str] = Counter()  # failed attempts by kind since the log last said

    def try_acquire(self) -> bool:
        """Take a slot if one is free now, without waiting."""
        if self.in_flight < self.controller.allowed and self.controller.resume_at <= time.monotonic():
            self._count(+1)
            return True
        return False

    async def acquire(self) -> bool:
        """Wait for a slot; False when the run stopped meanwhile."""
        while not self.stop.is_set():
            now = time.monotonic()
            if now - self.last_answer > self.patience:  # paused (Retry-After, probes) past patience: give up
                self.result.gave_up = self.patience
                self.stop.set()
                self.wake()
                return False
            wait = min(self.controller.resume_at - now, self.last_answer + self.patience - now + 0.01)
            if self.controller.resume_at <= now and self.in_flight < self.controller.allowed:
                self._count(+1)
                return True
            woken = asyncio.get_running_loop().create_future()
            self._waiting.append(woken)
            # a pause (the service asked, or the probe backs off) is re-checked at least every second
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken, min(wait, 1.0)) if wait > 0 else await woken
        return False

    def release(self) -> None:
        self._count(-1)
        self.wake(self.controller.allowed - self.in_flight)

    def wake(self, count: int | None = None) -> None:
        wake(self._waiting, count)

    def _count(self, change: int) -> None:
        now = time.monotonic()
        self._started = self._started or now
        self._area += self.in_flight * (now - self._mark)
        self._mark, self.in_flight = now, self.in_flight + change

    def __call__(self, sent_at: float, error: QxtError | None) -> None:  # the client's Watch
        now = time.monotonic()
        self.result.requests += 1
        if error is not None and not isinstance(error, NumberError):
            self.faults[_kind(error)] += 1
            self.result.faults[_kind(error)] += 1
        if error is not None and error.pushes_back:
            self.result.pushbacks += 1
            self.result.busy += error.busy
            paused = self.controller.resume_at
            self.controller.pushed_back(sent_at, now, error.retry_after, error.busy)
            if error.retry_after and self.say is not None and self.controller.resume_at > max(paused, now) + 1:
                self.say(f"the service asked for a pause (Retry-After {error.retry_after:.0f} s): no request "
                         f"starts for {self.controller.resume_at - now:.0f} s")  # fmt: skip
        elif error is None or isinstance(error, NumberError):
            self.last_answer = now
            self.controller.answered(self.in_flight - 1, now)

    def waiting(self) -> str:
        """What the run waits for now, in words, for a log that beats while nothing lands: requests in flight and
        the oldest's age, the faults since the last time it said, a pause the service asked for."""
        now = time.monotonic()
        said = [f"{self.in_flight} in flight"]
        if self.sent:
            said[0] += f", the oldest for {now - min(self.sent.values()):.0f} s"
        if self.faults:
            said.append("since the last line " + ", ".join(f"{n:,} {kind}" for kind, n in self.faults.most_common()))
            self.faults.clear()
        if self.controller.resume_at > now:
            said.append(f"no request starts for {self.controller.resume_at - now:.0f} s (the service's pause or a "
                        "backoff)")  # fmt: skip
        return "; ".join(said)

    def held(self) -> float:
        self._count(0)
        return self._area / (self._mark - self._started) if self._started and self._mark > self._started else 0.0


async def query_numbers(
    client: AsyncClient,
    numbers: Sequence[str],
    *,
    controller: Controller | int = 64,
    rate: float | None = None,
    budget: int | None = None,
    on_answer: Callable[[Answer], None] | None = None,
    progress: Progress | None = None,
    grace: float | None = None,
    ramp: float = 0.0,
    patience: float = DEFAULT_PATIENCE,
    lease: Lease | None = None,
) -> EngineResult:
    """Ask for each of ``numbers`` (already unique and valid) at most once per answer.

    ``controller`` is the limit on requests in flight (an int is a fixed one).
    ``budget`` caps answers paid for (code 0); at most that many queries are in
    flight against what is left of it. ``grace`` bounds how long in-flight requests
    may finish after a terminal answer (default: the client's timeout). ``ramp``
    spreads a fixed limit's first requests over that many seconds (one round trip
    is right): started all at once, their answers come back in waves that queue
    behind the event loop for the whole run. ``lease`` is the claim the numbers are asked under:
    no request starts unless it still stands (see :class:`Lease`).

    ``on_answer`` may fail (a store that cannot take the answer): the answer is still counted (it
    was paid for, and the writer kept it where it could), ``store_failed`` says why, and the run
    stops asking; requests in flight are awaited, never cancelled.
    """
    if isinstance(controller, int):
        if controller < 1:
            raise ValueError("concurrency must be >= 1")
        controller = Fixed(controller)
    adaptive = isinstance(controller, Adaptive)
    result = EngineResult()
    todo: Iterator[str] | None = iter(numbers)
    again = deque[str]()
    stop = asyncio.Event()
    pacer = _Pacer(rate) if rate else None
    slots = _Slots(controller, result, requeue_busy=adaptive, stop=stop, patience=patience,
                   say=progress.note if progress is not None else None)  # fmt: skip
    idle: deque[asyncio.Future[None]] = deque()  # workers waiting for a number put back, or for budget
    taken = 0  # numbers taken and not done
    if progress is not None:
        progress.load = lambda: (slots.in_flight, controller.allowed, result.pushbacks)
        progress.waiting = slots.waiting

    def record(answer: Answer | None, mobile: str, error: QxtError | None = None) -> None:
        if answer is not None:
            if on_answer is not None:
                try:
                    on_answer(answer)  # durable first, counted after
                except Exception as exc:  # the store failed: stop asking; this answer is the writer's to keep
                    result.store_failed = result.store_failed or exc
                    stop.set()
            result.answers.append(answer)
            result.paid += answer.code in PAID_CODES
        else:
            result.failures[mobile] = error  # type: ignore[assignment]
        if progress is not None:
            progress.record(answer)

    def next_number() -> str | _Wait | None:
        """The next number (one put back first), None when the run is over for this worker, or WAIT."""
        nonlocal taken, todo
        within_budget = budget is None or result.paid + taken < budget
        if within_budget and again:
            taken += 1
            return again.popleft()
        if within_budget and todo is not None:
            mobile = next(todo, None)
            if mobile is not None:
                taken += 1
                return mobile
            todo = None
        if taken == 0:  # nothing in flight that could be put back: done
            result.budget_reached = result.budget_reached or not within_budget
            return None
        return WAIT  # a number in flight may come back, or free some budget

    async def take() -> str | None:
        while not stop.is_set():
            mobile = next_number()
            if mobile is not WAIT:
                return mobile
            woken = asyncio.get_running_loop().create_future()
            idle.append(woken)
            await woken
        return None

    def done(mobile: str | None = None) -> None:
        nonlocal taken
        taken -= 1
        if mobile is not None:
            again.append(mobile)
        wake(idle)

    settling = asyncio.Lock()
    longest = horizon(client)

    async def lease_stands() -> bool:
        """Whether the claim still stands (renewed if need be); False: stop asking, the number goes back."""
        assert lease is not None
        async with settling:
            if stop.is_set():
                return False
            if lease.ready(longest):
                return True
            try:
                if await lease.settle():
                    return True
                result.lease_lost = True
            except Exception as exc:
                result.store_failed = result.store_failed or exc
            stop.set()
            return False

    async def worker(delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        while not stop.is_set():
            mobile = next_number()  # no await on the way when there is work and room: this runs per number
            if mobile is WAIT:
                mobile = await take()
            if mobile is None:
                return
            put_back = False
            try:
                if not slots.try_acquire() and not await slots.acquire():
                    return
                try:
                    if pacer is not None:
                        await pacer.wait()
                    if stop.is_set() or (lease is not None and not lease.ready(longest) and not await lease_stands()):
                        put_back = True  # not asked: the run stopped, or its claim on the number may have lapsed
                        return
                    slots.sent[id(asyncio.current_task())] = time.monotonic()
                    try:
                        status = await client.status(mobile, watch=slots)
                    finally:
                        slots.sent.pop(id(asyncio.current_task()), None)
                    answer = Answer(mobile, 0, status.status, status.area, status.is_mnp, status.init_isp,
                                    status.now_isp, None, time.time()).storable()  # fmt: skip
                    record(answer, mobile)
                except NumberError as exc:
                    if exc.code is None:  # never from the vendor; not an answer, so never counted as one
                        record(None, mobile, exc)
                    else:
                        record(Answer(mobile, exc.code, reason=exc.reason, checked_at=time.time()).storable(), mobile)
                except TerminalError as exc:
                    result.stopped = result.stopped or exc
                    stop.set()
                    return
                except QxtError as exc:
                    put_back = adaptive and exc.busy
                    if not put_back:
                        record(None, mobile, exc)
                    # nothing but push-back (busy, refused connections, 5xx, timeouts) for longer than patience:
                    # the vendor is gone or shut, and every further number would only wait out its retries
                    if (put_back or exc.pushes_back) and time.monotonic() - slots.last_answer > patience:
                        result.gave_up, put_back = patience, False
                        stop.set()
                finally:
                    slots.release()
            finally:
                done(mobile if put_back else None)

    drain = draining()
    if drain is not None and drain.is_set():
        result.interrupted = True
        return result
    ceiling = controller.maximum if isinstance(controller, Adaptive) else controller.allowed
    workers = min(ceiling, len(numbers))
    tasks = [asyncio.create_task(worker(0.0 if adaptive else ramp * i / workers)) for i in range(workers)]
    beating = asyncio.create_task(_beat(progress)) if progress is not None else None  # the log beats, always
    everything: asyncio.Future[Any] = asyncio.gather(*tasks)
    stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    interrupted = asyncio.ensure_future(drain.wait()) if drain is not None else stopped
    try:
        with drainable():
            await asyncio.wait({everything, stopped, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        if drain is not None and drain.is_set() and not everything.done():
            result.interrupted = True
            stop.set()
            _say(progress, f"interrupted: finishing {slots.in_flight} requests in flight (they may be paid for) "
                           "within the request timeout; Ctrl-C again to abandon them")  # fmt: skip
        if not everything.done():  # stopped: let in-flight answers arrive, within reason
            wake(idle)
            slots.wake()
            with drainable():
                await asyncio.wait({everything}, timeout=client.timeout if grace is None else grace)
        if everything.done():
            everything.result()  # a worker's unexpected exception surfaces here
    except asyncio.CancelledError:
        result.abandoned = slots.in_flight
        if slots.in_flight:
            _say(progress, f"abandoned {slots.in_flight} requests in flight: the vendor may charge for them, and "
                           "the next run asks those numbers again")  # fmt: skip
        raise
    finally:
        stopped.cancel()
        interrupted.cancel()
        if beating is not None:
            beating.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if everything.done() and not everything.cancelled():
            everything.exception()  # retrieved: no "exception never retrieved" warning
    result.held = slots.held()
    return result


async def _beat(progress: Progress) -> None:
    """Once a second: the progress display may say how the run stands, answers or not (cancelled at the end)."""
    while True:
        await asyncio.sleep(1.0)
        progress.beat()


#: How a failed attempt's cause reads in the log.
_KINDS = {"ConnectError": "refused connections", "ConnectTimeout": "connect timeouts", "ReadTimeout": "timeouts",
          "TimeoutException": "timeouts", "RemoteProtocolError": "broken answers", "ReadError": "resets"}  # fmt: skip


def _kind(error: QxtError) -> str:
    """A failed attempt's kind, for the log: ``busy (-8)``, ``HTTP 502``, ``refused connections`` …"""
    if isinstance(error, HttpStatusError):
        return f"HTTP {error.status_code}"
    if error.busy:
        return f"busy ({error.code})" if error.code is not None else "busy"
    cause = getattr(error, "kind", "") or type(error).__name__
    return _KINDS.get(cause, cause)


def horizon(client: AsyncClient) -> float:
    """The longest one number's request may take: every attempt's timeout, and the backoffs between them."""
    backoffs = sum(2 * min(MAX_BACKOFF, client.backoff * 2**attempt) for attempt in range(client.retries))
    return float(client.timeout * (client.retries + 1) + backoffs)


def _say(progress: Progress | None, message: str) -> None:
    """A line for the person at the terminal: on the progress display, else as a warning."""
    if progress is not None and progress.style != "off":
        progress.note(message)
    else:
        warnings.warn(message, RuntimeWarning, stacklevel=2)
