"""df.qxt.check throughput against the simulator over loopback, as a share of the ideal.

The simulator runs in its own process at 100 ms latency. For each concurrency,
the whole ``df.qxt.check`` call is timed (checkpoint and progress on, the
preflight balance request included) over ``rounds × concurrency`` distinct
numbers; ideal throughput is concurrency / latency. Beside it, the same run's
baselines: sequential ``df[col].apply(client.status)``, and ``asyncio.gather``
over a plain ``httpx.AsyncClient`` (its own pool, ``max_connections`` =
concurrency). The baselines use fewer numbers, since they are slow.

    python benchmarks/check_throughput.py [--levels 64,256] [--rounds 60] 2>/dev/null
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import httpx
import pandas as pd

import qxt_pandas  # noqa: F401
from qxt_pandas import Client, NumberError
from qxt_pandas.simulator import DEMO_APIKEY, spawn


def frame(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"mobile": [f"139{i:08d}" for i in range(start, start + n)]})


def sequential(url: str, n: int) -> float:
    df = frame(n, 50_000_000)

    def status(m: str):
        try:
            return client.status(m)
        except NumberError:
            return None

    with Client(DEMO_APIKEY, base_url=url) as client:
        start = time.perf_counter()
        df["mobile"].apply(status)
        return n / (time.perf_counter() - start)


def plain_gather(url: str, concurrency: int, n: int) -> float:
    numbers = frame(n, 60_000_000)["mobile"].tolist()

    async def go() -> float:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            start = time.perf_counter()
            await asyncio.gather(
                *(client.post("/ssPhone_Status", data={"apikey": DEMO_APIKEY, "mobile": m}) for m in numbers)
            )
            return n / (time.perf_counter() - start)

    return asyncio.run(go())


def library(url: str, concurrency: int, n: int, start: int) -> tuple[float, float]:
    df = frame(n, start)
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        out = df.qxt.check(
            "mobile", apikey=DEMO_APIKEY, base_url=url, checkpoint=f"{tmp}/bench.qxt", concurrency=concurrency,
            progress=True,
        )  # fmt: skip
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert out["qxt_code"].notna().all()
    return n / wall, cpu / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--jitter", type=float, default=0.0, help="+/- seconds, uniform; the mean stays --latency")
    parser.add_argument("--levels", default="64,256")
    parser.add_argument("--rounds", type=int, default=60, help="numbers per worker for df.qxt.check")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    print(f"latency {args.latency * 1000:.0f} ms ± {args.jitter * 1000:.0f} ms; simulator in its own process; "
          "rates in numbers/s")  # fmt: skip
    header = ("concurrency", "what", "numbers", "rate", "ideal", "of ideal", "CPU ms/num")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (11, 34, 8, 8, 7, 9, 11), strict=True)))
    with spawn("--latency", str(args.latency), "--jitter", str(args.jitter)) as url:
        n_seq = 20
        rate = sequential(url, n_seq)
        ideal1 = 1 / args.latency
        what = "df[col].apply(client.status)"
        print(f"{1:>11} {what:>34} {n_seq:>8} {rate:>8.1f} {ideal1:>7.0f} {rate / ideal1:>9.2f}")
        for i, concurrency in enumerate(levels):
            ideal = concurrency / args.latency
            n = concurrency * args.rounds
            rate, cpu = library(url, concurrency, n, start=i * 10_000_000)
            print(f"{concurrency:>11} {'df.qxt.check (checkpoint, progress)':>34} {n:>8} {rate:>8.0f} {ideal:>7.0f} "
                  f"{rate / ideal:>9.2f} {cpu:>11.3f}", flush=True)  # fmt: skip
            n_plain = concurrency * 3
            rate = plain_gather(url, concurrency, n_plain)
            print(f"{concurrency:>11} {'asyncio.gather, plain httpx':>34} {n_plain:>8} {rate:>8.0f} {ideal:>7.0f} "
                  f"{rate / ideal:>9.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
