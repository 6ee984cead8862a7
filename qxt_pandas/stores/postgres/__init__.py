"""The PostgreSQL store, for teams, containers and clusters (``store.py``:
:class:`~qxt_pandas.stores.postgres.store.PostgresStore`; ``_write.py``: its writer and claims)."""
