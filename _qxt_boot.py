"""The ``qxt`` command's first lines, before pandas and pyarrow load (~0.3 s).

A stop (SIGTERM from a scheduler, SIGHUP, Ctrl-C) that comes while Python still imports is
noted, not fatal: the command then ends at once with its documented exit code (130), saying
that nothing was read, written or paid for, instead of dying by the signal (143). After the
command has finished, a stop during the interpreter's shutdown changes nothing either: the exit
code stays the one the command chose. (``python -m qxt_pandas`` imports the package first, so
this holds for the ``qxt`` script.)
"""

import signal
import sys

_STOPS = [signal.SIGTERM, signal.SIGINT, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])]
_caught: list[int] = []


def _note(signum: int, frame: object) -> None:
    _caught.append(signum)


def main() -> int:
    """Run ``qxt`` with a stop during start-up or shutdown turned into its documented exit code."""
    for sig in _STOPS:
        signal.signal(sig, _note)
    from qxt_pandas.cli import main as run  # the slow part

    code = run(stopped_early=_caught)
    for sig in _STOPS:  # finished: the exit code is decided, and a late stop must not change it. Ignored, not
        signal.signal(sig, signal.SIG_IGN)  # noted: Python resets its own handlers to the default as it finalizes
    return code


if __name__ == "__main__":
    sys.exit(main())
