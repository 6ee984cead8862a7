"""Forgetting: answers removed from a store for good, by number or by age (PIPL Art. 47).

Numbers come as people keep them: any spelling :func:`~qxt_pandas.normalize_mobiles` takes, one a
line in a text file, or a column of a CSV/TSV/xlsx/Parquet file (named, or guessed as the console
guesses it). What was not a number, and which numbers the store did not hold, is counted and said.

Example::

    import qxt_pandas
    qxt_pandas.forget("runs/crm.qxt", numbers=["139 7256 5391"])     # any spelling normalize_mobiles takes
    qxt_pandas.forget("postgresql://etl@db/qxt", older_than="180d")
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import timedelta

import pandas as pd

from ..numbers import normalize_mobiles
from ..options import parse_age
from ..options import store_key as checked_key
from ..service._secret import Secret
from . import open_existing
from .protocol import ANY_KEY

__all__ = ["Forgotten", "forget"]

_POLL = 0.2  # seconds between looks at the runs a forget waits for


class Forgotten(int):
    """How many numbers lost their answers (an int), and what could not be forgotten: ``not_numbers``
    (values that are no mobile number), ``not_held`` (valid numbers the store held no answer for), and
    ``live``: runs still going on the store, which may yet store an answer for one of the numbers
    (forget again once they have ended; 0 means none remains once the runs now live have ended)."""

    not_numbers: int = 0
    not_held: int = 0
    live: int = 0

    def __str__(self) -> str:
        return f"{int(self):,} {'number' + chr(39) + 's' if int(self) == 1 else 'numbers' + chr(39)} answers"


def forget(
    store: str | os.PathLike[str],
    *,
    numbers: Iterable[object] | pd.Series | None = None,
    older_than: timedelta | float | str | None = None,
    store_key: Secret | str | None = None,
    dry_run: bool = False,
    wait: timedelta | float | str = 60.0,
) -> Forgotten:
    """Remove every stored answer for ``numbers`` and/or older than ``older_than``; how many numbers lost theirs.

    A keyed store needs its ``store_key`` (or ``$QXT_STORE_KEY``) to forget by number; by age it
    needs none. ``dry_run`` counts and removes nothing. Receipts keep their counts (they hold no number).
    Forgetting by number first waits (at most ``wait``) for live runs claiming those numbers: their
    answers are then stored, and removed too. ``.live`` counts the runs still going afterwards.

    Example::

        removed = forget("runs/crm.qxt", older_than="90d")
        removed.not_numbers, removed.not_held       # what was given but could not be forgotten
    """
    if numbers is None and older_than is None:
        raise ValueError("forget what? pass numbers= or older_than= (or both)")
    age = parse_age(older_than, name="older_than")
    wanted, not_numbers = None, 0
    if numbers is not None:
        values = numbers if isinstance(numbers, pd.Series) else pd.Series(list(numbers), dtype=object)
        normalized = normalize_mobiles(values)["qxt_mobile"]
        not_numbers = int((normalized.isna() & values.notna() & values.astype(str).str.strip().ne("")).sum())
        wanted = sorted(set(normalized.dropna().astype(str)))
    key = checked_key(store_key)
    # by number, the key must be the store's own (a keyed store without it would match nothing); by age, any
    given = key if wanted is not None else ANY_KEY
    patience = parse_age(wait, name="wait") or 0.0
    opened = open_existing(store, key=given)
    try:
        if wanted and not dry_run:
            deadline = time.monotonic() + patience
            while opened.busy(wanted)[0] and time.monotonic() < deadline:
                time.sleep(_POLL)  # a claim ends once its answers are stored: then they can be removed
        removed = Forgotten(opened.forget(wanted, age, dry_run=dry_run))
        if wanted and not dry_run:
            removed.live = sum(opened.busy(wanted))
    finally:
        opened.close()
    removed.not_numbers = not_numbers
    if wanted is not None and age is None:
        removed.not_held = len(wanted) - int(removed)
    return removed
