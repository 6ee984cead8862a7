"""The Polars namespace beside the pandas accessor: a finished re-run of the same export, same run.

The export: ``--rows`` rows over ``--unique`` distinct numbers (some spelled
messily), read once by each library from the same CSV (all text). Its
checkpoint already answers every number, so neither side sends a request:
the time is normalization, the checkpoint lookup and building the result.
The two results are compared row for row first. Best of ``--repeat``.

    python benchmarks/polars_rerun.py [--rows 1000000] [--unique 10000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import polars as pl
from _exports import fill_checkpoint
from _timing import best
from rerun_overhead import export

import qxt_pandas
import qxt_pandas.polars  # (registers .qxt on Polars)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--unique", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv, checkpoint = Path(tmp) / "export.csv", Path(tmp) / "done.qxt"
        export(args.rows, args.unique).to_csv(csv, index=False)
        frame = pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[""])
        polars_frame = pl.read_csv(csv, infer_schema=False)
        numbers = sorted(set(qxt_pandas.normalize_mobiles(frame["mobile"])["qxt_mobile"].dropna()))
        fill_checkpoint(checkpoint, numbers, simulator=None)  # unbound: a re-run sends no request at all
        options = dict(apikey="x" * 32, base_url="http://127.0.0.1:9", checkpoint=checkpoint, progress=False)
        via_pandas = frame.qxt.check("mobile", **options)  # port 9: nothing listens; a paid query would fail
        via_polars = polars_frame.qxt.check("mobile", **options)
        same = via_polars.drop("qxt_checked_at").to_pandas().astype(object).where(lambda f: f.notna(), None)
        theirs = via_pandas.drop(columns="qxt_checked_at").astype(object).where(lambda f: f.notna(), None)
        assert same.values.tolist() == theirs.values.tolist(), "the Polars result differs from the pandas one"
        t_pandas = best(lambda: frame.qxt.check("mobile", **options), args.repeat)
        t_polars = best(lambda: polars_frame.qxt.check("mobile", **options), args.repeat)
    print(f"{args.rows:,} rows, {args.unique:,} numbers, all answered in the checkpoint; "
          f"pandas {pd.__version__}, polars {pl.__version__}; results equal row for row")  # fmt: skip
    print(f"{'pandas df.qxt.check (re-run)':>32}: {t_pandas:6.3f} s")
    print(f"{'polars df.qxt.check (re-run)':>32}: {t_polars:6.3f} s   ratio to pandas {t_polars / t_pandas:.2f}")


if __name__ == "__main__":
    main()
