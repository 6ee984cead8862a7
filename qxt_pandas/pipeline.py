"""One check of one column: normalize, deduplicate, subtract the checkpoint, plan, query, merge.

Each stage is a plain function over plain data; this module only strings
them together, for the accessor (a whole column) and the command line (a
batch at a time).

Example::

    columns = await acheck(df["mobile"], CheckOptions(checkpoint="runs/crm.qxt"))
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, replace
from datetime import timedelta

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .checkpoint import STORED_CODES, Answer, Checkpoint, answers_table
from .client import DEFAULT_BACKOFF, DEFAULT_RETRIES, DEFAULT_TIMEOUT, AsyncClient, resolve_base_url
from .engine import EngineResult, Progress, query_numbers
from .errors import InsufficientBalanceError, InvalidApiKeyError, InvalidRequestError, TerminalError
from .numbers import number_codes
from .protocol import Balance
from .results import RESULT_COLUMNS, build_columns

__all__ = ["RESULT_COLUMNS", "CheckOptions", "Plan", "acheck", "aplan", "parse_age", "with_options"]

PREPAID = "预付费"


@dataclass(frozen=True)
class CheckOptions:
    """Every option of a check, with the defaults the accessor and the command share."""

    apikey: str | None = None
    base_url: str | None = None
    concurrency: int = 64
    rate: float | None = None
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    checkpoint: str | os.PathLike[str] | None = None
    max_age: timedelta | float | str | None = None
    budget: int | None = None
    progress: bool | str = True  # True/"bar", "log" (plain lines, for ETL logs), False/"off"
    transport: httpx.AsyncBaseTransport | None = None  # e.g. SimulatorTransport, for tests

    def __repr__(self) -> str:  # apikey hidden
        shown = {k: v for k, v in self.__dict__.items() if k != "apikey" and v is not None}
        return f"CheckOptions({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    def client(self) -> AsyncClient:
        return AsyncClient(
            self.apikey,
            base_url=self.base_url,
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
            max_connections=self.concurrency,
            transport=self.transport,
        )


@dataclass(frozen=True)
class Plan:
    """What a check would do and cost; no paid query is made to find out."""

    rows: int
    invalid: int
    duplicates: int
    unique: int
    in_checkpoint: int
    to_query: int
    budget: int | None = None
    balance: int | None = None
    fee_type: str | None = None

    @property
    def will_query(self) -> int:
        """Numbers a run would ask for: all not in the checkpoint, capped by ``budget``."""
        return self.to_query if self.budget is None else min(self.to_query, self.budget)

    @property
    def covered(self) -> bool | None:
        """Whether the balance pays for ``will_query`` (postpaid: always; unknown balance: None)."""
        if self.balance is None:
            return None
        return self.fee_type != PREPAID or self.balance >= self.will_query

    def __str__(self) -> str:
        lines = [
            f"rows                  {self.rows:>12,}",
            f"  invalid (not sent)  {self.invalid:>12,}",
            f"  duplicates          {self.duplicates:>12,}",
            f"unique valid numbers  {self.unique:>12,}",
            f"  in the checkpoint   {self.in_checkpoint:>12,}",
            f"  to query            {self.to_query:>12,}",
        ]
        if self.budget is not None:
            lines[-1] += f"  (budget {self.budget:,})"
        if self.balance is not None:
            verdict = "covers the run" if self.covered else "does NOT cover the run"
            lines.append(f"balance               {self.balance:>12,}  ({self.fee_type}; {verdict})")
        return "\n".join(lines)


@dataclass
class _Prepared:
    rows: int
    invalid: int
    numbers: pa.Array  # distinct valid numbers
    known: pa.Table  # stored answers for these numbers
    to_query: list[str]
    store: Checkpoint | None

    def plan(self, budget: int | None, balance: Balance | None = None) -> Plan:
        return Plan(
            rows=self.rows,
            invalid=self.invalid,
            duplicates=self.rows - self.invalid - len(self.numbers),
            unique=len(self.numbers),
            in_checkpoint=self.known.num_rows,
            to_query=len(self.to_query),
            budget=budget,
            balance=None if balance is None else balance.balance,
            fee_type=None if balance is None else balance.fee_type,
        )


def prepare(numbers: pa.Array, rows: int, invalid: int, options: CheckOptions) -> _Prepared:
    """What the checkpoint already answers for ``numbers``, and what is left to ask."""
    store, known, to_query = None, answers_table([]), numbers
    if options.checkpoint is not None:
        store = Checkpoint(options.checkpoint, service=service_of(options.base_url))
        stored = store.answers(max_age=parse_age(options.max_age))
        found = pc.index_in(numbers, value_set=stored["mobile"].combine_chunks())
        known = stored.take(found.drop_null())
        to_query = numbers.filter(pc.is_null(found))
    return _Prepared(rows, invalid, numbers, known, to_query.to_pylist(), store)


def service_of(base_url: str | None) -> str:
    """The host a checkpoint is bound to (no port: a simulator's port changes every run)."""
    return httpx.URL(resolve_base_url(base_url)).host


def parse_age(age: timedelta | float | str | None) -> float | None:
    """Seconds from a timedelta, a number of seconds, or text such as ``'90d'``, ``'12h'``, ``'2w'``."""
    if age is None or isinstance(age, (int, float)):
        return None if age is None else float(age)
    if isinstance(age, timedelta):
        return age.total_seconds()
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(age).lower())
    if not match:
        raise ValueError(f"max_age {age!r}: use a number of seconds or e.g. '90d', '12h', '30m', '2w'")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * unit


def _prepare_series(values: pd.Series, options: CheckOptions) -> tuple[_Prepared, np.ndarray, np.ndarray]:
    codes, numbers, reasons = number_codes(values)
    return prepare(numbers, len(codes), int((codes < 0).sum()), options), codes, reasons


async def aplan(values: pd.Series, options: CheckOptions) -> Plan:
    """What :func:`acheck` would do: counts, the checkpoint's share, the balance. Free of charge."""
    prepared, _, _ = _prepare_series(values, options)
    async with options.client() as client:
        balance = await read_balance(client)
    return prepared.plan(options.budget, balance)


async def read_balance(client: AsyncClient) -> Balance:
    """The balance; code 1 here can only mean a malformed key, so it is told as one."""
    try:
        return await client.balance()
    except InvalidRequestError as exc:
        raise InvalidApiKeyError(
            f"QXT rejected the request itself (code 1: {exc.reason}). The API key is probably malformed: "
            "it must be the 32-character key from your QXT account.",
            code=exc.code,
            reason=exc.reason,
            hint="",
        ) from None


async def acheck(values: pd.Series, options: CheckOptions) -> pd.DataFrame:
    """The result columns for ``values`` (same index); raises a TerminalError if the run had to stop."""
    prepared, codes, reasons = _prepare_series(values, options)
    run = await query(prepared, options)
    columns = build_columns(values.index, codes, prepared.numbers, reasons, *outcome(prepared, run))
    if run.stopped is not None:
        raise stopped_error(run, prepared, columns)
    return columns


def outcome(prepared: _Prepared, run: EngineResult) -> tuple[pa.Table, dict, str | None]:
    """``build_columns``'s last three arguments: all answers, failures, why the rest was not asked."""
    answers = pa.concat_tables([prepared.known, answers_table(run.answers)])
    not_asked = "budget reached" if run.budget_reached else None
    if run.stopped is not None:
        not_asked = f"the run stopped ({type(run.stopped).__name__})"
    return answers, run.failures, not_asked


async def query(prepared: _Prepared, options: CheckOptions) -> EngineResult:
    if not prepared.to_query:
        return EngineResult()  # everything is answered: no request at all, no key needed
    async with options.client() as client:
        started = time.monotonic()
        balance = await read_balance(client)  # bad key, IP not allowed: raised here, before any paid query
        round_trip = time.monotonic() - started
        _refuse_if_uncovered(prepared.plan(options.budget, balance))
        style = {True: "bar", False: "off"}.get(options.progress, options.progress)  # type: ignore[call-overload]
        progress = Progress(len(prepared.to_query), from_checkpoint=prepared.known.num_rows, style=style)
        writer = prepared.store.writer() if prepared.store is not None else None

        def keep(answer: Answer) -> None:
            if writer is not None and answer.code in STORED_CODES:
                writer.append(answer)

        try:
            run = await query_numbers(
                client, prepared.to_query, concurrency=options.concurrency, rate=options.rate,
                budget=options.budget, on_answer=keep, progress=progress, ramp=min(round_trip, 1.0),
            )  # fmt: skip
        finally:
            progress.close()
            if writer is not None:
                writer.close()
    if prepared.store is not None and run.answers and run.stopped is None:
        prepared.store.tidy()
    return run


def _refuse_if_uncovered(plan: Plan) -> None:
    """A prepaid balance that cannot pay for the run stops it before any paid query."""
    if plan.fee_type != PREPAID or plan.balance is None:
        return
    if plan.balance <= 0 or (plan.budget is None and plan.balance < plan.to_query):
        raise InsufficientBalanceError(
            f"The prepaid balance is {plan.balance:,} queries; this run needs up to {plan.to_query:,} "
            f"({plan.in_checkpoint:,} more are already answered in the checkpoint). Nothing was spent. "
            f"Top up with QXT, or pass budget={max(plan.balance, 0)} to check that many numbers now and "
            "the rest later.",
            hint="",
        )


def stopped_error(run: EngineResult, prepared: _Prepared, columns: pd.DataFrame | None) -> TerminalError:
    """The terminal error, retold with what was saved and what remains; ``.partial`` holds the results."""
    exc = run.stopped
    assert exc is not None
    remaining = len(prepared.to_query) - len(run.answers) - len(run.failures)
    where = f" and saved in {prepared.store.path}" if prepared.store is not None else ""
    resume = (
        "Run the same check again to continue; answered numbers are not paid for again."
        if prepared.store is not None
        else "Without a checkpoint, the answers so far are only in this exception's .partial."
        if columns is not None
        else "Without a checkpoint, the answers so far are lost; use --checkpoint."
    )
    retold = type(exc)(
        f"{exc.message} The run stopped: {len(run.answers):,} numbers were answered{where}; "
        f"{remaining:,} were not asked. {resume}",
        code=exc.code,
        reason=exc.reason,
        hint="",
    )
    retold.answered = len(run.answers)  # type: ignore[attr-defined]
    retold.remaining = remaining  # type: ignore[attr-defined]
    retold.partial = columns  # type: ignore[attr-defined]
    return retold


def with_options(options: CheckOptions | None = None, **overrides: object) -> CheckOptions:
    """``options`` with ``overrides``; unknown names are a clear TypeError."""
    fields = set(CheckOptions.__dataclass_fields__)
    unknown = set(overrides) - fields
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(sorted(unknown))}; options are {', '.join(sorted(fields))}")
    return replace(options or CheckOptions(), **overrides)  # type: ignore[arg-type]
