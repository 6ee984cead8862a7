"""The embedded store: a directory of compacted Parquet parts, journals being written, claims and receipts
(``store.py``: :class:`~qxt_pandas.stores.directory.store.Checkpoint`; ``claims.py``: who asks what now)."""
