"""``python -m qxt_pandas.simulator``: serve the simulator on loopback until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import sys

from ._app import Simulator
from ._serve import run_forever
from ._shapes import SHAPES
from ._state import DEMO_APIKEY, DEMO_POSTPAID_APIKEY, POSTPAID, PREPAID, Account, Faults


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qxt_pandas.simulator",
        description="Serve a stand-in for the QXT phone-status service on loopback.",
        epilog=f"Demo keys: {DEMO_APIKEY} (prepaid), {DEMO_POSTPAID_APIKEY} (postpaid).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one (default 8080)")
    parser.add_argument("--latency", type=float, default=0.1, help="mean seconds per request (default 0.1)")
    parser.add_argument("--jitter", type=float, default=0.0, help="+/- seconds around the latency")
    parser.add_argument("--faults", type=float, default=0.0, help="share of requests that fail, all kinds mixed")
    parser.add_argument("--balance", type=int, default=1_000_000, help="the prepaid demo account's balance")
    parser.add_argument("--seed", type=int, default=0, help="seed for fault draws")
    parser.add_argument("--capacity", type=int, help="requests held at once; beyond, -8 at once (default: no limit)")
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        default="json",
        help="how answers are written: strict JSON, or a shape the vendor's document shows",
    )
    args = parser.parse_args(argv)

    sim = Simulator(
        [Account(DEMO_APIKEY, PREPAID, args.balance), Account(DEMO_POSTPAID_APIKEY, POSTPAID, 0)],
        latency=args.latency,
        jitter=args.jitter,
        faults=Faults.mixed(args.faults),
        seed=args.seed,
        capacity=args.capacity,
        shape=args.shape,
    )

    def announce(url: str) -> None:
        # The URL is the last word of the first line: spawn() and scripts read it.
        print(f"QXT simulator listening on {url}", flush=True)
        print(f"demo key (prepaid): {DEMO_APIKEY}", file=sys.stderr, flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        run_forever(sim, args.host, args.port, announce)
    return 0


if __name__ == "__main__":
    sys.exit(main())
