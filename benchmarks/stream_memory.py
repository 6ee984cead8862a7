"""qxt check on a 5,000,000-row CSV export: peak memory and time beside pd.read_csv alone.

The export has few distinct numbers (``--unique``), so that the network is
not what is measured; the simulator runs in its own process with no latency.
Each side runs as its own process, and its peak RSS comes from ``wait4``:

- baseline: ``python -c "pd.read_csv(FILE, dtype=str)"``
- qxt: ``qxt check FILE --column mobile --output out.parquet --checkpoint ...``

    python benchmarks/stream_memory.py [--rows 5000000] [--unique 2000] [--output-format parquet]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from qxt_pandas.simulator import DEMO_APIKEY, spawn


def write_export(path: Path, rows: int, unique: int, seed: int = 5) -> None:
    rng = np.random.default_rng(seed)
    numbers = np.array([f"13{rng.integers(5, 10)}{n:08d}" for n in rng.integers(0, 10**8, unique)], dtype=object)
    chunk = 1_000_000
    with pa_csv.CSVWriter(path, pa.schema([(c, pa.string()) for c in ("customer_id", "name", "city", "mobile")])) as w:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            mobile = numbers[rng.integers(0, unique, n)]
            messy = rng.random(n) < 0.2
            mobile[messy] = np.char.add("+86 ", mobile[messy].astype(str)).astype(object)
            w.write_table(pa.table({
                "customer_id": pa.array(np.char.add("C", np.arange(start, start + n).astype(str))),
                "name": pa.array(rng.choice(["张伟", "王芳", "李娜", "刘洋", "陈静"], n)),
                "city": pa.array(rng.choice(["深圳", "广州", "北京", "上海"], n)),
                "mobile": pa.array(mobile, pa.string()),
            }))  # fmt: skip


# Each child reports its own peak (VmHWM of its address space) at exit. ru_maxrss from wait4
# would not do: Linux carries the parent's high-water mark into a forked child across exec.
_WRAP = """
import atexit, sys
def _peak(path=sys.argv[1]):
    with open('/proc/self/status') as f:
        kib = next(line.split()[1] for line in f if line.startswith('VmHWM:'))
    with open(path, 'w') as out:
        out.write(kib)
atexit.register(_peak)
if sys.argv[2] == 'code':
    exec(sys.argv[3])
else:
    import runpy
    sys.argv = ['qxt', *sys.argv[3:]]
    runpy.run_module('qxt_pandas.cli', run_name='__main__')
"""


def measure(how: str, args: list[str], env: dict, tmp: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of a child process running ``args``."""
    report = tmp / f"peak-{time.monotonic_ns()}"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", _WRAP, str(report), how, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{how} failed ({result.returncode}): {result.stderr[-500:]}")
    return wall, int(report.read_text()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--unique", type=int, default=2_000)
    parser.add_argument("--output-format", choices=["parquet", "csv"], default="parquet")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export.csv"
        write_export(export, args.rows, args.unique)
        size = export.stat().st_size / 2**20
        env = {**os.environ, "QXT_APIKEY": DEMO_APIKEY}
        read = [f"import pandas as pd; pd.read_csv({str(export)!r}, dtype=str)"]
        with spawn("--latency", "0") as url:
            output = Path(tmp) / f"out.{args.output_format}"
            check = ["check", str(export), "--column", "mobile", "--output", str(output),
                     "--checkpoint", str(Path(tmp) / "ck"), "--base-url", url, "--progress", "off"]  # fmt: skip
            base_wall, base_rss = measure("code", read, env, Path(tmp))
            qxt_wall, qxt_rss = measure("module", check, env, Path(tmp))
    print(f"{args.rows:,} rows ({size:.0f} MiB CSV), {args.unique:,} distinct numbers, output {args.output_format}")
    print(f"{'':>24} {'wall s':>8} {'peak RSS MiB':>13}")
    print(f"{'pd.read_csv(dtype=str)':>24} {base_wall:>8.2f} {base_rss:>13.0f}")
    print(f"{'qxt check':>24} {qxt_wall:>8.2f} {qxt_rss:>13.0f}")
    print(f"ratios: time {qxt_wall / base_wall:.2f} (target <= 2), memory {qxt_rss / base_rss:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
