"""Default options against a service that pushes back: answered, push-back share, throughput, concurrency over time.

The simulator runs in its own process at 100 ms latency with a capacity (requests
it holds at once; beyond, it answers -8 at once, uncharged). Each scenario times
one whole ``df.qxt.check`` with default options (no ``concurrency`` given) over
distinct numbers, while a sampler reads the simulator's requests in flight every
0.25 s (``GET /_simulator``):

- capacity 10: ideal throughput is capacity / latency = 100 numbers/s;
- capacity 60, dropping to 15 when half the numbers are answered (ideal: 600/s, then 150/s);
- no capacity limit, beside ``concurrency=64`` (the old fixed default) in the same run.

    python benchmarks/adaptive_concurrency.py [--numbers 1200] 2>/dev/null
"""

from __future__ import annotations

import argparse
import threading
import time

import httpx
import pandas as pd

import qxt_pandas  # noqa: F401
from qxt_pandas.simulator import DEMO_APIKEY, spawn

LATENCY = 0.1


def frame(n: int, start: int) -> pd.DataFrame:
    return pd.DataFrame({"mobile": [f"139{i:08d}" for i in range(start, start + n)]})


class Sampler:
    """Reads the simulator's counters every ``every`` seconds in a thread; can change its capacity once."""

    def __init__(self, url: str, every: float = 0.25) -> None:
        self.url, self.every = f"{url}/_simulator", every
        self.samples: list[tuple[float, int, int]] = []  # (seconds, in flight, capacity)
        self._stop = threading.Event()
        self.drop: tuple[int, int] | None = None  # (after this many charged answers, new capacity)

    def stats(self) -> dict:
        return httpx.get(self.url).json()

    def set(self, **knobs: object) -> dict:
        return httpx.post(self.url, json=knobs).json()

    def __enter__(self) -> Sampler:
        self.start = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            stats = self.stats()
            if self.drop and stats["charged"] >= self.drop[0]:
                stats = self.set(capacity=self.drop[1])
                self.drop = None
            self.samples.append((time.monotonic() - self.start, stats["in_flight"], stats["capacity"] or 0))


def scenario(url: str, name: str, numbers: pd.DataFrame, capacity: int | None, drop=None, **options) -> dict:
    sampler = Sampler(url)
    before = sampler.set(capacity=capacity)
    sampler.drop = drop
    with sampler:
        started = time.perf_counter()
        out = numbers.qxt.check("mobile", apikey=DEMO_APIKEY, base_url=url, progress=False, **options)
        elapsed = time.perf_counter() - started
    after = sampler.stats()
    requests = after["requests"] - before["requests"] - 1  # the preflight's balance read is not refused
    refused = after["refused"] - before["refused"]
    answered = int(out["qxt_code"].isin([0, -4]).sum())
    return {"name": name, "numbers": len(numbers), "answered": answered, "seconds": elapsed,
            "rate": len(numbers) / elapsed, "pushback": refused / requests, "samples": sampler.samples}  # fmt: skip


def show(result: dict, ideal: float | None) -> None:
    share = f"; {result['rate'] / ideal:.2f} of ideal ({ideal:.0f}/s)" if ideal else ""
    print(f"{result['name']}: {result['answered']:,}/{result['numbers']:,} answered in {result['seconds']:.1f} s, "
          f"{result['rate']:.0f} numbers/s{share}; push-back {result['pushback']:.1%} of requests")  # fmt: skip


def timeline(result: dict, every: float = 1.0) -> None:
    """Requests in flight at the service (sampled), one row a second."""
    print("    t (s)  in flight  capacity")
    shown = -every
    for t, in_flight, capacity in result["samples"]:
        if t - shown >= every:
            shown = t
            print(f"    {t:5.1f}  {in_flight:9d}  {capacity or '-':>8}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--numbers", type=int, default=1200)
    args = parser.parse_args()
    n = args.numbers
    with spawn("--latency", str(LATENCY)) as url:
        ten = scenario(url, "capacity 10", frame(n, 0), 10)
        show(ten, ideal=10 / LATENCY)
        timeline(ten)
        drop = scenario(url, "capacity 60 -> 15", frame(4 * n, 10_000_000), 60, drop=(2 * n, 15))
        show(drop, ideal=None)
        timeline(drop, every=0.5)
        free = scenario(url, "no capacity limit, auto", frame(5 * n, 20_000_000), None)
        fixed = scenario(url, "no capacity limit, concurrency=64", frame(5 * n, 30_000_000), None, concurrency=64)
        show(free, ideal=None)
        show(fixed, ideal=64 / LATENCY)
        print(f"auto against 0.86 x 64 / latency = {0.86 * 64 / LATENCY:.0f}/s: {free['rate'] / (64 / LATENCY):.2f} "
              f"x 64/latency; ratio auto / fixed 64 in this run: {free['rate'] / fixed['rate']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
