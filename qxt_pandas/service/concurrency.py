"""How many requests to keep in flight: a fixed number, or what the service shows it can take.

The vendor publishes no limit. Its only signals are push-back: ``-8``
(系统错误,请稍候再试), HTTP 429/502/503/504, refused or reset connections,
timeouts. :class:`Adaptive` turns them into a limit, AIMD as in Netflix's
concurrency-limits (``AIMDLimit``: backoff ratio 0.9, growth only while the
limit is in use) with TCP's slow start in front:

- **slow start**: from ``initial``, one more for every answer (the limit
  doubles each round trip) until the first push-back;
- **additive increase**: then one more per round trip (``1/limit`` per
  answer), and only while at least half the limit is in flight, so that a
  run paced by ``rate=`` or short of work does not claim room it never tested;
- **decrease**: only on overload, not on random faults. A vendor with
  sporadic errors fails a steady share of requests whatever the load; an
  overloaded one refuses more as more are sent. So push-back counts as
  overload when it comes in a burst within one window of outcomes (about a
  round trip: the last ``limit`` answers and refusals): busy refusals (-8,
  429, 503) at least ``max(2, 5 %)`` of the window, other faults (502/504,
  resets, timeouts) at least ``max(3, 20 %)``. Then: one less for each busy
  refusal (each says "one more than I can hold": a burst after the service's
  capacity drops from 60 to 15 walks the limit down 45), and ×0.9 at most
  once per round trip, for the first push-back of a request sent after the
  last cut; refusals of requests sent before it report the same overload
  and do not cut again. (Measured with benchmarks/flaky_vendor.py: 1 % random
  faults used to cut the limit to a few requests in flight: 0.23× the
  fault-free rate.)
- never above ``maximum``, never below 1. At 1, each further push-back waits
  longer before the next request (0.5 s doubling to 30 s), and a
  ``Retry-After`` from the service holds every request until it has passed.

Both controllers are plain objects: fed outcomes with the time, asked
``allowed`` and ``resume_at``. No sockets, no sleeps, no clock of their own,
so tests drive them with made-up times.

Example::

    limit = Adaptive(maximum=128)
    limit.answered(in_flight=4, now=0.1)
    limit.allowed          # 5
"""

from __future__ import annotations

import math

__all__ = ["AUTO", "INITIAL", "MAX_CONCURRENCY", "Adaptive", "Controller", "Fixed"]

AUTO = "auto"
#: The default ceiling of an adaptive limit (connections a client keeps open at most).
MAX_CONCURRENCY = 128
#: Where slow start begins: low enough for a small service, four round trips from 64.
INITIAL = 4
BACKOFF = 0.9
#: Push-back in one window of outcomes that is overload, not chance: busy refusals, other faults.
BUSY_SHARE, FAULT_SHARE = 0.05, 0.20
PROBE_FIRST, PROBE_MAX = 0.5, 30.0


class Controller:
    """What both kinds share: counts, a pause the service asked for (Retry-After), the probe backoff."""

    def __init__(self) -> None:
        self.answers = 0
        self.pushbacks = 0
        self.resume_at = 0.0  # no request starts before this time (monotonic seconds)
        self._probe = 0.0

    @property
    def allowed(self) -> int:
        """How many requests may be in flight now."""
        raise NotImplementedError

    def answered(self, in_flight: int, now: float) -> None:
        """A request got its answer (any answer but push-back); ``in_flight`` counts the others still out."""
        self.answers += 1
        self._probe = 0.0

    def pushed_back(self, sent_at: float, now: float, retry_after: float | None = None, busy: bool = True) -> None:
        """A request sent at ``sent_at`` met push-back at ``now`` (``busy``: the service said it is overloaded;
        else a fault that may be random: 502/504, a reset, a timeout); the service may ask for a pause."""
        self.pushbacks += 1
        if retry_after:
            self.resume_at = max(self.resume_at, now + retry_after)  # capped where it is read (client)
        if self.allowed <= 1:  # nothing left to give back: space the probes out
            self._probe = min(PROBE_MAX, max(PROBE_FIRST, self._probe * 2))
            self.resume_at = max(self.resume_at, now + self._probe)


class Fixed(Controller):
    """``size`` requests in flight, whatever the service says (it still honours Retry-After)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    @property
    def allowed(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"Fixed({self.size})"


class Adaptive(Controller):
    """AIMD with slow start between 1 and ``maximum`` (see the module's docstring)."""

    def __init__(self, *, maximum: int = MAX_CONCURRENCY, initial: int = INITIAL, backoff: float = BACKOFF) -> None:
        super().__init__()
        self.maximum = maximum
        self.limit = float(max(1, min(initial, maximum)))
        self.backoff = backoff
        self.slow_start = True
        self._last_cut = -math.inf
        self._seen = self._busy = self._faults = 0  # outcomes in this window, and the push-back among them

    @property
    def allowed(self) -> int:
        return max(1, min(self.maximum, int(self.limit)))

    def answered(self, in_flight: int, now: float) -> None:
        super().answered(in_flight, now)
        self._window(busy=0, faults=0)
        if (in_flight + 1) * 2 < self.limit:  # the limit is not in use: it says nothing about the service
            return
        self.limit = min(self.maximum, self.limit + (1.0 if self.slow_start else 1.0 / self.limit))

    def pushed_back(self, sent_at: float, now: float, retry_after: float | None = None, busy: bool = True) -> None:
        busy_seen, faults_seen = self._window(busy=int(busy), faults=int(not busy))
        window = max(self.limit, 1.0)
        overload = busy_seen >= max(1.0, BUSY_SHARE * window) if busy else faults_seen >= max(3.0, FAULT_SHARE * window)
        if overload:
            self.slow_start = False
            if busy:
                self.limit = max(1.0, self.limit - 1.0)
            if sent_at >= self._last_cut:  # news: this request left after the last cut
                self.limit = max(1.0, self.limit * self.backoff)
                self._last_cut = now
        super().pushed_back(sent_at, now, retry_after, busy)

    def _window(self, busy: int, faults: int) -> tuple[int, int]:
        """Push-back in the current window of outcomes (about one round trip: ``limit`` of them, at least 8),
        this outcome counted; a new window starts when it is full."""
        if self._seen >= max(8.0, self.limit):
            self._seen, self._busy, self._faults = 0, 0, 0
        self._seen += 1
        self._busy += busy
        self._faults += faults
        return self._busy, self._faults

    def __repr__(self) -> str:
        return f"Adaptive(limit={self.limit:.1f}, maximum={self.maximum})"
