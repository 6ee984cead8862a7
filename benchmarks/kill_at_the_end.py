"""Killed in a run's last moments: the output and its split files still agree (issue 34, item 5).

A folder holds a finished run's set (``out.csv``, its split files, ``out.files.json``) over export A.
A second run over export B (other numbers; no junk, so A's ``invalid`` file must go) writes the same
output and is killed at a random moment around its end: SIGTERM (it drains and says what it left) or
SIGKILL. Afterwards the folder must hold A's set or B's, whole: the output's rows and every split
file's rows as one of the two runs wrote them, and no split file of the other. For SIGTERM the
message must say which ("The output … was complete and is in place" only for B's).

    python benchmarks/kill_at_the_end.py [--trials 52]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
from _exports import numbers

from qxt_pandas.simulator import DEMO_APIKEY, Simulator, serve


def qxt(*args: object) -> subprocess.Popen:
    """The ``qxt`` script, as a scheduler starts it (its entry notes a stop that comes while it imports)."""
    env = {**os.environ, "QXT_APIKEY": DEMO_APIKEY}
    script = [shutil.which("qxt")] if shutil.which("qxt") else [sys.executable, "-m", "qxt_pandas.cli"]
    return subprocess.Popen([*script, *map(str, args)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def the_set(folder: Path) -> dict[str, int]:
    """Every ``out*.csv`` in ``folder`` -> its rows (hidden partial files aside)."""
    return {p.name: len(pd.read_csv(p, dtype=str)) for p in sorted(folder.glob("out*.csv"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=52)
    args = parser.parse_args()
    rng = random.Random(34)
    with tempfile.TemporaryDirectory() as tmp, serve(Simulator(latency=0.0)) as url:
        tmp = Path(tmp)
        a, b = tmp / "a.csv", tmp / "b.csv"
        mine = numbers(4000).tolist()
        pd.DataFrame({"mobile": mine[:2000] + ["12345", "not a number"] * 100}).to_csv(a, index=False)
        pd.DataFrame({"mobile": mine[2000:]}).to_csv(b, index=False)
        store = tmp / "c.qxt"

        def run(source: Path, folder: Path) -> subprocess.Popen:
            return qxt("check", source, "--column", "mobile", "--output", folder / "out.csv", "--split",
                       "--checkpoint", store, "--base-url", url, "--progress", "off")  # fmt: skip

        sets, took = {}, []
        for name, source in (("A", a), ("B", b)):  # each set once, whole; B timed as a re-run
            folder = tmp / f"whole-{name}"
            folder.mkdir()
            assert run(source, folder).wait() == 0
            sets[name] = the_set(folder)
        for _ in range(3):
            folder = tmp / "timing"
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(tmp / "whole-A", folder)
            started = time.monotonic()
            assert run(b, folder).wait() == 0
            took.append(time.monotonic() - started)
        end = sorted(took)[1]
        outcomes, exits, wrong_words = Counter(), Counter(), 0
        for trial in range(args.trials):
            folder = tmp / f"t{trial}"
            shutil.copytree(tmp / "whole-A", folder)
            child = run(b, folder)
            time.sleep(end * rng.uniform(0.3, 1.0))  # the moment of the kill: the point of the trial
            how = signal.SIGTERM if trial % 2 == 0 else signal.SIGKILL
            child.send_signal(how)
            err = child.communicate(timeout=120)[1]
            exits[child.returncode] += 1
            found = the_set(folder)
            kind = next((name for name, whole in sets.items() if found == whole), "mixed")
            outcomes[kind] += 1
            listed = json.loads((folder / "out.files.json").read_text())
            assert kind == "mixed" or listed["rows"] == sets[kind]["out.csv"]
            if how == signal.SIGTERM and child.returncode == 130:
                says_new = "was complete and is in place" in err
                wrong_words += says_new != (kind == "B")
    print(f"{args.trials} runs killed around their end ({end:.2f} s; SIGTERM and SIGKILL in turn)")
    print(f"  sets found: {dict(outcomes)} (old A, new B, mixed: target 0 mixed)")
    print(f"  exit codes: {dict(exits)}; SIGTERM messages that misdescribe the files: {wrong_words} (target 0)")


if __name__ == "__main__":
    main()
