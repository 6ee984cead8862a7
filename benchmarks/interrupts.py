"""Money lost to Ctrl-C, SIGTERM and a suspended process (issue 17, items 4 and 5).

A real ``qxt check`` process against the simulator over loopback (its ledger
counts every charge): interrupted mid-run by SIGINT or SIGTERM, or stopped
with SIGSTOP for longer than the request timeout and continued; then run
again to the end. Prints, per scenario: charged by the vendor in the first
run, answers the checkpoint kept, and numbers paid twice over both runs.
The target is kept == charged and paid twice == 0.

Usage: ``python benchmarks/interrupts.py [--numbers 3000] [--latency 0.3]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from _exports import numbers

from qxt_pandas.simulator import DEMO_APIKEY, Simulator, serve
from qxt_pandas.stores.directory.store import Checkpoint


def qxt(*args: object) -> subprocess.Popen:
    env = {**os.environ, "QXT_APIKEY": DEMO_APIKEY}
    return subprocess.Popen([sys.executable, "-m", "qxt_pandas.cli", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.01)


def scenario(kind: str, source: Path, where: Path, latency: float) -> dict[str, object]:
    sim = Simulator(latency=latency)
    checkpoint = where / f"{kind}.qxt"
    with serve(sim) as url:
        args = ("check", source, "--column", "mobile", "--output", where / f"{kind}.parquet", "--checkpoint",
                checkpoint, "--base-url", url, "--progress", "off", "--timeout", "2")  # fmt: skip
        child = qxt(*args)
        wait_until(lambda: len(sim.ledger) >= 300)
        if kind == "suspend":
            child.send_signal(signal.SIGSTOP)
            time.sleep(4)  # longer than --timeout 2: the suspension is the point of the scenario
            child.send_signal(signal.SIGCONT)
            wait_until(lambda: child.poll() is not None, timeout=300)
        else:
            child.send_signal(signal.SIGINT if kind == "ctrl-c" else signal.SIGTERM)
        err = child.communicate(timeout=120)[1]
        charged = len(sim.ledger)
        kept = Checkpoint(checkpoint, service="127.0.0.1").answers().num_rows
        qxt(*args).communicate(timeout=600)
        twice = sum(n - 1 for n in sim.ledger.paid(DEMO_APIKEY).values() if n > 1)
    return {"scenario": kind, "exit": child.returncode, "charged": charged, "kept": kept, "paid twice": twice,
            "said": err.strip().splitlines()[-1][:100] if err.strip() else ""}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=3000)
    parser.add_argument("--latency", type=float, default=0.3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        source = where / "in.csv"
        pd.DataFrame({"mobile": numbers(args.numbers)}).to_csv(source, index=False)
        rows = [scenario(kind, source, where, args.latency) for kind in ("ctrl-c", "sigterm", "suspend")]
    print(f"{args.numbers:,} distinct numbers, simulator latency {args.latency} s, over loopback")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
