"""Who is asking which numbers right now, so that runs sharing a checkpoint never pay twice.

Before a run pays for numbers it claims them. Holding ``claims.lock`` for
milliseconds, it reads what other writers stored since it loaded the
checkpoint and the live claims of other runs, then writes its own claim
(``claim-<time>-<pid>-<id>.txt``: who, then one number a line) of the numbers
that nobody answered and nobody else is asking, and keeps it locked
(``flock``) while it asks them. Numbers another run is asking are not asked
again: the run waits for that claim to end, takes the answers from the
checkpoint, and claims whatever is still unanswered (a failure, or a run that
stopped). A run that waits says so every 10 s and gives up after ``patience``
(a run that hangs holding its claim, e.g. stopped with SIGSTOP, is alive to
the kernel and keeps it). A run ends its claim as soon as it has asked its numbers, before it
waits for anyone else's, so two runs never wait on each other; the kernel
ends a killed run's claim by dropping its lock.

Tasks of one Dask or Spark job ask disjoint numbers, so their claims never
overlap and none of them waits.

Example (what a run then does with the claim: ``stores/claim.py``)::

    claim = await claim_numbers(store, ["13972565391"], max_age=None)
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from ...system.locks import alock, held_elsewhere, open_locked
from ..claim import Claim
from ..journal import unwritable

__all__ = ["FileClaim", "claim_numbers", "claimed_by"]


class Checkpoint(Protocol):
    """What claims use of their directory store (store.py's ``Checkpoint``, which imports this module)."""

    path: Path

    def create(self) -> None: ...
    def files(self, kind: str) -> list[Path]: ...
    def refresh(self, max_age: float | None = None) -> pa.Table: ...
    def sweep(self) -> None: ...


@dataclass
class FileClaim(Claim):
    """A claim held as locked files in the checkpoint: another run's is held while its file is locked."""

    _files: list[tuple[int, Path]] = field(default_factory=list)  # this claim's files, each locked, a batch each

    def held(self, key: Any) -> bool:
        """Whether the other run's claim ``key`` (its file) is still held. A claim file's lock lasts as long as
        its process, suspended or not."""
        return held_elsewhere(key)

    def release(self) -> None:
        """End this run's claim (idempotent): the numbers in it are asked, or given up."""
        while self._files:
            fd, path = self._files.pop()
            path.unlink(missing_ok=True)
            os.close(fd)


async def claim_numbers(store: Checkpoint, numbers: list[str], max_age: float | None) -> FileClaim:
    """Claim those of ``numbers`` that nobody has answered since ``store`` was loaded and nobody is asking.

    ``BATCH`` numbers at a time, each under the claims lock for milliseconds however many a run claims: other
    runs' claim files are read outside it (a file listed under the lock is complete, and never changes), and
    within it others' claims are looked at before the answers, so a run that releases its claim in between has
    its answers seen (it stores them before it releases).
    """
    store.create()  # claiming is the first write of a run
    wanted = pa.array(numbers, pa.string())
    claim = FileClaim([])
    theirs = _Others(wanted)
    answered: list[pa.Table] = []
    seen = pc.is_null(wanted)  # which of wanted have an answer read by now (none yet: numbers are never null)
    for start in range(0, len(wanted), BATCH):
        chunk = wanted.slice(start, BATCH)
        while True:
            async with alock(store.path / "claims.lock"):  # nothing below awaits: held for milliseconds
                live = theirs.live(store, claim)  # the live claims, listed before the answers are read
                if live is not None:
                    # every answer read here is kept for every wanted number: the store's refresh gives each
                    # answer once, and one dropped here would be asked (and paid) again by a later round
                    fresh = store.refresh(max_age)
                    if fresh.num_rows:
                        hit = pc.is_in(wanted, value_set=fresh["mobile"])
                        if pc.any(hit).as_py():
                            answered.append(fresh.filter(pc.is_in(fresh["mobile"], value_set=wanted.filter(hit))))
                            seen = pc.or_(seen, hit)
                    free = pc.invert(seen.slice(start, len(chunk)))  # not answered: mine, unless another run's
                    taken = theirs.taken(live, start, free, claim)
                    pending = chunk.filter(free if taken is None else pc.and_(free, pc.invert(taken)))
                    mine = pending.to_pylist()
                    if mine:
                        _write_claim(store.path, claim, mine)
                        claim.mine += mine
                    break
            theirs.read_new()  # outside the lock: then look again
    claim.answered = pa.concat_tables(answered) if answered else None
    store.sweep()
    return claim


#: Numbers claimed under the claims lock at a time (benchmarks/claims_lock.py: a few ms each).
BATCH = 50_000


class _Others:
    """The live claims of other runs: each file read once, outside the claims lock, into which of ``wanted``
    it holds."""

    def __init__(self, wanted: pa.Array) -> None:
        self.wanted = wanted
        self.held: dict[Path, tuple[str, pa.Array]] = {}  # claim file -> (owner, which of wanted it holds)
        self.unread: list[Path] = []

    def live(self, store: Checkpoint, claim: FileClaim) -> list[Path] | None:
        """Other runs' live claim files (a dead run's are removed), or None when some are not read yet."""
        own = {path for _, path in claim._files}
        live = []
        for path in store.files("claim"):
            if path in own:
                continue
            if not held_elsewhere(path):
                path.unlink(missing_ok=True)  # its run is gone (killed); so is its claim
                self.held.pop(path, None)
                continue
            live.append(path)
        self.unread = [path for path in live if path not in self.held]
        return None if self.unread else live

    def read_new(self) -> None:
        """Read the claim files :meth:`live` found unread (a few numbers wanted: looked for in its bytes)."""
        few = self.wanted.to_pylist() if len(self.wanted) <= 100 else None
        for path in self.unread:
            owner, body = _claim_file(path)
            if few is not None:
                held = pa.array([f"\n{n}\n".encode() in body for n in few], pa.bool_())
            else:
                held = pc.is_in(self.wanted, value_set=pa.array(body.decode("ascii", errors="replace").split()))
            self.held[path] = (owner, held)

    def taken(self, live: list[Path], start: int, free: pa.Array, claim: FileClaim) -> pa.Array | None:
        """Which of ``wanted[start:start + len(free)]`` that are ``free`` (not answered) the ``live`` claims hold
        (None: none), noted in ``claim``."""
        taken, length = None, len(free)
        for path in live:
            owner, held = self.held[path]
            mask = pc.and_(held.slice(start, length), free)
            if pc.any(mask).as_py():
                numbers = self.wanted.slice(start, length).filter(mask).to_pylist()
                claim.others.setdefault(path, (owner, []))[1].extend(numbers)
                taken = mask if taken is None else pc.or_(taken, mask)
        return taken


def _write_claim(directory: Path, claim: FileClaim, numbers: list[str]) -> None:
    path = directory / f"claim-{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.txt"
    owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        fd = open_locked(path)
        os.write(fd, (json.dumps(owner) + "\n" + "\n".join(numbers) + "\n").encode())
    except OSError as exc:
        raise unwritable(directory, exc) from None
    claim._files.append((fd, path))


def claimed_by(path: Path) -> list[str]:
    """The numbers a claim file holds (a forget waits for the claims on the numbers it removes)."""
    return _read_claim(path)[1]


def _read_claim(path: Path) -> tuple[str, list[str]]:
    """Who holds a claim (for messages) and its numbers."""
    who, body = _claim_file(path)
    return who, body.decode("ascii", errors="replace").split()


def _claim_file(path: Path) -> tuple[str, bytes]:
    """Who holds a claim, and its numbers as written (a newline before each and after the last)."""
    try:
        head, newline, body = path.read_bytes().partition(b"\n")
        owner = json.loads(head)
        who = f"pid {owner['pid']} on {owner['host']}, started {owner['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "an unknown process", b""
    return who, newline + body
