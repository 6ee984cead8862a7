"""Money lost to sharing and failures: paid-twice counts for issue 9's items 1-3.

Runs against the simulator over loopback (its own ledger counts every paid
query) and prints, for each scenario, what was paid twice or paid for nothing:

1. two ``qxt check`` processes on one export and one checkpoint, started
   together; two ``acheck`` calls under ``asyncio.gather`` in one process;
2. a checkpoint of 100,000 answers loaded while another process compacts it
   (answers missing from a load), repeated;
3. runs that fail after paying (output not writable, a GBK export whose first
   MiB is ASCII, a duplicate header, a list column to CSV), then re-run
   correctly: numbers paid twice over the two runs.

Usage: ``python benchmarks/pay_once.py [--numbers 5000] [--loads 20]``.
It uses only the public API and the command, so the same script measures an
older checkout (run it with that checkout first on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import qxt_pandas  # noqa: F401
from qxt_pandas.simulator import DEMO_APIKEY, Account, Simulator, serve
from qxt_pandas.stores.directory.store import Answer, Checkpoint

# Loads the checkpoint again and again; answers are only ever added, so a load that sees
# fewer than the load before it has missed stored answers.
LOADER = """
import sys, warnings
warnings.simplefilter("ignore")
from qxt_pandas.stores.directory.store import Checkpoint
path, rounds = sys.argv[1], int(sys.argv[2])
seen, worst, short = 0, 0, 0
for _ in range(rounds):
    got = Checkpoint(path, service="simulator").answers().num_rows
    worst, short, seen = max(worst, seen - got), short + (got < seen), max(seen, got)
print(worst, short)
"""


def qxt(*args: object, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "QXT_APIKEY": DEMO_APIKEY}
    return subprocess.Popen([sys.executable, "-m", "qxt_pandas.cli", *map(str, args)], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def paid_twice(sim: Simulator) -> int:
    return sum(n - 1 for n in sim.ledger.paid(DEMO_APIKEY).values() if n > 1)


def two_processes(work: Path, url: str, sim: Simulator, n: int) -> tuple[int, list[int]]:
    pd.DataFrame({"mobile": [f"139{i:08d}" for i in range(n)]}).to_csv(work / "in.csv", index=False)
    runs = [qxt("check", "in.csv", "--column", "mobile", "--output", f"out{k}.parquet", "--checkpoint", "shared.qxt",
                "--base-url", url, "--progress", "off", cwd=work) for k in (1, 2)]  # fmt: skip
    codes = [run.wait(300) for run in runs]
    return paid_twice(sim), codes


def two_tasks(url: str, sim: Simulator, n: int, work: Path) -> int:
    df = pd.DataFrame({"mobile": [f"137{i:08d}" for i in range(n)]})
    options = dict(apikey=DEMO_APIKEY, base_url=url, checkpoint=work / "gather.qxt", progress=False)

    async def both():
        await asyncio.gather(df.qxt.acheck("mobile", **options), df.qxt.acheck("mobile", **options))

    asyncio.run(both())
    return paid_twice(sim)


def compaction_race(work: Path, n: int, loads: int) -> tuple[int, int, int]:
    """Worst shortfall of a load, and how many loads came up short, while runs end and compact.

    ``n`` answers are stored first; then journals of new answers keep arriving, each folded
    by a compaction, while another process loads the checkpoint ``loads`` times.
    """
    path = work / "race.qxt"

    def journal(numbers: range) -> None:
        with Checkpoint(path, service="simulator").writer() as w:
            for i in numbers:
                w.append(
                    Answer(f"136{i:08d}", 0, "正常", "北京-北京", False, "中国移动", "中国移动", None, time.time())
                )

    journal(range(n))
    Checkpoint(path, service="simulator").compact()
    loader = subprocess.Popen([sys.executable, "-c", LOADER, str(path), str(loads)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    compactions = 0
    while loader.poll() is None:
        journal(range(n + compactions * 2000, n + (compactions + 1) * 2000))
        compactions += Checkpoint(path, service="simulator").compact()
    worst, short = map(int, loader.communicate()[0].split())
    return worst, short, compactions


def read_only(directory: Path, on: bool) -> None:
    """Make ``directory`` unwritable even for root (chmod does not stop root; the immutable flag does)."""
    if not on and os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(directory)], check=False)
    os.chmod(directory, 0o555 if on else 0o755)
    if on and os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(directory)], check=False)


def pay_then_fail(work: Path, url: str, sim: Simulator) -> list[tuple[str, int, int]]:
    """For each case: (name, paid by the failing run, paid twice after a correct re-run)."""
    mobiles = [f"135{i:08d}" for i in range(300)]
    cases = []
    blocker = work / "a-file"
    blocker.write_text("x")
    (work / "ro").mkdir()
    read_only(work / "ro", True)
    frame = pd.DataFrame({"mobile": mobiles, "name": ["张三"] * len(mobiles)})
    frame.to_csv(work / "plain.csv", index=False)
    gbk = ("mobile,name\n" + "".join(f"{m},x{i:01048576d}\n" if i == 0 else f"{m},张三\n" for i, m in
                                     enumerate(mobiles))).encode("gbk")  # fmt: skip
    (work / "late-gbk.csv").write_bytes(gbk)
    (work / "dupe.csv").write_text("mobile,mobile\n" + "".join(f"{m},{m}\n" for m in mobiles))
    pq.write_table(pa.table({"mobile": mobiles, "tags": [["a", "b"]] * len(mobiles)}), work / "lists.parquet")
    # (input, output of the failing run, the re-run's output and options): what a user would do next.
    attempts = {
        "output's parent is a file": ("plain.csv", "a-file/out.csv", "out1.csv", []),
        "output directory read-only": ("plain.csv", "ro/out.csv", "out2.csv", []),
        "GBK after an ASCII first MiB": ("late-gbk.csv", "out3.csv", "out3.csv", ["--encoding", "gbk"]),
        "duplicate header": ("dupe.csv", "out4.csv", None, []),
        "list column to CSV": ("lists.parquet", "out5.csv", "out5.parquet", []),
    }
    for name, (source, output, rerun, extra) in attempts.items():
        sim.ledger.clear()
        qxt("check", source, "--column", "mobile", "--output", output, "--base-url", url,
            "--progress", "off", cwd=work).wait(300)  # fmt: skip
        failed_paid = len(sim.ledger)
        if rerun is not None:
            qxt("check", source, "--column", "mobile", "--output", rerun, "--base-url", url, "--progress", "off",
                *extra, cwd=work).wait(300)  # fmt: skip
        cases.append((name, failed_paid, paid_twice(sim)))
    read_only(work / "ro", False)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--numbers", type=int, default=5000)
    parser.add_argument("--loads", type=int, default=60)
    parser.add_argument("--only", choices=["1", "2", "3"], help="run one scenario")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sim = Simulator([Account(DEMO_APIKEY, balance=10**7)], latency=0.02)
        with serve(sim) as url:
            if args.only in (None, "1"):
                twice, codes = two_processes(work, url, sim, args.numbers)
                print(f"1. two qxt check processes, {args.numbers:,} numbers, one checkpoint: "
                      f"paid twice {twice:,}; exit codes {codes}")  # fmt: skip
                sim.ledger.clear()
                twice = two_tasks(url, sim, args.numbers, work)
                print(f"1. two acheck under asyncio.gather, {args.numbers:,} numbers: paid twice {twice:,}")
            if args.only in (None, "2"):
                worst, short, compactions = compaction_race(work, 100_000, args.loads)
                print(f"2. {args.loads} loads of a checkpoint of 100,000+ answers during {compactions} compactions: "
                      f"{short} loads saw fewer answers than the load before; worst by {worst:,}")  # fmt: skip
            if args.only in (None, "3"):
                for name, failed, again in pay_then_fail(work, url, sim):
                    print(f"3. {name:<30} paid by the failing run {failed:>4}; paid twice after a re-run {again:>4}")


if __name__ == "__main__":
    main()
