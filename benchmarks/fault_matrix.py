"""The fault matrix of issue 28: each fault outside the process, as real processes meet it.

Runs ``tests/stores/test_faults_real.py`` (real ``qxt check`` and ``qxt serve`` processes, a real
PostgreSQL from pgserver, the simulator's ledger as the truth of money) with $QXT_FAULT_MATRIX set,
so each scenario records its exit code and how many numbers the vendor charged twice, then prints
them beside the figures measured on the code before issue 28 (quoted from the issue, measured
the same way). The tests themselves assert the bounds; this prints the numbers.

Usage: ``python benchmarks/fault_matrix.py [--repeat 3]`` (each repeat is one run of the tests;
the worst figure of the repeats is shown).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Paid twice on the landed code before issue 28 (issue 28's table, the same scenarios).
BEFORE = {
    "PostgreSQL: read-only for a while": ("0 (with 2,514 of 5,000 stored)", "2,433-3,952"),
    "PostgreSQL: every connection terminated": ("1", "13-63"),
    "PostgreSQL: a NUL in a field": ("0", "1,263-1,933"),
    "PostgreSQL: a run suspended past its lease, another taking over": ("0", "2,697-2,747"),
    "SIGHUP": ("killed (129)", "122-164"),
    "the progress pipe closed": ("1", "122"),
    "qxt serve killed (SIGKILL) mid-run": ("-", "122-126"),
    "qxt serve: Ctrl-C at the terminal": ("-", "64-87"),
    "qxt serve: SIGTERM with a progress stream open": ("-", "-"),
    "the disk holding the store fills": ("1", "126"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    rows: dict[str, list[dict]] = {}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            matrix = Path(tmp) / "matrix.jsonl"
            env = {**os.environ, "QXT_FAULT_MATRIX": str(matrix)}
            done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                   "tests/stores/test_faults_real.py"], cwd=ROOT, env=env)  # fmt: skip
            if done.returncode != 0:
                print("some fault tests failed: the figures below are from those that ran", file=sys.stderr)
            for line in matrix.read_text().splitlines() if matrix.exists() else []:
                row = json.loads(line)
                rows.setdefault(row["fault"], []).append(row)
    print(f"\n{'fault':<66} {'exit before':>28} {'paid twice before':>18}   {'exit now':>8} {'paid twice now':>14}")
    for fault, seen in rows.items():
        before_exit, before_twice = BEFORE.get(fault, ("?", "?"))
        exits = "/".join(sorted({"-" if r["exit"] is None else str(r["exit"]) for r in seen}))
        worst = max(r["paid_twice"] for r in seen)
        print(f"{fault:<66} {before_exit:>28} {before_twice:>18}   {exits:>8} {worst:>14,}")


if __name__ == "__main__":
    main()
