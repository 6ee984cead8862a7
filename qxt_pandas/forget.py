"""Forgetting: answers removed from a store for good, by number or by age (PIPL Art. 47).

Example::

    import qxt_pandas
    qxt_pandas.forget("runs/crm.qxt", numbers=["139 7256 5391"])     # any spelling normalize_mobiles takes
    qxt_pandas.forget("postgresql://etl@db/qxt", older_than="180d")
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta

import pandas as pd

from ._secret import Secret
from .numbers import normalize_mobiles
from .options import parse_age
from .store import ANY_KEY, open_existing

__all__ = ["forget"]


def forget(
    store: str | os.PathLike[str],
    *,
    numbers: Iterable[object] | pd.Series | None = None,
    older_than: timedelta | float | str | None = None,
    store_key: Secret | str | None = None,
    dry_run: bool = False,
) -> int:
    """Remove every stored answer for ``numbers`` and/or older than ``older_than``; how many numbers lost theirs.

    A keyed store needs its ``store_key`` (or ``$QXT_STORE_KEY``) to forget by number; by age it
    needs none. ``dry_run`` counts and removes nothing. Receipts keep their counts (they hold no number).

    Example::

        removed = forget("runs/crm.qxt", older_than="90d")
    """
    if numbers is None and older_than is None:
        raise ValueError("forget what? pass numbers= or older_than= (or both)")
    age = parse_age(older_than, name="older_than")
    wanted = None
    if numbers is not None:
        normalized = normalize_mobiles(numbers if isinstance(numbers, pd.Series) else pd.Series(list(numbers)))
        wanted = sorted(set(normalized["qxt_mobile"].dropna().astype(str)))
    key = store_key if store_key is not None else os.environ.get("QXT_STORE_KEY") or None
    # by number, the key must be the store's own (a keyed store without it would match nothing); by age, any
    given = (Secret.wrap(key) if key is not None else None) if wanted is not None else ANY_KEY
    opened = open_existing(store, key=given)
    try:
        return opened.forget(wanted, age, dry_run=dry_run)
    finally:
        opened.close()
