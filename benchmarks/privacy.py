"""What keeping numbers to the minimum costs (issue 19's targets), as ratios from the same run.

1. A finished re-run of ``--rows`` (5M) rows over ``--distinct`` (200k) numbers with a store key,
   against the same re-run without one (target <= 1.15).
2. ``forget(older_than=...)`` on a directory store of ``--stored`` (1M) answers, half of them old,
   against a compaction of the same store (target <= 2).

Usage: ``python benchmarks/privacy.py [--rows 5000000] [--distinct 200000] [--stored 1000000]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
from _exports import mobile_column, numbers

import qxt_pandas
from qxt_pandas.service._secret import Secret
from qxt_pandas.simulator import DEMO_APIKEY, Simulator, SimulatorTransport, answer
from qxt_pandas.stores import open_store
from qxt_pandas.stores.directory.store import Checkpoint
from qxt_pandas.stores.journal import Answer

KEY = "benchmark-store-key-0123456789abcdef"


def fill(path: Path, mobiles, key: str | None, *, old_share: float = 0.0) -> None:
    """A store answering every one of ``mobiles`` as the simulator would; ``old_share`` of them a year old."""
    store = open_store(path, service="simulator", key=Secret(key) if key else None)
    now, cut = time.time(), int(len(mobiles) * old_share)
    writer = store.writer()
    for k, m in enumerate(mobiles):
        (code, reason), result = answer(m)
        at = now - 365 * 86400 if k < cut else now
        if result is None:
            writer.append(Answer(m, code, reason=reason, checked_at=at))
        else:
            writer.append(Answer(m, 0, result["Status"], result["Area"], result["Is_MNP"] == "1", result["Init_isp"],
                                 result["Now_isp"], None, at))  # fmt: skip
    writer.close()
    store.bind(True)


def rerun(path: Path, frame: pd.DataFrame, key: str | None) -> float:
    started = time.perf_counter()
    frame.qxt.check("m", apikey=DEMO_APIKEY, base_url="http://simulator", transport=SimulatorTransport(Simulator()),
                    checkpoint=path, store_key=key, progress=False)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--distinct", type=int, default=200_000)
    parser.add_argument("--stored", type=int, default=1_000_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="qxt-bench-privacy-"))
    try:
        distinct = numbers(args.distinct)
        frame = pd.DataFrame({"m": mobile_column(args.rows, args.distinct)})
        times = {}
        for name, key in (("plain", None), ("keyed", KEY)):
            fill(tmp / name, distinct, key)
            rerun(tmp / name, frame, key)  # warm: the journal compacted, caches filled
            times[name] = min(rerun(tmp / name, frame, key) for _ in range(2))
        print(
            f"1. finished re-run, {args.rows:,} rows / {args.distinct:,} distinct: without a key "
            f"{times['plain']:.2f} s, with a store key {times['keyed']:.2f} s, ratio "
            f"{times['keyed'] / times['plain']:.2f} (target <= 1.15)"
        )
        fill(tmp / "big", numbers(args.stored, seed=3), None, old_share=0.5)
        shutil.copytree(tmp / "big", tmp / "big2")
        started = time.perf_counter()
        Checkpoint(tmp / "big", service="simulator").compact()
        compaction = time.perf_counter() - started
        started = time.perf_counter()
        removed = qxt_pandas.forget(tmp / "big2", older_than="180d")
        forgetting = time.perf_counter() - started
        print(
            f"2. {args.stored:,} answers: compaction {compaction:.2f} s, forget --older-than (removed {removed:,}) "
            f"{forgetting:.2f} s, ratio {forgetting / compaction:.2f} (target <= 2)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
