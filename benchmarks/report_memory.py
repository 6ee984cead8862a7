"""qxt report's memory: a store of 300k answers against one of 3k, each store kind (issue 32).

Fills a checkpoint directory with N answers as the simulator gives them (statuses, provinces,
carriers, no-information answers; compacted, as a store is after its runs), copies it into a
PostgreSQL schema (pgserver), then runs ``qxt report`` on each in a fresh process and prints its time
and peak memory, and the large/small ratio of peak memory per store (target: at most 1.2, a report's
memory flat in the store's size).

Usage: ``python benchmarks/report_memory.py [--small 3000] [--large 300000] [--no-postgres]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from _exports import fill_checkpoint, numbers
from _timing import command_peak


def main() -> None:
    if sys.argv[1:2] == ["--fill"]:
        fill_checkpoint(Path(sys.argv[2]), numbers(int(sys.argv[3]), seed=11))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=3_000)
    parser.add_argument("--large", type=int, default=300_000)
    parser.add_argument("--no-postgres", action="store_true", help="the directory store only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = None
        if not args.no_postgres:
            import pgserver

            uri = pgserver.get_server(root / "pg", cleanup_mode="stop").get_uri()
        peaks: dict[str, list[float]] = {}
        for count in (args.small, args.large):
            directory = root / f"answers-{count}.qxt"
            # filled in a process of its own: a child forked from a big parent counts its pages in its own peak
            subprocess.run([sys.executable, __file__, "--fill", str(directory), str(count)], check=True)
            stores = {"directory": str(directory)}
            if uri is not None:
                stores["postgresql"] = f"{uri}&schema=report_{count}"
                subprocess.run([sys.executable, "-m", "qxt_pandas.cli", "copy", str(directory),
                                stores["postgresql"]], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            for kind, store in stores.items():
                seconds, peak = command_peak("report", store)
                peaks.setdefault(kind, []).append(peak)
                print(f"{kind:<11} {count:>9,} answers: qxt report {seconds:5.2f} s, peak {peak:6.0f} MiB")
        for kind, (small, large) in peaks.items():
            print(f"{kind}: report peak memory {args.large:,} / {args.small:,} answers = {large / small:.2f} "
                  "(target <= 1.2)")  # fmt: skip


if __name__ == "__main__":
    main()
