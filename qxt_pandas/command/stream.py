"""One check over a file of any size, in batches: the command line's job.

Before anything is paid for, the output is opened with its final columns.
Pass 1 reads only the number column, batch by batch, and keeps only the
distinct valid numbers. The plan, the preflight and the queries are the
pipeline's, as for a DataFrame. Pass 2 reads the file again, batch by batch,
adds the result columns and writes each batch to the output, which is
renamed into place only at the end. The export is never held in memory
whole, and a file that changes between the passes is refused.

Example::

    summary = check_file(open_source("crm.csv"), "mobile", AtomicWriter("out.parquet"), options)
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ..masked import masked_column
from ..money import cost, yuan
from ..numbers import normalized
from ..pipeline import CheckOptions, Plan, Prepared, outcome, preflight, prepare, query, stopped_error
from ..results import OUTPUT_TYPES, RESULT_COLUMNS, RESULT_DTYPES, Results, text_series
from ..service.engine import EngineResult
from ..service.protocol import Balance
from ..system.sync import run_sync
from ._rowcodes import RowCodes, spill_dir
from .files import InputError, Source
from .outputs import AtomicWriter, SplitWriter, Targets, publish

__all__ = ["Summary", "check_file", "output_schema", "plan_file"]


@dataclass
class Summary:
    """What a file check did, for the closing report."""

    plan: Plan
    paid: int = 0
    failed: int = 0
    unanswered: int = 0  # numbers with no answer: failed after retries, or not asked (budget)
    rows_written: int = 0
    split: dict[str, int] = field(default_factory=dict)  # rows per outcome file, with --split
    split_files: list[str] = field(default_factory=list)  # their paths
    held_back: Path | None = None  # the output left as it was (another run was asking numbers): written aside
    statuses: Counter[str] = field(default_factory=Counter)
    carriers: Counter[str] = field(default_factory=Counter)
    ported: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # every row by outcome: they add up to the rows
    expired: int = 0  # answers the store's --retention removed after the run

    @property
    def unreadable(self) -> int:
        """Rows whose answer was charged but could not be read."""
        return self.outcomes["unreadable"]

    elapsed: float = 0.0

    def __str__(self) -> str:
        answered = sum(self.statuses.values())
        shown = [(name, self.outcomes[name]) for name in _OUTCOMES if self.outcomes[name] or name == "answered"]
        lines = [
            f"rows {self.plan.rows:,} = " + " + ".join(f"{name} {n:,}" for name, n in shown),
            f"numbers: {self.plan.unique:,} distinct valid; paid queries {self.paid:,}{self._spent()}; from the "
            f"checkpoint {self.plan.in_checkpoint:,}; elapsed {self.elapsed:.1f} s",
            "answered rows by Status: " + _counts(self.statuses),
            "answered rows by carrier now: " + _counts(self.carriers),
            f"ported: {self.ported / answered:.1%} of answered rows" if answered else "ported: -",
        ]
        if self.unreadable:
            lines.append(f"{self.unreadable:,} rows have an answer that was charged but could not be read "
                         "(kept as 'charged, unreadable'; --retry-unreadable asks them again, and pays)")  # fmt: skip
        if self.split:
            lines.append("split: " + ", ".join(f"{k} {v:,}" for k, v in self.split.items()))
        if self.expired:
            lines.append(f"retention: {self.expired:,} old {'answer' if self.expired == 1 else 'answers'} removed "
                         "from the store")  # fmt: skip
        if self.unanswered:
            lines.append(f"{self.unanswered:,} numbers are unanswered ({self.failed:,} failed after retries, the "
                         "rest not asked): run again to ask for them")  # fmt: skip
        return "\n".join(lines)

    def _spent(self) -> str:
        price = self.plan.price
        return "" if price is None else f" ({yuan(cost(self.paid, price))} at {yuan(price)} a query)"


#: The outcomes every row falls in, in the order the summary names them.
_OUTCOMES = ("answered", "no information", "invalid (not sent)", "invalid (vendor)", "unreadable", "unanswered")


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counter.most_common()) or "-"


def _nothing() -> None:
    pass


def output_schema(source: Source, masked: Collection[str] = ()) -> pa.Schema:
    """The columns of the output: the input's (those ``masked`` as text), then the result columns; with pandas
    metadata, so that ``pd.read_parquet`` of the output gives the dtypes the accessor returns (``Is_MNP``
    boolean, ``qxt_code`` Int16), not object and int16."""
    inputs = [pa.field(f.name, pa.string()) if f.name in masked else f for f in source.schema]
    schema = pa.schema([*inputs, *(pa.field(name, kind) for name, kind in OUTPUT_TYPES.items())])
    frame = pa.schema(inputs).empty_table().to_pandas()
    for name, dtype in RESULT_DTYPES.items():
        frame[name] = pd.Series(dtype=dtype)
    return schema.with_metadata(pa.Schema.from_pandas(frame, preserve_index=False).metadata)


def _scan(source: Source, column: str, options: CheckOptions, spill: Path | None = None) -> tuple[Prepared, RowCodes]:
    """Pass 1: the distinct valid numbers, and (with ``spill``, a directory) every row's code into them and
    reason, kept on disk for pass 2, which then neither normalizes again nor looks numbers up."""
    if column not in source.columns:
        raise InputError(f"{source.path} has no column {column!r}; its columns are {source.columns}.")
    clash = [c for c in RESULT_COLUMNS if c in source.columns]
    if clash:
        raise InputError(f"{source.path} already has column(s) {', '.join(clash)}; rename them first.")
    codes = RowCodes(spill)
    try:
        # A batch is normalized (Arrow kernels, no GIL) while the one before is coded: two cores, both busy.
        with ThreadPoolExecutor(1, thread_name_prefix="qxt-normalize") as pool:
            ahead: Future[tuple[pa.Array, np.ndarray | None, np.ndarray]] | None = None
            for table in source.tables([column]):
                job = pool.submit(normalized, text_series(table.column(0)))
                if ahead is not None:
                    codes.add(*ahead.result())
                ahead = job
            if ahead is not None:
                codes.add(*ahead.result())
        if not source.unchanged():
            raise _changed(source)
        return prepare(codes.numbers(), codes.rows, codes.invalid, options), codes
    except BaseException:
        codes.close()
        raise


def _masked(table: pa.Table, names: list[str]) -> pa.Table:
    """``--mask-output``: the number columns as text, every number in them as ``139****5391`` (masked.py)."""
    for name in names:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, pa.field(name, pa.string()), masked_column(table.column(i)))
    return table


def _aside(path: Path, targets: Targets) -> Path:
    """Where a run that gave up waiting for another run writes its rows: beside the output, never over it."""
    aside = path.with_name(f"{path.stem}.unfinished{path.suffix}")
    if targets.free(aside):
        return aside
    return path.with_name(f"{path.stem}.unfinished-{uuid.uuid4().hex[:8]}{path.suffix}")


def _changed(source: Source, detail: str = "") -> InputError:
    return InputError(
        f"{source.path} changed while it was being checked{detail} (an export still being written?). "
        "No output was written; run again once the file is complete."
    )


def plan_file(source: Source, column: str, options: CheckOptions) -> Plan:
    """The plan for a file, with the balance. Spends nothing."""
    prepared, codes = _scan(source, column, options)
    codes.close()

    async def balance() -> Balance:
        try:
            async with options.client() as client:
                return await preflight(client, prepared)
        finally:
            prepared.close()

    return prepared.plan(options.budget, run_sync(balance()), options.unit_price)


def check_file(
    source: Source,
    column: str,
    output: AtomicWriter,
    options: CheckOptions,
    on_scanned: Callable[[], None] = _nothing,
    *,
    split: bool = False,
    targets: Targets | None = None,
    mask_output: bool = False,
) -> Summary:
    """Check ``column`` of ``source`` and write every row with its results to ``output``.

    Runs in the caller's thread except for the queries, so Ctrl-C stops the writing at once.
    ``on_scanned`` is called when everything that can be checked for free has been. ``split``
    also writes each outcome's rows to a file of its own beside ``output``; ``targets`` says
    which files may be written (every one known now is checked before paying).
    """
    started = time.monotonic()
    schema = output_schema(source, masked=[column] if mask_output else [])
    targets = targets or Targets(inputs=[source.path])
    parts = SplitWriter(output, schema, targets=targets) if split else None
    targets.refuse([output.path, *(parts.planned() if parts is not None else [])])
    output.open(schema)  # before paying: the output can be written, with these columns
    codes: RowCodes | None = None
    try:
        prepared, codes = _scan(source, column, options, spill=spill_dir(output.path))
        on_scanned()
        summary = Summary(prepared.plan(options.budget, price=options.unit_price))
        run: EngineResult = run_sync(query(prepared, options))
        if run.stopped is not None:
            raise stopped_error(run, prepared, None)  # no output: it would be incomplete
        # answers another run gave meanwhile count as stored
        summary.plan = prepared.plan(options.budget, price=options.unit_price)
        results = Results(prepared.numbers, *outcome(prepared, run))
        prepared.known = prepared.known.slice(0, 0)  # the results hold what rows need: let the answers go
        summary.paid, summary.failed, summary.expired = run.paid, len(run.failures), run.expired
        summary.unanswered = len(prepared.to_query) - len(run.answers)
        tally = results.tally(codes.counts, codes.invalid)
        summary.statuses, summary.carriers, summary.ported, summary.outcomes = tally
        codes.rewind()
        read = 0  # rows of the file in pass 2: the refusal below names what the file holds, not what was written
        for table in source.tables():
            read += table.num_rows
            if read > codes.rows:
                continue  # more rows than pass 1 read: counted, not written, refused below
            for name, array in zip(RESULT_COLUMNS, results.output(*codes.read(table.num_rows)), strict=True):
                table = table.append_column(name, array)
            if mask_output:
                table = _masked(table, [column, "qxt_mobile"])
            if parts is not None:
                parts.write(table)
            output.write(table)
        if read != prepared.rows or not source.unchanged():
            raise _changed(source, f"; it has {read:,} rows now, {prepared.rows:,} when its numbers were read")
        if run.waited is not None:  # another run asks some of these numbers: the output is its to write
            summary.held_back = output.path
            output.path = _aside(output.path, targets)
            if parts is not None:
                parts.discard()
            output.commit()
        else:
            publish(output, parts)
            if parts is not None:
                summary.split = {outcome: writer.rows for outcome, writer in parts.writers.items()}
                summary.split_files = [str(writer.path) for writer in parts.writers.values()]
    except BaseException:
        output.discard()
        if parts is not None:
            parts.discard()
        raise
    finally:
        if codes is not None:
            codes.close()
    summary.rows_written = output.rows
    summary.elapsed = time.monotonic() - started
    return summary
