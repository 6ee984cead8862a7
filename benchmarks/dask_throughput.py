"""ddf.qxt.check on a 2-worker LocalCluster beside df.qxt.check on the same data, same run.

The simulator runs in its own process at 100 ms latency. Both sides use the
same global concurrency (Dask splits it between its query tasks), a fresh
checkpoint each, and ``--numbers`` distinct numbers written twice each.

    python benchmarks/dask_throughput.py [--numbers 2560] [--concurrency 64] 2>/dev/null
"""

from __future__ import annotations

import argparse
import tempfile
import time

import dask.dataframe as dd
import pandas as pd
from distributed import Client, LocalCluster

import qxt_pandas.dask  # noqa: F401
from qxt_pandas.simulator import DEMO_APIKEY, spawn


def frame(n: int, start: int) -> pd.DataFrame:
    numbers = [f"139{i:08d}" for i in range(start, start + n)]
    return pd.DataFrame({"mobile": numbers + [f"+86 {m}" for m in numbers]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=2560)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    ideal = args.concurrency / 0.1
    with (
        spawn("--latency", "0.1") as url,
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster),
        tempfile.TemporaryDirectory() as tmp,
    ):
        options = dict(apikey=DEMO_APIKEY, base_url=url, concurrency=args.concurrency)
        df = frame(args.numbers, 0)
        start = time.perf_counter()
        df.qxt.check("mobile", checkpoint=f"{tmp}/pandas", progress=False, **options)
        pandas_rate = args.numbers / (time.perf_counter() - start)
        ddf = dd.from_pandas(frame(args.numbers, 10_000_000), npartitions=8)
        start = time.perf_counter()
        ddf.qxt.check("mobile", checkpoint=f"{tmp}/dask", **options).compute()
        dask_rate = args.numbers / (time.perf_counter() - start)
    print(f"{args.numbers:,} distinct numbers (each in two rows), concurrency {args.concurrency}, latency 100 ms")
    print(f"{'df.qxt.check (pandas)':>36}: {pandas_rate:7.0f} numbers/s  ({pandas_rate / ideal:.2f} of ideal)")
    print(
        f"{'ddf.qxt.check (LocalCluster, 2 proc)':>36}: {dask_rate:7.0f} numbers/s  ({dask_rate / ideal:.2f} of ideal)"
    )
    print(f"ratio dask / pandas: {dask_rate / pandas_rate:.2f}")


if __name__ == "__main__":
    main()
