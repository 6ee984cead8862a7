"""The stores of answers, reached through one protocol (:mod:`.protocol`), and which store a location means.

Example::

    store = open_store("postgresql://etl@db/qxt", service="ps.szqxt.com")
    stored = store.answers(numbers=pa.array(["13972565391"]))

Layers: :mod:`.protocol` (what a store does), the implementations (:mod:`.directory`, :mod:`.postgres`, and
:mod:`.keyed` around either), what every store shares (:mod:`.journal`, :mod:`.receipts`, :mod:`.tallies`,
spills, locks, durable writes), and what works through the protocol alone (:mod:`.copy`, :mod:`.forget`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import CheckpointError
from ..service._secret import Secret
from .directory.store import refuse_foreign
from .protocol import ANY_KEY, DATABASE_SCHEMES, Store

__all__ = ["is_database", "open_existing", "open_store", "refuse_foreign", "shown"]


def is_database(location: str | os.PathLike[str] | None) -> bool:
    """Whether ``location`` names a database (a URI) rather than a directory."""
    return isinstance(location, str) and location.strip().lower().startswith(DATABASE_SCHEMES)


def shown(location: str | os.PathLike[str]) -> str:
    """``location`` as messages show it: a URI's password replaced by ``***``."""
    if not is_database(location):
        return str(location)
    from .postgres.store import without_password

    return without_password(str(location))


def open_store(
    location: str | os.PathLike[str], *, service: str, create: bool = True, key: Secret | object | None = None
) -> Store:
    """The store at ``location``: a PostgreSQL URI, or a directory. ``create=False`` (reports) refuses one
    that does not exist yet instead of making it. With a store ``key`` it holds numbers only as keyed
    hashes (see :mod:`.keyed`); the key must be the one the store was made with."""
    from .keyed import KeyedStore, fingerprint

    mark = key if key is ANY_KEY else fingerprint(key)  # type: ignore[arg-type]
    if is_database(location):
        from .postgres.store import PostgresStore

        inner: Store = PostgresStore(str(location), service=service, create=create, key=mark)
    else:
        from .directory.store import Checkpoint

        inner = Checkpoint(location, service=service, key=mark)
    return KeyedStore(inner, key) if isinstance(key, Secret) else inner


def open_existing(location: str | os.PathLike[str], key: Secret | object | None = ANY_KEY) -> Store:
    """A store that must exist already (a report, forgetting), bound to the service it holds; creates nothing."""
    if is_database(location):
        from .postgres.store import stored_service

        return open_store(location, service=stored_service(str(location)), create=False, key=key)
    path = Path(location)
    meta = path / "meta.json"
    if not meta.exists():
        raise CheckpointError(f"{path} is not a qxt checkpoint (it has no meta.json). Pass the directory a check "
                              "wrote with checkpoint= or --checkpoint.")  # fmt: skip
    try:
        service = json.loads(meta.read_text(encoding="utf-8")).get("service")
    except (OSError, ValueError, AttributeError):
        service = None
    return open_store(path, service=str(service), key=key)  # a damaged meta.json is refused here, with what to do
