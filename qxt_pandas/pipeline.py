"""One check of one column: normalize, deduplicate, subtract the checkpoint, plan, query, merge.

Each stage is a plain function over plain data; this module only strings
them together, for the accessor (a whole column) and the command line (a
batch at a time).

Example::

    columns = await acheck(df["mobile"], CheckOptions(checkpoint="runs/crm.qxt"))
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import (
    CHARGED_UNREADABLE,
    ColumnConflictError,
    InsufficientBalanceError,
    InvalidApiKeyError,
    InvalidRequestError,
    QxtError,
    StoreUnavailableError,
    TerminalError,
)
from .masking import numbers_shown
from .money import cost, yuan
from .numbers import number_codes, positions
from .options import CheckOptions, with_options
from .reports.charts import FONT_STACK, table_html
from .results import RESULT_COLUMNS, Failure, Results
from .service.answers import STORED_CODES, Answer, answers_table
from .service.client import AsyncClient, resolve_base_url
from .service.engine import EngineResult, Progress, query_numbers
from .service.protocol import Balance
from .stores import open_store
from .stores.claim import Claim
from .stores.protocol import Store
from .stores.receipts import Receipt
from .system.sync import Interrupted, draining

__all__ = ["RESULT_COLUMNS", "CheckOptions", "Plan", "acheck", "aplan", "preflight", "query", "with_options"]

PREPAID = "预付费"
log = logging.getLogger("qxt_pandas")


@dataclass(frozen=True)
class Plan:
    """What a check would do and cost; no paid query is made to find out.

    With a ``price`` (yuan per query), :attr:`cost` is what the run comes to at most: answers with
    "no information" (-4) are not charged, so a run often pays less.
    """

    rows: int
    invalid: int
    duplicates: int
    unique: int
    in_checkpoint: int
    to_query: int
    budget: int | None = None
    balance: int | None = None
    fee_type: str | None = None
    price: Decimal | None = None

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

    @property
    def cost(self) -> Decimal | None:
        """The most the run would cost in yuan (``will_query`` at ``price``); None without a price."""
        return None if self.price is None else cost(self.will_query, self.price)

    def _lines(self) -> list[tuple[str, str, str]]:
        """(label, figure, note) rows, for the text and the HTML of the plan."""
        budget = f"(budget {self.budget:,})" if self.budget is not None else ""
        lines = [("rows", f"{self.rows:,}", ""), ("  invalid (not sent)", f"{self.invalid:,}", ""),
                 ("  duplicates", f"{self.duplicates:,}", ""), ("unique valid numbers", f"{self.unique:,}", ""),
                 ("  in the checkpoint", f"{self.in_checkpoint:,}", ""),
                 ("  to query", f"{self.to_query:,}", budget)]  # fmt: skip
        if self.price is not None:
            lines.append(("cost at most", yuan(cost(self.will_query, self.price)), f"({self.will_query:,} x "
                          f"{yuan(self.price)}; 'no information' answers are not charged)"))  # fmt: skip
        if self.balance is not None:
            verdict = "covers the run" if self.covered else "does NOT cover the run"
            worth = f", {yuan(cost(self.balance, self.price))}" if self.price is not None else ""
            lines.append(("balance", f"{self.balance:,}", f"({self.fee_type}{worth}; {verdict})"))
        if self.price is None:
            lines.append(("cost", "-", "give a query's price (price=0.05, --price 0.05, $QXT_PRICE) to see yuan"))
        return lines

    def __str__(self) -> str:
        return "\n".join(f"{label:<20}{figure:>14}  {note}".rstrip() for label, figure, note in self._lines())

    def _repr_html_(self) -> str:
        rows = [(label.strip(), f"{figure} {note}".strip()) for label, figure, note in self._lines()]
        return f'<div style="font-family:{html.escape(FONT_STACK)}"><strong>QXT plan</strong>{table_html(rows)}</div>'


@dataclass
class Prepared:
    rows: int
    invalid: int
    numbers: pa.Array  # distinct valid numbers
    known: pa.Table  # stored answers for these numbers
    to_query: pa.Array  # the numbers without one (Arrow, not Python strings: there may be millions)
    store: Store | None

    def take(self, stored: pa.Table | None) -> int:
        """Use ``stored`` answers for numbers still to ask: they leave ``to_query``. How many were taken."""
        if stored is None or stored.num_rows == 0 or len(self.to_query) == 0:
            return 0
        found = positions(self.to_query, stored["mobile"])
        wanted = found.drop_null()
        # Every stored answer wanted (a re-run): kept as it is, not copied (answers are found by number, in any order).
        answered = stored if len(wanted) == stored.num_rows else stored.take(wanted)
        self.known = pa.concat_tables([self.known, answered]) if self.known.num_rows else answered
        self.to_query = self.to_query.filter(pc.is_null(found))
        return int(answered.num_rows)

    def close(self) -> None:
        """Let go of the store (a database connection); the answers taken from it stay."""
        if self.store is not None:
            self.store.close()

    def plan(self, budget: int | None, balance: Balance | None = None, price: Decimal | None = None) -> Plan:
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
            price=price,
        )


T = TypeVar("T")


def added_names(columns: Collection[Any], column: Any, prefix: str) -> list[str]:
    """The names the result columns get beside ``columns``: a KeyError when ``column`` is not there, a
    ColumnConflictError when a result column already is (a frame checked before) and no ``prefix`` avoids it."""
    if column not in columns:
        raise KeyError(f"no column {column!r} in the frame; its columns are {list(columns)}")
    names = [prefix + name for name in RESULT_COLUMNS]
    clash = [name for name in names if name in columns]
    if clash:
        raise ColumnConflictError(
            f"The frame already has column(s) {', '.join(clash)} (was it checked before?). "
            "Drop them, or pass prefix='new_' to add the results under other names."
        )
    return names


def prepare(numbers: pa.Array, rows: int, invalid: int, options: CheckOptions) -> Prepared:
    """What the checkpoint already answers for ``numbers``, and what is left to ask."""
    prepared = Prepared(rows, invalid, numbers, answers_table([]), numbers, None)
    if options.checkpoint is not None:
        prepared.store = open_store(options.checkpoint, service=service_of(options.base_url), key=options.store_key)
        prepared.take(servable(prepared.store.answers(max_age=served_age(options), numbers=numbers), options))
    return prepared


def served_age(options: CheckOptions) -> float | None:
    """The oldest answer a run may use: ``max_age``, and never past the store's ``retention``."""
    ages = [a for a in (options.max_age_seconds, options.retention_seconds) if a is not None]
    return min(ages) if ages else None


def servable(stored: pa.Table | None, options: CheckOptions) -> pa.Table | None:
    """The stored answers a run may use instead of asking: all, but "charged, unreadable" ones
    when ``retry_unreadable`` asks for those numbers again."""
    if stored is None or not options.retry_unreadable:
        return stored
    return stored.filter(pc.not_equal(stored["code"], CHARGED_UNREADABLE))


def service_of(base_url: str | None) -> str:
    """The host a checkpoint is bound to (no port: a simulator's port changes every run)."""
    return httpx.URL(resolve_base_url(base_url)).host


def _prepare_series(values: pd.Series, options: CheckOptions) -> tuple[Prepared, np.ndarray, np.ndarray]:
    codes, numbers, reasons = number_codes(values)
    return prepare(numbers, len(codes), int((codes < 0).sum()), options), codes, reasons


async def aplan(values: pd.Series, options: CheckOptions) -> Plan:
    """What :func:`acheck` would do: counts, the checkpoint's share, the balance. Free of charge."""
    prepared, _, _ = _prepare_series(values, options)
    try:
        async with options.client() as client:
            balance = await preflight(client, prepared)
    finally:
        prepared.close()
    return prepared.plan(options.budget, balance, options.unit_price)


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


async def preflight(client: AsyncClient, prepared: Prepared) -> Balance:
    """The balance (free), and the checkpoint bound to the kind of service that answered it."""
    balance = await read_balance(client)  # bad key, IP not allowed: raised here, before any paid query
    if prepared.store is not None:
        prepared.store.bind(bool(client.simulator))
    return balance


async def acheck(values: pd.Series, options: CheckOptions) -> pd.DataFrame:
    """The result columns for ``values`` (same index); raises a TerminalError if the run had to stop."""
    return await checked(values, options, lambda results, codes, reasons: results.frame(values.index, codes, reasons))


async def checked(values: pd.Series, options: CheckOptions, shape: Callable[[Results, np.ndarray, np.ndarray], T]) -> T:
    """A check of ``values``, its results in the ``shape`` a face wants (pandas columns, Arrow arrays for
    Polars); a TerminalError if the run had to stop, with those results as its ``.partial``."""
    with numbers_shown(options.show_numbers):
        prepared, codes, reasons = _prepare_series(values, options)
        run = await query(prepared, options)
        shaped = shape(Results(prepared.numbers, *outcome(prepared, run)), codes, reasons)
        if run.stopped is not None:
            raise stopped_error(run, prepared, shaped)
        return shaped


def outcome(prepared: Prepared, run: EngineResult) -> tuple[pa.Table, dict[str, Failure], str | None]:
    """``build_columns``'s last three arguments: all answers, failures, why the rest was not asked."""
    answers = pa.concat_tables([prepared.known, answers_table(run.answers)])
    failures = {mobile: Failure.of(exc) for mobile, exc in run.failures.items()}
    not_asked = "budget reached" if run.budget_reached else None
    if run.gave_up is not None:
        not_asked = f"the service refused every request ({run.refusals()}) for {run.gave_up:.0f} s; run again later"
    if run.waited is not None:
        not_asked = (f"another run on the checkpoint was asking them and did not finish within {run.waited:.0f} s "
                     "(patience); run again once it has")  # fmt: skip
    if run.stopped is not None:
        not_asked = f"the run stopped ({type(run.stopped).__name__})"
    return answers, failures, not_asked


async def query(prepared: Prepared, options: CheckOptions) -> EngineResult:
    """Ask what is left to ask, each number once across every run sharing the checkpoint."""
    try:
        return await _query(prepared, options)
    finally:
        prepared.close()


async def _query(prepared: Prepared, options: CheckOptions) -> EngineResult:
    store = prepared.store
    if len(prepared.to_query) == 0:
        if store is not None and store.simulator:  # simulated answers go only to a simulator: ask it
            async with options.client() as client:
                await preflight(client, prepared)
        run = EngineResult()
        if store is not None and options.retention_seconds is not None:
            run.expired = _expire(store, options)
        return run  # everything is answered: no paid request, and for real answers no key needed
    async with options.client() as client:
        started = time.monotonic()
        try:
            balance = await preflight(client, prepared)
        except QxtError as exc:  # a wrong URL, a closed port, a bad key: before any paid query
            exc.paid_nothing = True
            raise
        round_trip = time.monotonic() - started
        _refuse_if_uncovered(prepared.plan(options.budget, balance, options.unit_price))
        progress = Progress(len(prepared.to_query), from_checkpoint=prepared.known.num_rows,
                            style=options.progress_style)  # fmt: skip
        writer = store.writer(options.patience) if store is not None else None  # refuses a read-only role
        controller = options.controller()  # one limit for the whole run, whatever rounds claims take

        def keep(answer: Answer) -> None:
            if writer is not None and answer.code in STORED_CODES:
                writer.append(answer)

        run, pending = EngineResult(), prepared.to_query.to_pylist()
        receipt = None
        if writer is not None and store is not None:
            receipt = Receipt.begin(store, writer, balance, len(pending), bool(client.simulator))
        stopped = "interrupted"
        try:
            while pending:
                claim = await store.claim(pending, served_age(options)) if store is not None else Claim(pending)
                progress.found(prepared.take(servable(claim.answered, options)))
                mine, round_ = claim.mine, EngineResult()
                try:
                    left = None if options.budget is None else options.budget - run.paid
                    round_ = await query_numbers(
                        client, mine, controller=controller, rate=options.rate, budget=left, on_answer=keep,
                        progress=progress, ramp=min(round_trip, 1.0) if not run.answers else 0.0,
                        patience=options.patience, lease=claim if store is not None else None,
                    )  # fmt: skip
                    run.add(round_)
                finally:
                    if writer is not None:
                        await writer.settle()  # durable before the claim ends: nobody else may ask them before
                    claim.release()
                failure = writer.outcome() if writer is not None else None
                if failure is not None:
                    run.store_failed = run.store_failed or failure
                if run.stopped or run.store_failed or run.budget_reached or run.interrupted:
                    break
                if round_.lease_lost:  # another run took over numbers while this one's lease lapsed: claim again
                    asked = {answer.mobile for answer in round_.answers} | set(round_.failures)
                    pending = [n for n in mine if n not in asked]
                    continue
                if not claim.others:
                    break
                waited = await claim.wait(progress.note, options.patience)
                if waited is not None:  # interrupted, or another run held them past patience: left unanswered
                    drain = draining()
                    run.interrupted = drain is not None and drain.is_set()
                    run.waited = None if run.interrupted else waited
                    break
                pending = claim.waiting_for  # answered meanwhile: taken from the checkpoint by the next claim
            stopped = run.why()
        except Exception as exc:
            stopped = f"failed: {type(exc).__name__}"
            raise
        finally:
            progress.close(run.closing())
            if writer is not None:
                writer.close()
                failure = writer.outcome()
                if failure is not None:  # the truth about every answer paid for, whatever else went wrong
                    run.stopped, run.store_failed = failure, failure
                    stopped = run.why()
            if receipt is not None:  # the balance after, unless interrupted (no request then): it is free
                receipt.end(run, None if stopped == "interrupted" else await _balance_after(client), stopped)
    if run.store_failed is not None and run.stopped is None:  # e.g. the lease could not be renewed
        run.stopped = _store_failure(run.store_failed)
    if run.interrupted and run.stopped is None:
        raise Interrupted  # what was in flight is kept; the sync caller re-raises its KeyboardInterrupt
    if store is not None and (run.answers or options.retention_seconds is not None) and run.stopped is None:
        run.expired = _expire(store, options)
    return run


def _expire(store: Store, options: CheckOptions) -> int:
    """The store tidied after a run; with a retention, how many answers it removed, said in the log."""
    expired = store.tidy(options.retention_seconds)
    if expired:
        log.info("QXT: retention: %s answers older than %s removed from %s", f"{expired:,}",
                 options.retention, store.location)  # fmt: skip
    return expired


def _store_failure(exc: BaseException) -> TerminalError:
    """The store's failure as the run's stop (a StoreUnavailableError, with what it says)."""
    if isinstance(exc, TerminalError):
        return exc
    return StoreUnavailableError(f"The answer store failed: {exc}. The run stopped asking.", hint="")


async def _balance_after(client: AsyncClient) -> Balance | None:
    try:
        return await client.balance()
    except QxtError:
        return None


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


def stopped_error(run: EngineResult, prepared: Prepared, columns: object | None) -> TerminalError:
    """The terminal error, retold with what was saved and what remains; ``.partial`` holds the results."""
    exc = run.stopped
    assert exc is not None
    remaining = len(prepared.to_query) - len(run.answers) - len(run.failures)
    kept = prepared.store is not None and not isinstance(exc, StoreUnavailableError)
    where = f" and saved in {prepared.store.location}" if kept and prepared.store is not None else ""
    resume = (
        "Run the same check again to continue; answered numbers are not paid for again."
        if kept
        else "Run the same check again once the store can take answers"
        + ("." if exc.unsaved else "; the answers received are not paid for again.")
        if isinstance(exc, StoreUnavailableError)
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
    retold.answered, retold.remaining, retold.partial = len(run.answers), remaining, columns
    if isinstance(exc, StoreUnavailableError) and isinstance(retold, StoreUnavailableError):
        retold.transient, retold.spilled, retold.unsaved = exc.transient, exc.spilled, exc.unsaved
    return retold
