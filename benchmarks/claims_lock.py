"""How long one claim of 1M numbers keeps every other run from claiming, each store (issue 32).

A run claims the numbers it will pay for under the store's claims lock (a file lock on a directory,
an advisory lock on PostgreSQL). This claims ``--numbers`` numbers in one process while a second
process claims one other number at a time, again and again, and prints the longest any of those small
claims took: how long the big claim kept the lock at once (target: at most 100 ms), beside the big
claim's own time and the small claims' time with no big claim running (the baseline).

Usage: ``python benchmarks/claims_lock.py [--numbers 1000000] [--no-postgres]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from qxt_pandas.stores import open_store


def _claim(location: str, numbers: list[str]) -> float:
    """Seconds to claim ``numbers`` in a store of one's own (released at once)."""
    store = open_store(location, service="127.0.0.1")
    store.bind(simulator=True)
    try:
        started = time.perf_counter()
        claim = asyncio.run(store.claim(numbers, None))
        took = time.perf_counter() - started
        claim.release()
        return took
    finally:
        store.close()


def _lock_waits(location: str, until: Path) -> list[float]:
    """Take the store's claims lock alone, every 5 ms until ``until`` exists: each wait for it. (Not back to back:
    a claimer polls for the lock, and a process that takes it back to back would starve it.)"""
    from qxt_pandas.stores.postgres.store import _CLAIMS_LOCK

    waits: list[float] = []
    if location.startswith("postgresql"):
        import psycopg

        with psycopg.connect(location.split("&schema=")[0], autocommit=True) as conn:
            while not until.exists():
                started = time.perf_counter()
                with conn.transaction():
                    conn.execute("select pg_advisory_xact_lock(%s)", (_CLAIMS_LOCK,))
                waits.append(time.perf_counter() - started)
                time.sleep(0.005)
        return waits
    from qxt_pandas.system.locks import lock

    while not until.exists():
        started = time.perf_counter()
        with lock(Path(location) / "claims.lock"):
            waits.append(time.perf_counter() - started)
        time.sleep(0.005)
    return waits


def probe(location: str, until: Path) -> None:
    """Claim one number at a time until ``until`` exists; print each claim's seconds as JSON."""
    store = open_store(location, service="127.0.0.1")
    store.bind(simulator=True)
    took: list[float] = []

    async def run() -> None:
        k = 0
        while not until.exists() or k < 5:
            started = time.perf_counter()
            claim = await store.claim([f"1380000{k:04d}"], None)
            took.append(time.perf_counter() - started)
            claim.release()
            k += 1
            Path(str(until) + ".started").touch()

    try:
        asyncio.run(run())
    finally:
        store.close()
    print(json.dumps(took))


def main() -> None:
    if sys.argv[1:2] == ["--probe"]:
        probe(sys.argv[2], Path(sys.argv[3]))
        return
    if sys.argv[1:2] == ["--lock"]:
        waits = _lock_waits(sys.argv[2], Path(sys.argv[3]))
        print(json.dumps(waits))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=1_000_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    big = [f"139{i:08d}" for i in range(args.numbers)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stores = {"directory": str(root / "claims.qxt")}
        if not args.no_postgres:
            import pgserver

            stores["postgresql"] = pgserver.get_server(root / "pg", cleanup_mode="stop").get_uri() + "&schema=claims"
        for kind, location in stores.items():
            _claim(location, ["13800000000"])  # made and bound
            done = root / f"{kind}.done"
            (root / "now").touch()  # the baseline: five claims of one number, nothing else going on
            alone = subprocess.run([sys.executable, __file__, "--probe", location, str(root / "now")],
                                   capture_output=True, text=True, check=True)  # fmt: skip
            baseline = max(json.loads(alone.stdout.splitlines()[-1]))
            prober = subprocess.Popen([sys.executable, __file__, "--probe", location, str(done)],
                                      stdout=subprocess.PIPE, text=True)  # fmt: skip
            locker = subprocess.Popen([sys.executable, __file__, "--lock", location, str(done)],
                                      stdout=subprocess.PIPE, text=True)  # fmt: skip
            while not Path(str(done) + ".started").exists():  # the prober claims away
                time.sleep(0.05)
            seconds = _claim(location, big)
            done.touch()
            out, _ = prober.communicate(timeout=120)
            waits = json.loads(out.splitlines()[-1])
            held = json.loads(locker.communicate(timeout=120)[0].splitlines()[-1])
            print(f"{kind:<11} one claim of {args.numbers:,} numbers: {seconds:5.2f} s; the claims lock taken by "
                  f"another process meanwhile: {len(held):,} times, the longest wait {1000 * max(held):,.0f} ms "
                  f"(target <= 100 ms); another run's claims of one number: {len(waits)}, the longest "
                  f"{1000 * max(waits):,.0f} ms (alone: {1000 * baseline:,.0f} ms)")  # fmt: skip


if __name__ == "__main__":
    main()
