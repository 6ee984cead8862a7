"""The PostgreSQL store against the directory store, in the same run (issue 18's targets).

Starts a real PostgreSQL (pgserver) and the simulator over loopback, then prints:

1. first run, ``--numbers`` (20,000) distinct numbers, 100 ms latency, default
   concurrency: throughput of each store and their ratio (target >= 0.95);
2. two ``qxt check`` processes from different working directories, sharing only
   the database, the same 5,000 numbers: numbers paid twice (target 0);
3. a run over 1,000 numbers against a store of ``--stored`` (1M) answers: rows
   the store read (pg_stat_user_tables), the run's peak memory against the same
   run on an empty store (target <= 1.2), and its store time (target <= 2 s);
4. a finished re-run of a 1M-row / 10k-distinct frame: time of each store and
   their ratio (target <= 1.5).

Usage: ``python benchmarks/store_postgres.py [--numbers 20000] [--stored 1000000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from _exports import numbers

import qxt_pandas  # noqa: F401  (registers df.qxt)
from qxt_pandas.simulator import DEMO_APIKEY, Simulator, serve

# A run of 1,000 numbers in its own process: peak memory and the time spent in the store.
ONE_RUN = f"""
import json, resource, sys, time, pandas as pd, qxt_pandas
from qxt_pandas.stores import store as s
url, location, path = sys.argv[1:4]
spent = [0.0]
opened = s.open_store
def timed(*a, **k):
    t = time.perf_counter(); st = opened(*a, **k); spent[0] += time.perf_counter() - t
    for name in ("answers", "claim", "writer", "bind", "add_receipt"):
        method = getattr(st, name)
        def wrap(*x, _m=method, **y):
            t = time.perf_counter(); r = _m(*x, **y); spent[0] += time.perf_counter() - t; return r
        setattr(st, name, wrap)
    return st
import qxt_pandas.pipeline as p
p.open_store = timed
frame = pd.read_parquet(path)
frame.qxt.check("m", apikey="{DEMO_APIKEY}", base_url=url, checkpoint=location, progress=False)
print(json.dumps({{"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "store_s": spent[0]}}))
"""


def first_run(url: str, location: str, mobiles: list[str]) -> float:
    frame = pd.DataFrame({"m": mobiles})
    started = time.perf_counter()
    frame.qxt.check("m", apikey=DEMO_APIKEY, base_url=url, checkpoint=location, progress=False)
    return len(mobiles) / (time.perf_counter() - started)


def fill(uri: str, schema: str, count: int) -> None:
    """``count`` answers straight into a store's table (COPY: the benchmark's setup, not what it measures)."""
    store_uri = f"{uri}&schema={schema}"
    tiny = Simulator()
    with serve(tiny) as url:  # creates the schema and binds it to the simulator
        pd.DataFrame({"m": ["13972565391"]}).qxt.check("m", apikey=DEMO_APIKEY, base_url=url, checkpoint=store_uri,
                                                      progress=False)  # fmt: skip
    now = time.time()
    with psycopg.connect(uri) as conn, conn.cursor() as cur:
        with cur.copy(f'copy "{schema}".answers (mobile, code, status, checked_at) from stdin') as copy:
            for k in range(count):
                copy.write_row((f"150{k:08d}", 0, "正常", now))
        conn.commit()


def rows_read(uri: str, schema: str) -> int:
    with psycopg.connect(uri) as conn:
        row = conn.execute("select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) from pg_stat_user_tables "
                           "where schemaname = %s and relname = 'answers'", (schema,)).fetchone()  # fmt: skip
    return int(row[0])


def one_run(url: str, location: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", ONE_RUN, url, location, str(path)], capture_output=True, text=True,
                         check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=20_000)
    parser.add_argument("--stored", type=int, default=1_000_000)
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(tempfile.mkdtemp(prefix="qxt-bench-pg-"), cleanup_mode="stop")
    base = server.get_uri()
    tmp = Path(tempfile.mkdtemp(prefix="qxt-bench-"))
    mobiles = numbers(args.numbers).tolist()
    sim = Simulator(latency=0.1)
    with serve(sim) as url:
        # 1. first-run throughput
        directory = first_run(url, str(tmp / "first.qxt"), mobiles)
        database = first_run(url, f"{base}&schema=first", mobiles)
        print(
            f"1. first run, {args.numbers:,} numbers, 100 ms: directory {directory:,.0f}/s, PostgreSQL "
            f"{database:,.0f}/s, ratio {database / directory:.2f} (target >= 0.95)"
        )
        # 2. two processes sharing only the database
        sim.ledger.clear()
        shared = numbers(5000, seed=11).tolist()
        procs = []
        for name in ("a", "b"):
            work = tmp / name
            work.mkdir()
            pd.DataFrame({"m": shared}).to_csv(work / "in.csv", index=False)
            env = {**os.environ, "QXT_APIKEY": DEMO_APIKEY}
            procs.append(subprocess.Popen([sys.executable, "-m", "qxt_pandas.cli", "check", "in.csv",
                                           "--column", "m", "--output", "out.csv", "--checkpoint",
                                           f"{base}&schema=shared", "--base-url", url, "--progress", "off"],
                                          cwd=work, env=env))  # fmt: skip
        codes = [p.wait() for p in procs]
        twice = sum(n - 1 for n in sim.ledger.paid(DEMO_APIKEY).values())
        print(f"2. two processes, 5,000 numbers, only the database shared: exit {codes}, paid twice {twice} (target 0)")
    # 3. 1,000 numbers against a big store (latency off: the store is what is measured)
    fast = Simulator()
    with serve(fast) as url:
        fill(base, "big", args.stored)
        fill(base, "empty", 0)
        run = tmp / "run.parquet"
        stored = [f"150{k:08d}" for k in range(0, args.stored, max(1, args.stored // 500))][:500]
        pd.DataFrame({"m": stored + numbers(1000 - len(stored), seed=23).tolist()}).to_parquet(run)  # half stored
        before = rows_read(base, "big")
        big = one_run(url, f"{base}&schema=big", run)
        read = rows_read(base, "big") - before
        empty = one_run(url, f"{base}&schema=empty", run)
        print(
            f"3. 1,000 numbers against {args.stored:,} stored: rows read {read:,} (target <= 10,000); peak "
            f"{big['peak_mb']:.0f} MB vs {empty['peak_mb']:.0f} MB on an empty store, ratio "
            f"{big['peak_mb'] / empty['peak_mb']:.2f} (target <= 1.2); store time {big['store_s']:.2f} s "
            "(target <= 2)"
        )
        # 4. a finished re-run of 1M rows over 10k distinct numbers
        distinct = numbers(10_000, seed=31)
        frame = pd.DataFrame({"m": distinct[np.random.default_rng(5).integers(0, len(distinct), 1_000_000)]})
        times = {}
        for kind, location in (("directory", str(tmp / "rerun.qxt")), ("PostgreSQL", f"{base}&schema=rerun")):
            frame.qxt.check("m", apikey=DEMO_APIKEY, base_url=url, checkpoint=location, progress=False)
            started = time.perf_counter()
            frame.qxt.check("m", apikey=DEMO_APIKEY, base_url=url, checkpoint=location, progress=False)
            times[kind] = time.perf_counter() - started
        print(
            f"4. finished re-run, 1M rows / 10k distinct: directory {times['directory']:.2f} s, PostgreSQL "
            f"{times['PostgreSQL']:.2f} s, ratio {times['PostgreSQL'] / times['directory']:.2f} (target <= 1.5)"
        )
    server.cleanup()


if __name__ == "__main__":
    main()
