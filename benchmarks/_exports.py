"""Shared by the benchmarks: exports shaped like real ones, and checkpoints that already answer them.

Real CRM exports are mostly distinct numbers with a few percent of junk; the
older benchmarks used a few thousand numbers in millions of rows. Both shapes
are made here, seeded, so every benchmark measures the same data.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from qxt_pandas.simulator import answer
from qxt_pandas.stores.directory.store import Checkpoint
from qxt_pandas.stores.journal import Answer

PREFIXES = np.array(["139", "138", "186", "189", "158", "177", "135", "150", "131", "133"])
JUNK = np.array(["无", "", "0", "0755-26012345", "400-800-8888", "139****5391", "n/a", "1234567", "13800138000/13900"])


def numbers(distinct: int, seed: int = 7) -> np.ndarray:
    """``distinct`` different valid mobile numbers."""
    rng = np.random.default_rng(seed)
    out: set[str] = set()
    while len(out) < distinct:
        need = distinct - len(out)
        prefixes = rng.choice(PREFIXES, need + need // 10 + 10)
        tails = rng.integers(0, 10**8, len(prefixes))
        out.update(np.char.add(prefixes, np.char.zfill(tails.astype(str), 8)).tolist())
    return np.array(sorted(out)[:distinct], dtype=object)


def mobile_column(rows: int, distinct: int, junk: float = 0.05, messy: float = 0.2, seed: int = 7) -> np.ndarray:
    """A number column of ``rows`` over ``distinct`` numbers (each at least once when rows allow), with junk."""
    rng = np.random.default_rng(seed + 1)
    pool = numbers(distinct, seed)
    picks = np.concatenate([np.arange(min(rows, distinct)), rng.integers(0, distinct, max(0, rows - distinct))])
    rng.shuffle(picks)
    column = pool[picks].astype(object)
    spelled = rng.random(rows) < messy
    column[spelled] = np.char.add("+86 ", column[spelled].astype(str)).astype(object)
    bad = rng.random(rows) < junk
    column[bad] = rng.choice(JUNK, int(bad.sum()))
    return column


def write_export(path: Path, rows: int, distinct: int, *, columns: int = 4, seed: int = 7) -> None:
    """A CSV export: id, name, city (as many as ``columns`` asks), then mobile."""
    rng = np.random.default_rng(seed)
    mobile = mobile_column(rows, distinct, seed=seed)
    names = [*["customer_id", "name", "city"][: columns - 1], "mobile"]
    chunk = 1_000_000
    with pa_csv.CSVWriter(path, pa.schema([(c, pa.string()) for c in names])) as w:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            data = {
                "customer_id": pa.array(np.char.add("C", np.arange(start, start + n).astype(str))),
                "name": pa.array(rng.choice(["张伟", "王芳", "李娜", "刘洋", "陈静"], n)),
                "city": pa.array(rng.choice(["深圳", "广州", "北京", "上海"], n)),
                "mobile": pa.array(mobile[start : start + n], pa.string()),
            }
            w.write_table(pa.table({c: data[c] for c in names}))


def fill_checkpoint(
    path: Path, mobiles: list[str] | np.ndarray, service: str = "127.0.0.1", *, simulator: bool | None = True
) -> Checkpoint:
    """A compacted checkpoint that answers every one of ``mobiles`` as the simulator would.

    Bound to the simulator unless ``simulator=None`` (then a run with nothing to ask sends nothing).
    """
    store = Checkpoint(path, service=service)
    now = time.time()
    with store.writer() as journal:
        for m in mobiles:
            (code, reason), result = answer(m)
            if result is None:
                journal.append(Answer(m, code, reason=reason, checked_at=now))
            else:
                journal.append(Answer(m, 0, result["Status"], result["Area"], result["Is_MNP"] == "1",
                                      result["Init_isp"], result["Now_isp"], None, now))  # fmt: skip
    store.compact()
    if simulator is not None:
        store.bind(simulator=simulator)
    return store
