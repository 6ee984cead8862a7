"""Shared by the benchmarks: the best of several timed runs (machines here are noisy)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable


def best(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def command_peak(*args: str) -> tuple[float, float]:
    """(seconds, peak MiB) of ``qxt ARGS`` in a child process; its own peak (``wait4``), not the largest of all
    children, and its output discarded."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "qxt_pandas.cli", *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code == 0, f"qxt {args[0]} exited {code}"
    return time.perf_counter() - started, usage.ru_maxrss / 1024
