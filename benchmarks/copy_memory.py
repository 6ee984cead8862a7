"""qxt copy's memory: 1M answers against 10k, each copied in a process of its own (issue 29, item 7).

Fills a checkpoint directory with N answers (one compacted part, as a store is after its runs), then
runs ``qxt copy`` from it to a new directory (and, with ``--postgres``, to a PostgreSQL schema from
pgserver) in a fresh process, and prints the copy's time and peak memory, and the 1M/10k ratio of
peak memory (target: at most 1.2, memory flat in the store's size).

Usage: ``python benchmarks/copy_memory.py [--large 1000000] [--postgres]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import command_peak

from qxt_pandas.stores.directory.store import Answer, Checkpoint


def fill(path: Path, count: int) -> None:
    store = Checkpoint(path, service="127.0.0.1")
    store.bind(simulator=True)
    with store.writer() as journal:
        for i in range(count):
            journal.append(
                Answer(f"13{i:09d}", 0, "正常", "湖北-宜昌", i % 7 == 0, "中国移动", "中国电信", None, 1.7e9 + i)
            )
    assert store.compact()


def main() -> None:
    if sys.argv[1:2] == ["--fill"]:
        fill(Path(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--postgres", action="store_true", help="also copy into PostgreSQL (pgserver)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        targets = {"directory": lambda n: str(root / f"copy-{n}.qxt")}
        if args.postgres:
            import pgserver

            uri = pgserver.get_server(root / "pg", cleanup_mode="stop").get_uri()
            targets["postgresql"] = lambda n: f"{uri}&schema=copy_{n}"
        peaks: dict[str, list[float]] = {}
        for count in (args.small, args.large):
            # filled in a process of its own: a child forked from a big parent counts its pages in its own peak
            subprocess.run([sys.executable, __file__, "--fill", str(root / f"src-{count}.qxt"), str(count)], check=True)
            for kind, target in targets.items():
                seconds, peak = command_peak("copy", str(root / f"src-{count}.qxt"), target(count))
                peaks.setdefault(kind, []).append(peak)
                print(f"{kind:<11} {count:>9,} answers: {seconds:6.1f} s, peak {peak:6.0f} MiB "
                      f"({count / seconds:,.0f} answers/s)")  # fmt: skip
        for kind, (small, large) in peaks.items():
            print(f"{kind}: peak memory {args.large:,} / {args.small:,} answers = {large / small:.2f} (target <= 1.2)")


if __name__ == "__main__":
    main()
