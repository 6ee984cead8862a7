"""Counts of a store's answers by what a report shows, made where the answers are.

A report needs counts, not answers: how many numbers by code, Status, carrier now,
province and ported. A PostgreSQL store counts them with one ``GROUP BY``; a
directory counts them a batch at a time, keeping per answer only its number, its
time and the index of its group (the newest answer of a number is the one that
counts), so a report's memory does not hold the answers' text.

A tally is a table: ``code``, ``Status``, ``Now_isp``, ``province``, ``Is_MNP`` and
``count``, one row per group.

Example::

    counts = tally(store.answers())          # a table of answers, one per number
    counts = tally_batches(store.batches())  # any answers, repeats allowed: the newest counts
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .journal import newest_indices

__all__ = ["TALLY_SCHEMA", "merge_tallies", "tally", "tally_batches"]

TALLY_SCHEMA = pa.schema([("code", pa.int16()), ("Status", pa.string()), ("Now_isp", pa.string()),
                          ("province", pa.string()), ("Is_MNP", pa.bool_()), ("count", pa.int64())])  # fmt: skip
_KEYS = TALLY_SCHEMA.names[:-1]
_SEP, _NULL = "\x1f", "\x00"  # between a group's keys, and for a missing one (neither is in any answer's text)


def province(area: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """省 from 省-市."""
    return pc.list_element(pc.split_pattern(area, "-", max_splits=1), 0)


def _keys(table: pa.Table) -> pa.Array:
    """Each answer's group as one text (its keys joined), for dictionary encoding."""
    parts = [table["code"].cast(pa.string()), table["Status"], table["Now_isp"], province(table["Area"]),
             table["Is_MNP"].cast(pa.int8()).cast(pa.string())]  # fmt: skip
    joined = pc.binary_join_element_wise(*[pc.fill_null(p.cast(pa.string()), _NULL) for p in parts], _SEP)
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def _table(keys: list[str], counts: Iterable[int]) -> pa.Table:
    """A tally from joined keys and their counts."""
    columns: list[list[str | None]] = [[] for _ in _KEYS]
    for key in keys:
        for column, value in zip(columns, key.split(_SEP), strict=True):
            column.append(None if value == _NULL else value)
    return pa.table([
        pa.array([None if c is None else int(c) for c in columns[0]], pa.int16()),
        pa.array(columns[1], pa.string()), pa.array(columns[2], pa.string()), pa.array(columns[3], pa.string()),
        pa.array([None if c is None else c == "1" for c in columns[4]], pa.bool_()),
        pa.array(list(counts), pa.int64()),
    ], schema=TALLY_SCHEMA)  # fmt: skip


def tally(table: pa.Table) -> pa.Table:
    """The tally of ``table``'s answers, each row counted (one answer per number: see :func:`tally_batches`)."""
    if table.num_rows == 0:
        return TALLY_SCHEMA.empty_table()
    counted = pc.value_counts(_keys(table))
    return _table(counted.field("values").to_pylist(), counted.field("counts").to_pylist())


def tally_batches(batches: Iterable[pa.Table]) -> pa.Table:
    """The tally of the newest answer per number over ``batches`` (a number may come more than once), keeping
    per answer its number, its time and its group's index, never its text."""
    groups: dict[str, int] = {}
    mobiles: list[pa.Array] = []
    times: list[pa.Array] = []
    indices: list[np.ndarray] = []
    for batch in batches:
        if batch.num_rows == 0:
            continue
        encoded = pc.dictionary_encode(_keys(batch))
        local = [groups.setdefault(key, len(groups)) for key in encoded.dictionary.to_pylist()]
        indices.append(np.asarray(local, dtype=np.int32)[encoded.indices.to_numpy(zero_copy_only=False)])
        mobiles.append(batch["mobile"].combine_chunks())
        times.append(batch["checked_at"].combine_chunks())
    if not groups:
        return TALLY_SCHEMA.empty_table()
    group = np.concatenate(indices)
    if len(indices) > 1:  # a number in two batches (a part and a journal): its newest answer counts
        keep = newest_indices(pa.table({"mobile": pa.concat_arrays(mobiles), "checked_at": pa.concat_arrays(times)}))
        group = group[keep.to_numpy()]
    counts = np.bincount(group, minlength=len(groups))
    kept = [(key, int(n)) for key, n in zip(groups, counts, strict=True) if n]
    return _table([k for k, _ in kept], [n for _, n in kept])


def merge_tallies(tallies: Iterable[pa.Table]) -> pa.Table:
    """Tallies summed group by group."""
    together = pa.concat_tables([t.cast(TALLY_SCHEMA) for t in tallies])
    if together.num_rows == 0:
        return TALLY_SCHEMA.empty_table()
    summed = together.group_by(_KEYS, use_threads=False).aggregate([("count", "sum")])
    return summed.rename_columns([*_KEYS, "count"]).select(TALLY_SCHEMA.names).cast(TALLY_SCHEMA)
