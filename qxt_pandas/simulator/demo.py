"""``python -m qxt_pandas.simulator.demo FILE``: check a file of numbers against the simulator.

Starts the simulator on loopback (100 ms latency, as the vendor quotes), then
uses the real :class:`qxt_pandas.Client` over HTTP: balance, each number's
status (per-number errors shown on their row), balance again.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from qxt_pandas import Client, NumberError

from ._app import Simulator
from ._serve import serve
from ._state import DEMO_APIKEY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qxt_pandas.simulator.demo", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="a text file with one mobile number per line")
    parser.add_argument("--latency", type=float, default=0.1)
    args = parser.parse_args(argv)
    with open(args.file, encoding="utf-8") as f:
        mobiles = [line.strip() for line in f if line.strip() and not line.startswith("#")]

    with serve(Simulator(latency=args.latency)) as url, Client(DEMO_APIKEY, base_url=url) as client:
        print(f"QXT simulator on {url}; client {client!r}")
        before = client.balance()
        print(f"balance: {before.balance} ({before.fee_type})")
        rows = []
        for mobile in mobiles:
            try:
                s = client.status(mobile)
                rows.append({"mobile": mobile, "Status": s.status, "Area": s.area, "Is_MNP": s.is_mnp,
                             "Init_isp": s.init_isp, "Now_isp": s.now_isp, "code": 0})  # fmt: skip
            except NumberError as exc:
                rows.append({"mobile": mobile, "code": exc.code, "error": type(exc).__name__})
        after = client.balance()
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.unicode.east_asian_width", True):
        print(pd.DataFrame(rows).fillna("").to_string(index=False))
    print(f"balance: {after.balance}; paid for {before.balance - after.balance} of {len(mobiles)} numbers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
