"""``python -m qxt_pandas.simulator.demo FILE``: check a CSV of numbers against the simulator.

Starts the simulator on loopback (100 ms latency, as the vendor quotes) and
runs the real thing over HTTP: ``df.qxt.plan``, then ``df.qxt.check`` with a
checkpoint, then the same check again, which is answered from the checkpoint
and pays for nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import pandas as pd

import qxt_pandas  # noqa: F401 (registers .qxt)

from ._app import Simulator
from ._serve import serve
from ._state import DEMO_APIKEY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qxt_pandas.simulator.demo", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="a CSV file with a 'mobile' column")
    parser.add_argument("--column", default="mobile")
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--checkpoint", help="checkpoint directory (default: a temporary one)")
    args = parser.parse_args(argv)
    df = pd.read_csv(args.file, dtype=str, comment="#")

    sim = Simulator(latency=args.latency)
    with serve(sim) as url, tempfile.TemporaryDirectory() as tmp:
        options = dict(apikey=DEMO_APIKEY, base_url=url, checkpoint=args.checkpoint or f"{tmp}/demo.qxt")
        print(f"QXT simulator on {url}\n")
        print(df.qxt.plan(args.column, **options), "\n")
        out = df.qxt.check(args.column, **options)
        paid = len(sim.ledger)
        again = df.qxt.check(args.column, progress=False, **options)
    shown = [c for c in out.columns if c != "qxt_checked_at"]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.unicode.east_asian_width", True):
        print(out[shown].to_string(index=False))
    same = again.drop(columns="qxt_checked_at").equals(out.drop(columns="qxt_checked_at"))
    print(
        f"\n{len(df)} rows, {paid} paid queries. The same check again, from the checkpoint: "
        f"{len(sim.ledger) - paid} paid queries, same answers: {same}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
