"""Throughput through a flaky vendor, against a fault-free one, in one run (issue 34).

Random faults are not overload: a steady share of requests fails (the simulator's mix: -8 busy,
HTTP 5xx, a truncated body, a reset, a hang until the client's timeout), whatever the load. Each
scenario starts a simulator process of its own (50 ms latency) and checks distinct numbers with
the default options (``concurrency="auto"``) and ``--timeout``, no checkpoint:

- fault-free, 1 % faults and 5 % faults: numbers a second, and the ratio to fault-free
  (targets: >= 0.8 at 1 %, >= 0.6 at 5 %);
- issue 10's vendor at capacity (100 ms latency, 10 requests held at once, beyond them -8 at
  once): numbers a second against the ideal 100/s (target >= 0.8) and the share refused
  (target <= 10 %).

    python benchmarks/flaky_vendor.py [--numbers 20000] [--timeout 10]
"""

from __future__ import annotations

import argparse
import time

import httpx
import pandas as pd

import qxt_pandas  # noqa: F401
from qxt_pandas.simulator import DEMO_APIKEY, spawn


def frame(n: int, start: int) -> pd.DataFrame:
    return pd.DataFrame({"mobile": [f"139{i:08d}" for i in range(start, start + n)]})


def timed(url: str, numbers: pd.DataFrame, timeout: float) -> tuple[float, int, dict]:
    """(numbers a second, numbers answered, the simulator's counters) for one check."""
    before = httpx.get(f"{url}/_simulator").json()
    started = time.perf_counter()
    out = numbers.qxt.check("mobile", apikey=DEMO_APIKEY, base_url=url, progress=False, timeout=timeout)
    seconds = time.perf_counter() - started
    after = httpx.get(f"{url}/_simulator").json()
    counts = {k: after[k] - before[k] for k in ("requests", "refused", "charged")}
    return len(numbers) / seconds, int(out["qxt_code"].isin([0, -4]).sum()), counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=10.0, help="the client's timeout per attempt (default 10)")
    args = parser.parse_args()
    rates = {}
    for share, n in ((0.0, args.numbers), (0.01, args.numbers), (0.05, args.numbers // 4)):
        with spawn("--latency", "0.05", "--faults", str(share)) as url:
            rate, answered, counts = timed(url, frame(n, int(share * 1e9)), args.timeout)
        rates[share] = rate
        extra = f", {rate / rates[0.0]:.2f}x fault-free (target >= {0.8 if share < 0.05 else 0.6})" if share else ""
        print(f"faults {share:4.0%}: {n:,} numbers at {rate:,.0f}/s{extra}; {answered:,} answered, "
              f"{counts['requests']:,} requests, {counts['charged']:,} charged")  # fmt: skip
    with spawn("--latency", "0.1", "--capacity", "10") as url:
        rate, answered, counts = timed(url, frame(1200, 90_000_000), args.timeout)
    print(f"capacity 10 at 100 ms (ideal 100/s): {rate:.0f}/s = {rate / 100:.2f} of capacity (target >= 0.8); "
          f"refused {counts['refused'] / max(counts['requests'], 1):.1%} of requests (target <= 10 %)")  # fmt: skip


if __name__ == "__main__":
    main()
