"""What one paid query costs the client: df.qxt.check beside raw aiohttp in the same run.

The simulator runs in its own process. For each latency, the same distinct
numbers (realistic: most distinct) are asked twice with 256 requests in flight:

- baseline: raw aiohttp, 256 workers posting prebuilt form bodies and
  ``json.loads``-ing the answers: the least a client can do;
- ``df.qxt.check(concurrency=256)`` with a checkpoint and progress on.

Printed: numbers/s, share of the ideal (256 / latency), client CPU ms per
number, and the ratios to the baseline; each the best of ``--repeat`` runs
(alternating, new numbers each time: this machine is shared and noisy). At
latency 0 the service answers as fast as it can: throughput there is the
first run of a big export.

    python benchmarks/query_cost.py [--numbers 20000] [--latencies 0.1,0] [--concurrency 256] [--repeat 3] 2>/dev/null
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pandas as pd
from _exports import numbers

import qxt_pandas  # noqa: F401
from qxt_pandas.simulator import DEMO_APIKEY, spawn


async def raw(url: str, todo: list[str], concurrency: int) -> None:
    queue = iter(todo)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for mobile in queue:
                body = urlencode({"apikey": DEMO_APIKEY, "mobile": mobile}).encode()
                async with session.post(
                    f"{url}/ssPhone_Status", data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
                ) as resp:
                    json.loads(await resp.read())  # fmt: skip

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--numbers", type=int, default=20_000)
    parser.add_argument("--latencies", default="0.1,0")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    latencies = [float(x) for x in args.latencies.split(",")]
    pool = iter(numbers(2 * args.numbers * args.repeat * len(latencies), seed=11).tolist())
    print(f"{args.numbers:,} distinct numbers per run, {args.concurrency} in flight; simulator in its own process; "
          f"best of {args.repeat}")  # fmt: skip
    print(f"{'latency':>7} {'client':>36} {'num/s':>7} {'of ideal':>8} {'CPU ms/num':>10}")
    for latency in latencies:
        best = {"raw aiohttp": (0.0, 1e9), "df.qxt.check (checkpoint, progress)": (0.0, 1e9)}
        with spawn("--latency", str(latency)) as url, tempfile.TemporaryDirectory() as tmp:
            for k in range(args.repeat):
                todo: list[str] = []
                runs = {
                    "raw aiohttp": lambda: asyncio.run(raw(url, todo, args.concurrency)),  # noqa: B023
                    "df.qxt.check (checkpoint, progress)": lambda: pd.DataFrame({"mobile": todo}).qxt.check(  # noqa: B023
                        "mobile", apikey=DEMO_APIKEY, base_url=url, concurrency=args.concurrency,
                        checkpoint=Path(tmp) / f"ck{k}", progress=True),  # noqa: B023
                }  # fmt: skip
                for name, run in runs.items():
                    todo = [next(pool) for _ in range(args.numbers)]
                    wall, cpu = timed(run)
                    best[name] = (max(best[name][0], args.numbers / wall), min(best[name][1], cpu / args.numbers))
        ideal = args.concurrency / latency if latency else None
        for name, (rate, cpu) in best.items():
            share = f"{rate / ideal:8.2f}" if ideal else f"{'-':>8}"
            print(f"{latency:7.2f} {name:>36} {rate:7.0f} {share} {1000 * cpu:10.3f}")
        (raw_rate, raw_cpu), (qxt_rate, qxt_cpu) = best.values()
        print(f"{'':7} {'ratios qxt / raw:':>36} {qxt_rate / raw_rate:7.2f} {'':8} {qxt_cpu / raw_cpu:10.2f}")


if __name__ == "__main__":
    main()
