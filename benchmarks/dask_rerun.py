"""ddf.qxt.check re-running a finished export with most numbers distinct, beside pandas, same run.

Every number is already in the checkpoint, so nothing is paid and the cost is
the graph: distinct numbers, the query tasks (which find everything stored),
and the merge of all answers into every partition. With a million distinct
numbers the merge must not cost O(distinct) per partition: the ratio should
not grow with the number of partitions.

    python benchmarks/dask_rerun.py [--rows 2000000] [--distinct 1000000] [--partitions 8,32] 2>/dev/null
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import dask.dataframe as dd
import pandas as pd
from _exports import fill_checkpoint, mobile_column
from distributed import Client, LocalCluster

import qxt_pandas
import qxt_pandas.dask
from qxt_pandas.simulator import DEMO_APIKEY, spawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--distinct", type=int, default=1_000_000)
    parser.add_argument("--partitions", default="8,32")
    args = parser.parse_args()
    df = pd.DataFrame({"id": range(args.rows), "mobile": mobile_column(args.rows, args.distinct)})
    df["mobile"] = df["mobile"].astype("str")
    numbers = sorted(set(qxt_pandas.normalize_mobiles(df["mobile"])["qxt_mobile"].dropna()))
    with tempfile.TemporaryDirectory() as tmp, spawn("--latency", "0") as url:
        checkpoint = Path(tmp) / "done.qxt"
        fill_checkpoint(checkpoint, numbers)
        options = dict(apikey=DEMO_APIKEY, base_url=url, checkpoint=checkpoint, progress=False)
        start = time.perf_counter()
        df.qxt.check("mobile", **options)
        pandas_s = time.perf_counter() - start
        print(f"{args.rows:,} rows, {len(numbers):,} distinct numbers, all in the checkpoint")
        print(f"{'df.qxt.check (pandas)':>40}: {pandas_s:6.2f} s")
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        with cluster, Client(cluster):
            for parts in (int(p) for p in args.partitions.split(",")):
                ddf = dd.from_pandas(df, npartitions=parts)
                start = time.perf_counter()
                ddf.qxt.check("mobile", **options).compute()
                dask_s = time.perf_counter() - start
                print(f"{f'ddf.qxt.check ({parts} partitions, 2 proc)':>40}: {dask_s:6.2f} s   "
                      f"ratio to pandas {dask_s / pandas_s:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
