"""Client throughput against the simulator over loopback, as a share of the ideal.

The simulator runs in its own process with a fixed latency; a fixed set of
workers (as the engine will use) pulls numbers from a queue through one
client. Ideal throughput is concurrency / latency. Printed beside the same
run's baseline: the same workers over a plain ``httpx.AsyncClient`` with
httpx's own connection pool.

    python benchmarks/client_throughput.py [--latency 0.1] [--rounds 30] [--levels 16,64,256]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time

import httpx

from qxt_pandas import AsyncClient, NumberError
from qxt_pandas.simulator import DEMO_APIKEY, spawn


def numbers(n: int) -> list[str]:
    return [f"139{i:08d}" for i in range(n)]


async def drive(concurrency: int, todo: list[str], ask) -> tuple[float, float]:
    """Run ``ask`` over ``todo`` with ``concurrency`` workers; (wall seconds, CPU seconds)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for m in todo:
        queue.put_nowait(m)

    async def worker() -> None:
        while not queue.empty():
            await ask(queue.get_nowait())

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - wall, time.process_time() - cpu


async def with_library(url: str, concurrency: int, todo: list[str]) -> tuple[float, float]:
    async with AsyncClient(DEMO_APIKEY, base_url=url, max_connections=concurrency, retries=0) as client:

        async def ask(m: str) -> None:
            with contextlib.suppress(NumberError):
                await client.status(m)

        await ask(todo[0])  # open a connection before the clock starts
        return await drive(concurrency, todo, ask)


async def with_plain_httpx(url: str, concurrency: int, todo: list[str]) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def ask(m: str) -> None:
            r = await client.post("/ssPhone_Status", data={"apikey": DEMO_APIKEY, "mobile": m})
            r.json()

        await ask(todo[0])
        return await drive(concurrency, todo, ask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=30, help="requests per worker")
    parser.add_argument("--levels", default="16,64,256")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    print(f"latency {args.latency * 1000:.0f} ms, {args.rounds} requests per worker, simulator in its own process")
    print(f"{'concurrency':>11} {'client':>16} {'req/s':>8} {'ideal':>7} {'achieved/ideal':>15} {'CPU ms/req':>11}")
    with spawn("--latency", str(args.latency)) as url:
        for concurrency in levels:
            todo = numbers(concurrency * args.rounds)
            ideal = concurrency / args.latency
            for name, run in (("qxt_pandas", with_library), ("plain httpx", with_plain_httpx)):
                wall, cpu = asyncio.run(run(url, concurrency, todo))
                rate = len(todo) / wall
                print(
                    f"{concurrency:>11} {name:>16} {rate:>8.0f} {ideal:>7.0f} {rate / ideal:>15.2f} "
                    f"{cpu / len(todo) * 1000:>11.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
