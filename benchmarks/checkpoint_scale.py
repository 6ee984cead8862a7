"""A checkpoint of millions of answers: compaction and loading stay linear; what an answer costs.

For each size, a checkpoint gets that many answers in a journal (as a run leaves
them) plus an earlier compacted part holding a tenth of them again (older
answers that the newer ones replace). Each step runs in its own process, which
reports its time and its own peak memory (VmHWM):

- compact: fold the journal and the part into one part;
- load: ``Checkpoint.answers()`` of the compacted checkpoint.

Printed per answer: time, bytes on disk (the part), bytes in memory (the loaded
table), and the peak over the loaded table (1.0 would be the table alone).

    python benchmarks/checkpoint_scale.py [--sizes 1000000,2000000,4000000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _exports import numbers

from qxt_pandas.stores.directory.store import Checkpoint
from qxt_pandas.stores.journal import Answer

_STEP = """
import sys, time
from qxt_pandas.stores.directory.store import Checkpoint
store = Checkpoint(sys.argv[2], service="127.0.0.1")
start = time.perf_counter()
if sys.argv[1] == "compact":
    assert store.compact()
    size = 0
else:
    size = store.answers().nbytes
elapsed = time.perf_counter() - start
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
print(elapsed, peak, size)
"""

_FLOOR = (
    "import qxt_pandas.stores.directory.store\n"
    "print(0, next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')) * 1024, 0)"
)


def step(what: str, path: Path) -> tuple[float, int, int]:
    code = _FLOOR if what == "floor" else _STEP
    out = subprocess.run([sys.executable, "-c", code, what, str(path)], capture_output=True, text=True, check=True)
    elapsed, peak, size = out.stdout.split()
    return float(elapsed), int(peak), int(size)


def fill(path: Path, n: int) -> None:
    """n answers in one journal, and a part holding a tenth of them answered earlier."""
    mobiles = numbers(n, seed=17)
    store = Checkpoint(path, service="127.0.0.1")
    with store.writer() as w:
        for m in mobiles[: n // 10]:
            w.append(Answer(m, 0, "正常", "北京-北京", False, "中国移动", "中国移动", None, 1.0e9))
    store.compact()
    now = time.time()
    lines = [Answer(m, 0, "正常", "湖北-宜昌", i % 25 == 0, "中国移动", "中国电信", None, now + i * 1e-3).line()
             for i, m in enumerate(mobiles)]  # fmt: skip
    (path / "journal-1-1-run.jsonl").write_bytes(b"".join(lines))  # as a run leaves it


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000000,2000000,4000000")
    args = parser.parse_args()
    floor = step("floor", Path("."))[1]
    print(f"process floor (imports): {floor / 2**20:.0f} MiB, subtracted from the peaks below")
    print(f"{'answers':>10} {'compact s':>9} {'us/answer':>9} {'load s':>7} {'us/answer':>9} "
          f"{'disk B/ans':>10} {'memory B/ans':>12} {'peak/table':>10}")  # fmt: skip
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "big.qxt"
            fill(path, n)
            compact_s, compact_peak, _ = step("compact", path)
            load_s, load_peak, table = step("load", path)
            disk = sum(p.stat().st_size for p in path.glob("part-*"))
            peak = max(compact_peak, load_peak) - floor
            print(f"{n:>10,} {compact_s:>9.2f} {1e6 * compact_s / n:>9.2f} {load_s:>7.2f} {1e6 * load_s / n:>9.2f} "
                  f"{disk / n:>10.1f} {table / n:>12.1f} {peak / table:>10.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
