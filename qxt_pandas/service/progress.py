"""Live counts of a run: the only place that prints while a check runs.

A tqdm bar (a widget in Jupyter, text on a terminal), a plain line every few
seconds for logs that are not terminals (cron, CI, a log collector), or
nothing. Besides the answers so far it shows the requests in flight, the
limit the engine allows now, and how often the service pushed back.

Example::

    progress = Progress(2_016, style="log")
    progress.record(answer)
    progress.close("the service held about 38 requests in flight; 2.1 % of requests were refused busy")
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable

from tqdm.auto import tqdm

from ..errors import CHARGED_UNREADABLE
from .answers import Answer

__all__ = ["Progress", "stamp"]

#: Answers other than code 0, by what they mean (other codes: the vendor called the number invalid).
_KINDS = {-4: "no info", CHARGED_UNREADABLE: "unreadable"}

log = logging.getLogger("qxt_pandas")


def _interval(given: float | None) -> float:
    """Seconds between log lines: ``given``, else ``$QXT_LOG_EVERY``, else 10 (at least 1)."""
    if given is None:
        try:
            given = float(os.environ.get("QXT_LOG_EVERY") or 10.0)
        except ValueError:
            given = 10.0
    return max(1.0, given) if math.isfinite(given) else 10.0


def stamp() -> str:
    """Now, for a log line: ISO 8601 in UTC, to the second (``2026-12-05T08:20:00Z``)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Progress:
    """Live counts: a tqdm bar (a widget in Jupyter, text on a terminal), plain log lines, or nothing.

    ``style`` is ``"bar"``, ``"log"`` (a line to stderr every ``interval`` seconds, for ETL
    logs that are not terminals), ``"json"`` (a JSON object a line on stderr twice a second, for
    programs that watch a run: ``qxt serve``, an orchestrator), or ``"off"``.
    """

    def __init__(
        self, total: int, *, from_checkpoint: int = 0, style: str = "bar", desc: str = "QXT",
        interval: float | None = None,
    ) -> None:  # fmt: skip
        self.counts: Counter[str] = Counter()
        self.from_checkpoint = from_checkpoint
        self.total, self.done, self.style, self.interval = total, 0, style, _interval(interval)
        self._started = self._logged = time.monotonic()
        self._bar = tqdm(total=total, desc=desc, unit="num", disable=style != "bar", dynamic_ncols=True, smoothing=0.1)
        self._shown = 0.0
        #: Set by the engine: () -> (requests in flight, allowed now, push-backs so far).
        self.load: Callable[[], tuple[int, int, int]] | None = None
        #: Set by the engine: () -> what the run waits for now, in words (engine._Slots.waiting).
        self.waiting: Callable[[], str] | None = None

    def record(self, answer: Answer | None) -> None:
        """One number done: ``answer`` for an answer, ``None`` for a failure."""
        if answer is None:
            self.counts["failed"] += 1
        elif answer.code == 0:
            self.counts["answered"] += 1
            if answer.Status in ("空号", "停机"):
                self.counts[answer.Status] += 1
        else:
            self.counts[_KINDS.get(answer.code, "invalid")] += 1
        self._bar.update(1)
        self.done += 1
        now = time.monotonic()
        if now - self._shown > 0.25:  # building the postfix per number would cost more than the bar
            self._shown = now
            self._bar.set_postfix_str(self.summary(), refresh=False)
            self._say_due(now)

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
            print(f"{stamp()} QXT: {message}", file=sys.stderr, flush=True)
        elif self.style == "json":
            print(json.dumps({"ts": stamp(), "note": message}, ensure_ascii=False), file=sys.stderr, flush=True)

    def beat(self) -> None:
        """Called every second by the engine: a log line every ``interval`` s (a JSON object every 0.5 s) even
        when nothing lands, saying what the run waits for, so that a log never goes quiet."""
        self._say_due(time.monotonic())

    def _say_due(self, now: float) -> None:
        """The log line (every ``interval`` s) or JSON object (every 0.5 s) when one is due."""
        if self.style == "log" and now - self._logged >= self.interval:
            self._logged = now
            self._log(now)
        elif self.style == "json" and now - self._logged >= 0.5:
            self._logged = now
            self._json(now)

    def _log(self, now: float) -> None:
        rate, eta = self._pace(now)
        shown = f", ETA {eta:.0f} s" if eta is not None else ""
        waits = f"; waiting: {self.waiting()}" if self.waiting is not None and self.done < self.total else ""
        print(f"{stamp()} QXT {self.done:,}/{self.total:,} numbers ({rate:.0f}/s{shown}): {self.summary()}{waits}",
              file=sys.stderr, flush=True)  # fmt: skip

    def _pace(self, now: float) -> tuple[float, float | None]:
        """Numbers a second so far, and the seconds left at that rate (None: done, or no rate yet)."""
        elapsed = now - self._started
        rate = self.done / elapsed if elapsed else 0.0
        return rate, (self.total - self.done) / rate if rate and self.done < self.total else None

    def snapshot(self, now: float | None = None) -> dict[str, object]:
        """The counts as plain values: done and total numbers, rate, ETA, the engine's load, each outcome."""
        rate, eta = self._pace(time.monotonic() if now is None else now)
        in_flight, allowed, pushbacks = self.load() if self.load is not None else (0, 0, 0)
        return {
            "done": self.done, "total": self.total, "rate": round(rate, 1),
            "eta": None if eta is None else round(eta, 1),
            "in_flight": in_flight, "allowed": allowed, "pushbacks": pushbacks,
            "from_checkpoint": self.from_checkpoint, "counts": dict(self.counts),
            "paid": self.counts["answered"] + self.counts["unreadable"],  # the answers the vendor charges for
            "waiting": self.waiting() if self.waiting is not None and self.done < self.total else None,
        }  # fmt: skip

    def _json(self, now: float) -> None:
        print(json.dumps({"ts": stamp(), "progress": self.snapshot(now)}, ensure_ascii=False), file=sys.stderr,
              flush=True)  # fmt: skip

    def summary(self) -> str:
        c = self.counts
        text = f"answered={c['answered']} 空号={c['空号']} 停机={c['停机']}"
        for kind in ("no info", "invalid", "unreadable", "failed"):  # answers are not errors: each by its name
            if c[kind]:
                text += f" {kind}={c[kind]}"
        text += f" from checkpoint={self.from_checkpoint}"
        if self.load is not None:  # what the service allows, as the engine sees it now
            in_flight, allowed, pushbacks = self.load()
            text += f" in flight={in_flight}/{allowed} push-backs={pushbacks}"
        return text

    def close(self, closing: str = "") -> None:
        """The last counts, and ``closing`` (what the service allowed) as a line of its own."""
        self._bar.set_postfix_str(self.summary(), refresh=False)
        self._bar.close()
        if self.style == "log":
            self._log(time.monotonic())
        elif self.style == "json":
            self._json(time.monotonic())
        if closing:
            self.note(closing)
