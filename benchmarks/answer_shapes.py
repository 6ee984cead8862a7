"""Requests per number, answers kept and re-run requests for each answer shape (issue 16).

Serves the simulator over loopback in each ``shape`` the vendor's document
shows (``json`` is the baseline), checks ``--numbers`` distinct numbers with
a checkpoint, then checks them again, and prints per shape: requests sent
for the first run as a ratio of numbers (target 1.00), answers kept (code 0
or -101 "charged, unreadable"), the ledger's paid-twice count, and requests
the re-run sent (target 0).

Usage: ``python benchmarks/answer_shapes.py [--numbers 1000]``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from _exports import numbers

import qxt_pandas  # noqa: F401  (registers df.qxt)
from qxt_pandas.simulator import DEMO_APIKEY, SHAPES, Simulator, serve


def measure(shape: str, mobiles: list[str], where: Path) -> dict[str, object]:
    sim = Simulator(shape=shape)
    frame = pd.DataFrame({"mobile": mobiles})
    with serve(sim) as url:
        run = dict(apikey=DEMO_APIKEY, base_url=url, checkpoint=where / f"{shape}.qxt", progress=False)
        first = frame.qxt.check("mobile", **run)
        asked = sim.requests_by_path["/ssphone_status"]
        frame.qxt.check("mobile", **run)
        again = sim.requests_by_path["/ssphone_status"] - asked
    codes = first["qxt_code"]
    return {
        "shape": shape,
        "requests/number": f"{asked / len(mobiles):.2f}",
        "kept": int(codes.isin([0, -101]).sum()),
        "unreadable": int((codes == -101).sum()),
        "no-status": int(((codes == 0) & first["Status"].isna()).sum()),
        "not found (-4)": int((codes == -4).sum()),
        "paid twice": len(sim.ledger.paid_twice()),
        "re-run requests": again,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=1000)
    args = parser.parse_args()
    mobiles = numbers(args.numbers).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(shape, mobiles, Path(tmp)) for shape in SHAPES]
    print(f"{args.numbers:,} distinct numbers per shape, simulator over loopback")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
