"""qxt check on 5,000,000-row CSV exports: time and peak memory beside pd.read_csv of the same file.

Each side runs as its own process; its peak is its own VmHWM (ru_maxrss from
wait4 would carry the parent's high-water mark into a forked child on Linux).
The simulator runs in its own process with no latency. Scenarios:

- ``rerun-200k``: a finished export re-run (every number in the checkpoint)
  over 200,000 distinct numbers: realistic cardinality, ~5 % junk;
- ``rerun-1m``: the same over ~1,000,000 distinct numbers;
- ``first-1k-3col``: a first run of a 3-column export over 1,000 numbers;
- ``first-2k``: the old shape, 4 columns over 2,000 numbers (``--output-format csv`` too);
- ``flat-1k``: the command's peak memory on a first run over 1,000 numbers at ``--rows`` and at
  4x ``--rows`` (5M and 20M by default): flat memory means a ratio near 1, whatever the rows.

Each side runs ``--repeat`` times; the best time and the lowest peak are shown (this machine is
shared and noisy).

    python benchmarks/command_cost.py [--scenarios rerun-200k,rerun-1m,first-1k-3col,first-2k,flat-1k] [--repeat 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.csv as pa_csv
from _exports import fill_checkpoint, write_export

import qxt_pandas
from qxt_pandas.simulator import DEMO_APIKEY, spawn

SCENARIOS = {  # name: (distinct numbers, columns, re-run over a full checkpoint)
    "rerun-200k": (200_000, 4, True),
    "rerun-1m": (1_000_000, 4, True),
    "first-1k-3col": (1_000, 3, False),
    "first-2k": (2_000, 4, False),
    "flat-1k": (1_000, 3, False),
}

# Each child reports its own peak (VmHWM of its address space) at exit.
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
    if result.returncode not in (0, 5):
        raise RuntimeError(f"{how} failed ({result.returncode}): {result.stderr[-800:]}")
    return wall, int(report.read_text()) / 1024


_DUCKDB = """
import duckdb, glob
con = duckdb.connect()
con.execute("SET threads = 2")
part = glob.glob({parts!r})[0]
con.execute(f\"\"\"COPY (SELECT e.*, a.* EXCLUDE (mobile)
                    FROM read_csv('{export}', all_varchar = true) e
                    LEFT JOIN read_parquet('{{part}}') a
                    ON right(regexp_replace(e.mobile, '[^0-9]', '', 'g'), 11) = a.mobile)
               TO '{out}' (FORMAT parquet, COMPRESSION zstd)\"\"\")
"""


def _duckdb(export: Path, checkpoint: Path, out: Path) -> str:
    """What a data engineer would write instead: DuckDB reads the CSV, joins the stored answers on the number's
    last 11 digits, and writes zstd Parquet, with 2 threads (the machine's cores)."""
    return _DUCKDB.format(parts=str(checkpoint / "part-*.parquet"), export=export, out=out)


def distinct_numbers(export: Path) -> list[str]:
    column = pa_csv.read_csv(export, convert_options=pa_csv.ConvertOptions(include_columns=["mobile"]))["mobile"]
    found = qxt_pandas.normalize_mobiles(column.to_pandas())["qxt_mobile"].dropna().unique()
    return sorted(found.tolist())


def scenario(name: str, rows: int, output_format: str, url: str, tmp: Path, repeat: int, unbound: bool = True) -> None:
    distinct, columns, rerun = SCENARIOS[name]
    export, checkpoint = tmp / f"{name}.csv", tmp / f"{name}.qxt"
    write_export(export, rows, distinct, columns=columns)
    if rerun:
        # unbound, as rerun_overhead.py's: a re-run of real answers sends no request (one bound to the simulator
        # asks its balance first: 0.2 s, aiohttp's import and a connection, that no real re-run pays)
        fill_checkpoint(checkpoint, distinct_numbers(export), simulator=None if unbound else True)
    env = {**os.environ, "QXT_APIKEY": DEMO_APIKEY}
    read = [f"import pandas as pd; pd.read_csv({str(export)!r}, dtype=str)"]

    def check(k: int) -> list[str]:  # a first run gets a new checkpoint each time
        where = checkpoint if rerun else tmp / f"{name}-{k}.qxt"
        return ["check", str(export), "--column", "mobile", "--output", str(tmp / f"out.{output_format}"),
                "--checkpoint", str(where), "--base-url", url, "--progress", "off"]  # fmt: skip

    base = [measure("code", read, env, tmp) for _ in range(repeat)]
    mine = [measure("module", check(k), env, tmp) for k in range(repeat)]
    duck = None
    if rerun:
        with contextlib.suppress(ImportError):  # the bench extra: pip install 'qxt-pandas[bench]'
            import duckdb  # noqa: F401

            duck = [measure("code", [_duckdb(export, checkpoint, tmp / "duck.parquet")], env, tmp)
                    for _ in range(repeat)]  # fmt: skip
    (base_wall, base_rss), (qxt_wall, qxt_rss) = (min(r[0] for r in base), min(r[1] for r in base)), (
        min(r[0] for r in mine), min(r[1] for r in mine))  # fmt: skip
    size = export.stat().st_size / 2**20
    what = "re-run, all answered" if rerun else "first run"
    print(f"{name}: {rows:,} rows x {columns} columns ({size:.0f} MiB), {distinct:,} distinct numbers, {what}, "
          f"output {output_format}")  # fmt: skip
    print(f"  {'pd.read_csv(dtype=str)':>24} {base_wall:7.2f} s {base_rss:7.0f} MiB")
    print(f"  {'qxt check':>24} {qxt_wall:7.2f} s {qxt_rss:7.0f} MiB")
    print(f"  ratios: time {qxt_wall / base_wall:.2f}, memory {qxt_rss / base_rss:.2f}")
    if duck:
        duck_wall, duck_rss = min(r[0] for r in duck), min(r[1] for r in duck)
        print(f"  {'DuckDB join (2 threads)':>24} {duck_wall:7.2f} s {duck_rss:7.0f} MiB")
        print(f"  qxt check / DuckDB: time {qxt_wall / duck_wall:.2f}, memory {qxt_rss / duck_rss:.2f} (target <= 1.0)")
    for leftover in (export, tmp / f"out.{output_format}"):
        leftover.unlink(missing_ok=True)


def flat(name: str, rows: int, output_format: str, url: str, tmp: Path, repeat: int) -> None:
    """The command's peak memory at ``rows`` and at 4x ``rows``, same numbers: the ratio shows growth with rows."""
    distinct, columns, _ = SCENARIOS[name]
    env = {**os.environ, "QXT_APIKEY": DEMO_APIKEY}
    peaks, walls = [], []
    for n in (rows, 4 * rows):
        export = tmp / f"{name}-{n}.csv"
        write_export(export, n, distinct, columns=columns)
        out = str(tmp / f"out.{output_format}")
        runs = [measure("module", ["check", str(export), "--column", "mobile", "--output", out, "--checkpoint",
                                   str(tmp / f"{name}-{n}-{k}.qxt"), "--base-url", url, "--progress", "off"], env, tmp)
                for k in range(repeat)]  # fmt: skip
        walls.append(min(r[0] for r in runs))
        peaks.append(min(r[1] for r in runs))
        export.unlink()
    print(f"{name}: qxt check, first run, {columns} columns over {distinct:,} numbers, output {output_format}")
    for n, wall, peak in zip((rows, 4 * rows), walls, peaks, strict=True):
        print(f"  {n:>12,} rows {wall:7.2f} s {peak:7.0f} MiB")
    print(f"  ratios ({4 * rows:,} rows to {rows:,}): memory {peaks[1] / peaks[0]:.2f}, time {walls[1] / walls[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--output-format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each side; the best is shown")
    parser.add_argument("--bound", action="store_true", help="re-run checkpoints bound to the simulator (before 0.3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, spawn("--latency", "0") as url:
        for name in args.scenarios.split(","):
            if name == "flat-1k":
                flat(name, args.rows, args.output_format, url, Path(tmp), args.repeat)
            else:
                scenario(name, args.rows, args.output_format, url, Path(tmp), args.repeat, unbound=not args.bound)


if __name__ == "__main__":
    main()
