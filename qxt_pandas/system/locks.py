"""Advisory file locks (``flock``) shared by the checkpoint and the claims.

``flock`` locks belong to an open file, not to a process: two opens in one
process exclude each other as two processes do, and the kernel drops a lock
when its holder dies, even by ``kill -9``. That is what makes "is anyone
still writing this?" answerable after a crash. Without ``fcntl`` (Windows)
every lock is granted at once: one run at a time per checkpoint there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
_FLOCK: bool = fcntl is not None  # (a bool, so that type checkers on Linux keep the Windows branch)

__all__ = ["alock", "held_elsewhere", "lock", "open_locked", "try_lock"]


def open_locked(path: Path, *, append: bool = True) -> int:
    """Create ``path`` (for appending, or for writing with seeks), already locked: no one sees it unlocked.

    The file is made under a hidden name, locked, then renamed: a sweeper that deletes
    unlocked files (left by killed runs) can never catch it between creation and lock.
    """
    tmp = path.with_name(f".new-{uuid.uuid4().hex}-{path.name}")
    fd = os.open(tmp, (os.O_RDWR if not append else os.O_WRONLY | os.O_APPEND) | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(tmp, path)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return fd


def held_elsewhere(path: Path) -> bool:
    """True while some open file (another process, or another open here) holds a lock on ``path``."""
    if not _FLOCK:  # pragma: no cover
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops the probe's lock


@contextlib.contextmanager
def lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold a lock on the lock file ``path`` (blocking) for the ``with`` block.

    A shared lock in a directory this process cannot write to (a read-only archive of a
    checkpoint) is taken on the file read-only, or skipped if it does not exist: nobody can
    compact such a directory anyway.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if not shared:
            raise
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield
            return
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def try_lock(path: Path) -> Iterator[bool]:
    """Take an exclusive lock on ``path`` if it is free; yields whether it was taken."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
        yield True
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def alock(path: Path, *, poll: float = 0.01) -> AsyncIterator[None]:
    """An exclusive lock taken without blocking the event loop (so other tasks, and Ctrl-C, go on)."""
    while True:
        with try_lock(path) as taken:
            if taken:
                yield
                return
        await asyncio.sleep(poll)
        poll = min(poll * 2, 0.1)
