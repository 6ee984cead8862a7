"""A store of answers in PostgreSQL: pay once across machines, containers and a team.

``checkpoint="postgresql://etl@db/qxt"`` (any libpq URI; ``?schema=name`` picks
the schema, default ``qxt``; it is taken out before libpq sees the URI) keeps
everything a directory checkpoint keeps, in five tables created on first use::

    meta      format, the service's host, whether it is the simulator
    answers   one row per number: the newest answer (primary key mobile)
    claims    numbers a live run is asking right now, and which run
    runs      live runs: a session advisory lock each, and a heartbeat
    receipts  each run's start and end records (JSON)

- Lookups are by the numbers a run needs (``= ANY`` in batches), never the
  whole table: memory and time grow with the run, not with the store.
- Answers are committed in batches every ``COMMIT_EVERY`` seconds or
  ``COMMIT_BATCH`` answers, whichever comes first: a ``kill -9`` re-pays at most
  what was in flight plus one uncommitted batch.
- A batch is kept until its commit succeeds. If a write fails (the database
  gone, restarting, read-only, refusing), the batch goes to a local spill
  file (:mod:`._spill`) at once and the run sends nothing more until the store
  is back: a passing fault (a lost connection, a read-only moment) is retried
  with backoff within the run's patience, the spill moved in, the claims
  checked, and the run goes on; any other, or one that outlasts the patience,
  stops the run (non-zero), and the next run on this store moves the spill in.
- A claim is live while its run holds its session's advisory lock (a dead
  run's session ends, and with it the lock) and has renewed its heartbeat
  within the lease (``$QXT_LEASE_SECONDS``, default 60; every run on a store
  must use the same). A run knows its lease's deadline: no request starts
  that could outlive it (see :meth:`PostgresClaim.ready`); after a suspension
  it first renews and checks that every number of its claim is still its own.
- Connections use no server-side prepared statements, so a pooler in
  transaction mode (PgBouncer) serves them.

Example::

    store = PostgresStore("postgresql:///qxt?host=/run/postgresql", service="ps.szqxt.com")
    store.answers(numbers=pa.array(["13972565391"]))
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc

from ...errors import CheckpointError, StoreUnavailableError
from ...system.sync import draining
from .._spill import identity, spilled
from ..journal import ANSWER_SCHEMA, Answer, newest_per_number, prune_spilled, read_journal, warn_once
from ..protocol import check_key, refuse_other_kind
from ..receipts import keep_end, merge_runs, pending_ends, recovered_end, write_in_ends
from ..tallies import TALLY_SCHEMA, merge_tallies, tally
from ._write import (
    COMMIT_BATCH,
    COMMIT_EVERY,
    PostgresClaim,
    PostgresWriter,
    _first_line,
    _transient,
    _unavailable,
)

__all__ = ["COMMIT_BATCH", "COMMIT_EVERY", "LEASE", "PostgresStore", "without_password"]

FORMAT = 1
LEASE = 60.0  # seconds: a run that has not renewed its heartbeat for this long holds no claims ($QXT_LEASE_SECONDS)
_LOOKUP_BATCH = 20_000
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SCHEMA_LOCK = 0x71787473  # advisory lock keys ("qxts", "qxtc"): creating the schema, claiming
_CLAIMS_LOCK = 0x71787463
#: Numbers claimed a transaction: the claims lock is held ~20 ms for each (benchmarks/claims_lock.py).
_CLAIM_BATCH = 2_000
T = TypeVar("T")
_COLUMNS = "mobile, code, status, area, is_mnp, init_isp, now_isp, reason, checked_at"


def without_password(uri: str) -> str:
    """``uri`` with its password (in the authority or a ``password=`` parameter) shown as ``***``."""
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            netloc = user.split(":", 1)[0] + ":***@" + host
    query = re.sub(r"(^|&)password=[^&]*", r"\1password=***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _split(uri: str) -> tuple[str, str]:
    """The libpq URI without our ``schema`` parameter, and the schema."""
    parts = urlsplit(uri)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in pairs if k == "schema"), "qxt")
    if not _SCHEMA_NAME.fullmatch(schema):
        raise CheckpointError(f"schema={schema!r} in {without_password(uri)}: use letters, digits and _ (at most 63).")
    query = urlencode([(k, v) for k, v in pairs if k != "schema"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment)), schema


def lease_seconds() -> float:
    """The lease: ``$QXT_LEASE_SECONDS`` (at least 1), else ``LEASE``."""
    try:
        return max(float(os.environ.get("QXT_LEASE_SECONDS") or LEASE), 1.0)
    except ValueError:
        return LEASE


def _clock() -> float:
    """Seconds that go on while this process is stopped or the machine sleeps (a lease lapses meanwhile)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


def stored_service(uri: str) -> str:
    """The service a store's answers came from (for a report, which names none); "" when it holds none."""
    conninfo, schema = _split(uri)
    probe = PostgresStore.__new__(PostgresStore)
    probe._conninfo, probe.schema, probe._shown = conninfo, schema, without_password(uri)
    probe._conn = probe._connect()
    try:
        probe._ensure_schema(create=False)
        with probe._tx() as cur:
            cur.execute(probe._q("select value from S.meta where key = 'service'"))
            row = cur.fetchone()
    finally:
        probe.close()
    if row is None:
        raise CheckpointError(f"{probe.location} holds no qxt answers yet.")
    return str(json.loads(row[0]))


class PostgresStore:
    """The :class:`~qxt_pandas.stores.protocol.Store` protocol over one PostgreSQL schema (see the module docstring)."""

    def __init__(self, uri: str, *, service: str, create: bool = True, key: object = None) -> None:
        self.service = service
        self._conninfo, self.schema = _split(uri)
        self._shown = without_password(uri)
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._lock_key = random.getrandbits(62) + 1
        self._registered = False
        self.lease = lease_seconds()
        self.patience = 300.0  # how long a passing fault is retried before the run stops (the run's own)
        self.fault: StoreUnavailableError | None = None  # why the store cannot take answers now
        self._beat_at = -math.inf  # _clock() when this run's heartbeat was last renewed (its lease runs from there)
        self._unmoved: list[pa.Table] = []  # spilled answers that could not be moved in: read as stored
        self._conn = self._connect()
        self._ensure_schema(create)
        self._key = key
        self._meta = self._read_meta(create)
        check_key(self.location, self._meta.get("key"), key)
        self.identity = self._identity()
        self._move_spilled()

    def __repr__(self) -> str:
        return f"PostgresStore({self._shown!r}, schema={self.schema!r}, service={self.service!r})"

    @property
    def location(self) -> str:
        return f"{self._shown} (schema {self.schema})"

    # -- the connection ----------------------------------------------------------

    def _connect(self) -> Any:
        try:
            import psycopg
        except ImportError:
            raise CheckpointError("A PostgreSQL store needs psycopg: pip install 'qxt-pandas[postgres]'. Nothing was "
                                  "asked or paid for.") from None  # fmt: skip

        try:  # no server-side prepared statements: a pooler in transaction mode hands each to another backend
            return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10,
                                   application_name="qxt-pandas", prepare_threshold=None)  # fmt: skip
        except psycopg.OperationalError as exc:
            raise _connect_error(self.location, exc) from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        """A transaction's cursor. Every failure is one of ours: a missing privilege a CheckpointError
        (running again will not help), anything else a StoreUnavailableError, ``transient`` when it may pass."""
        import psycopg

        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                yield cur
        except psycopg.errors.InsufficientPrivilege as exc:
            raise CheckpointError(f"The role may not do this in {self.location}: {_first_line(exc)}. "
                                  f"{_GRANTS}") from None  # fmt: skip
        except psycopg.Error as exc:
            raise _unavailable(self.location, exc, _transient(exc, self._conn)) from None

    def _q(self, sql: str) -> str:
        """``sql`` with ``S.`` naming this store's schema (checked to be a plain identifier)."""
        return sql.replace("S.", f'"{self.schema}".')

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()

    def reconnect(self) -> None:
        """A new session after a lost one: this run's advisory lock taken again (its claims live again, if
        nobody took them meanwhile). StoreUnavailableError when the database is still away."""
        if not (self._conn.closed or self._conn.broken):
            return
        self.close()
        self._conn = self._connect()
        if self._registered:
            with self._tx() as cur:  # try: after a network cut the old backend may hold it still, which is as good
                cur.execute("select pg_try_advisory_lock(%s)", (self._lock_key,))

    # -- schema, meta, binding -----------------------------------------------------

    def _ensure_schema(self, create: bool) -> None:
        """Refuse a schema holding tables qxt did not make; ``create=False`` (a report) refuses one without
        qxt's tables. Nothing is created here: :meth:`create` does, once a run writes."""
        with self._tx() as cur:
            cur.execute("select table_name, array_agg(column_name::text order by ordinal_position) from "
                        "information_schema.columns where table_schema = %s and table_name = any(%s) "
                        "group by table_name", (self.schema, list(_TABLES)))  # fmt: skip
            found = dict(cur.fetchall())
            foreign = sorted(name for name, columns in found.items() if columns != _TABLES[name])
            if foreign:
                raise CheckpointError(
                    f"The schema {self.schema} in {self.location} holds table(s) {', '.join(foreign)} that qxt did "
                    "not make (their columns differ). Nothing was read, written, asked or paid for. Name a schema "
                    "of qxt's own with ?schema=.",
                )
            if "meta" not in found and not create:
                raise CheckpointError(f"{self.location} holds no qxt answers (no table {self.schema}.meta).")
        self._made = "meta" in found

    def create(self) -> None:
        """The schema, its tables and meta, now that a run writes here (after its key and service were checked:
        a plan, or a check that fails before paying, leaves no trace)."""
        import psycopg

        if self._exists():
            return
        with self._tx() as cur:
            try:
                cur.execute("select pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                cur.execute(f'create schema if not exists "{self.schema}"')
                for statement in _DDL:
                    cur.execute(self._q(statement))
            except psycopg.errors.InsufficientPrivilege as exc:
                raise CheckpointError(
                    f"The role cannot create the schema {self.schema} in {self.location} ({_first_line(exc)}). "
                    "Create it once with a role that may (docs/store.md lists the privileges), or name another "
                    "schema with ?schema=.",
                ) from None
            mark = self._key if isinstance(self._key, str) else None
            cur.execute(self._q("insert into S.meta values ('format', %s), ('service', %s), ('key', %s) "
                                "on conflict do nothing"),
                        (json.dumps(FORMAT), json.dumps(self.service), json.dumps(mark)))  # fmt: skip
        self._made = True
        self._meta = self._read_meta(create=False)
        check_key(self.location, self._meta.get("key"), self._key)

    def _exists(self) -> bool:
        """Whether the store exists now (another run may have made it since this one opened it)."""
        if not self._made:
            with self._tx() as cur:
                cur.execute("select 1 from information_schema.tables where table_schema = %s and table_name = "
                            "'meta'", (self.schema,))  # fmt: skip
                self._made = cur.fetchone() is not None
            if self._made:
                self._meta = self._read_meta(create=True)
                self._made = "service" in self._meta
        return self._made

    def _read_meta(self, create: bool) -> dict[str, Any]:
        """The store's meta, checked; one not made yet (``create``) reads as a new one would be."""
        meta: dict[str, Any] = {}
        if self._made:
            with self._tx() as cur:
                cur.execute(self._q("select key, value from S.meta"))
                meta = {k: json.loads(v) for k, v in cur.fetchall()}
        if "service" not in meta:
            if not create:
                raise CheckpointError(f"{self.location} holds no qxt answers yet.")
            return {"format": FORMAT, "service": self.service, "key": self._key if isinstance(self._key, str) else None}
        if not isinstance(meta.get("format"), int) or meta["format"] > FORMAT:
            raise CheckpointError(f"{self.location} was written by a newer qxt-pandas; upgrade to read it.")
        if meta["service"] != self.service:
            raise CheckpointError(
                f"The store {self.location} holds answers from {meta['service']!r}, not from {self.service!r}. "
                "Use another schema (?schema=) for this service (answers from a simulator and from the real "
                "vendor must not be mixed).",
            )
        return meta

    def _identity(self) -> str:
        """What names this store for good, whatever URI reached it: the cluster, the database, the schema."""
        with self._tx() as cur:
            try:
                with self._conn.transaction():  # a savepoint: a server that hides its identifier falls back
                    cur.execute("select system_identifier::text, current_database() from pg_control_system()")
                    cluster, database = cur.fetchone()
            except Exception:
                cur.execute("select concat(inet_server_addr(), ':', inet_server_port()), current_database()")
                cluster, database = cur.fetchone()
        return identity("postgresql", cluster, database, self.schema)

    @property
    def simulator(self) -> bool | None:
        value = self._meta.get("simulator")
        return value if isinstance(value, bool) else None

    def bind(self, simulator: bool) -> None:
        """Record which kind of service answers here (once, in a transaction), or refuse the other kind.
        A store bound already is only read: a plan works with a read-only role."""
        self.create()
        if self.simulator is None:
            with self._tx() as cur:
                cur.execute(self._q("insert into S.meta values ('simulator', %s) on conflict do nothing"),
                            (json.dumps(simulator),))  # fmt: skip
                cur.execute(self._q("select value from S.meta where key = 'simulator'"))
                self._meta["simulator"] = json.loads(cur.fetchone()[0])
        refuse_other_kind(f"store {self.location}", self.service, self.simulator, simulator,
                          "use another schema (?schema=).")  # fmt: skip

    # -- answers ---------------------------------------------------------------------

    def answers(self, max_age: float | None = None, numbers: pa.Array | None = None) -> pa.Table:
        """Stored answers (newest per number), only for ``numbers`` when given (looked up, never scanned);
        answers spilled on this machine that could not be moved in count as stored."""
        since = -1.0 if max_age is None else time.time() - max_age
        rows: list[tuple[Any, ...]] = []
        if self._exists():
            with self._tx() as cur:
                if numbers is None:
                    cur.execute(self._q(f"select {_COLUMNS} from S.answers where checked_at >= %s"), (since,))
                    rows = cur.fetchall()
                else:
                    rows = self._lookup(cur, numbers.to_pylist(), since)
        table = _table(rows)
        if not self._unmoved:
            return table
        extra = newest_per_number(pa.concat_tables(self._unmoved))
        keep = pc.and_(pc.invert(pc.is_in(extra["mobile"], value_set=table["mobile"])),
                       pc.greater_equal(extra["checked_at"], since))  # fmt: skip
        if numbers is not None:
            keep = pc.and_(keep, pc.is_in(extra["mobile"], value_set=numbers))
        return pa.concat_tables([table, extra.filter(keep)])

    def _lookup(self, cur: Any, numbers: list[str], since: float) -> list[tuple[Any, ...]]:
        """The stored answers of ``numbers`` no older than ``since``, by primary key, in batches."""
        query, rows = self._q(f"select {_COLUMNS} from S.answers where mobile = any(%s) and checked_at >= %s"), []
        for start in range(0, len(numbers), _LOOKUP_BATCH):
            cur.execute(query, (numbers[start : start + _LOOKUP_BATCH], since))
            rows += cur.fetchall()
        return rows

    def batches(self, size: int = 100_000) -> Iterator[pa.Table]:
        """Every stored answer, ``size`` at a time (a server-side cursor): memory flat in the store's size."""
        if self._exists():
            with self._conn.transaction(), self._conn.cursor(name=f"qxt_batches_{uuid.uuid4().hex[:8]}") as cur:
                cur.execute(self._q(f"select {_COLUMNS} from S.answers"))
                while rows := cur.fetchmany(size):
                    yield _table(rows)
        yield from self._unmoved

    def tallies(self) -> pa.Table:
        """Every answer's counts for a report (tallies.py), made by the server with one GROUP BY; answers spilled
        on this machine, not moved in yet, are counted where the table has none for their number."""
        tables = []
        if self._exists():
            with self._tx() as cur:
                cur.execute(self._q("select code, status, now_isp, split_part(area, '-', 1), is_mnp, count(*) "
                                    "from S.answers group by 1, 2, 3, 4, 5"))  # fmt: skip
                rows = cur.fetchall()
            columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[] for _ in TALLY_SCHEMA]
            tables.append(pa.table([pa.array(list(c), f.type) for c, f in zip(columns, TALLY_SCHEMA, strict=True)],
                                   schema=TALLY_SCHEMA))  # fmt: skip
        if self._unmoved:
            extra = newest_per_number(pa.concat_tables(self._unmoved))
            held: list[str] = []
            if self._exists():
                with self._tx() as cur:
                    held = [row[0] for row in self._lookup(cur, extra["mobile"].to_pylist(), -1.0)]
            fresh = pc.invert(pc.is_in(extra["mobile"], value_set=pa.array(held, pa.string())))
            tables.append(tally(extra.filter(fresh)))
        return merge_tallies(tables)

    def busy(self, numbers: list[str]) -> tuple[int, int]:
        """Live runs here, on any machine: (those claiming one of ``numbers``, all others). A claim ends only
        once its answers are committed, so a forget that waits for the first misses none of theirs."""
        if not self._exists():
            return 0, 0
        with self._tx() as cur:
            cur.execute(self._q(f"select count(*) from ({self._live()}) live where live.run <> %s"), (self.run,))
            live = int(cur.fetchone()[0])
            cur.execute(self._q(f"select count(distinct run) from S.claims where mobile = any(%s) and run in "
                                f"({self._live()}) and run <> %s"), (numbers, self.run))  # fmt: skip
            holding = int(cur.fetchone()[0])
        return holding, live - holding

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint of the store key its numbers are hashed with (None: numbers in clear)."""
        value = self._meta.get("key")
        return value if isinstance(value, str) else None

    def writer(self, patience: float | None = None) -> PostgresWriter:
        """This run's writer; refused before anything is paid for when the role may not write here."""
        if patience is not None:
            self.patience = patience
        self.create()
        self._refuse_read_only()
        self._register()
        return PostgresWriter(self)

    def _refuse_read_only(self) -> None:
        """A role that may read but not write this store: a CheckpointError naming what it lacks."""
        wanted = [(f'"{self.schema}".{table}', privilege) for table, privileges in _PRIVILEGES.items()
                  for privilege in privileges]  # fmt: skip
        with self._tx() as cur:
            cur.execute("select current_user, array_agg(t || ': ' || p) filter (where not case when t like "
                        "'%%_seq' then has_sequence_privilege(t, p) else has_table_privilege(t, p) end) "
                        "from unnest(%s::text[], %s::text[]) as x(t, p)",
                        ([t for t, _ in wanted], [p for _, p in wanted]))  # fmt: skip
            role, missing = cur.fetchone()
        if missing:
            raise CheckpointError(
                f"The role {role} may read {self.location} but not write to it: it lacks {'; '.join(missing)}. A check "
                "needs them (docs/store.md lists the grants); a plan, --dry-run and qxt report work as it is. "
                "Nothing was asked or paid for.",
            )

    def _upsert(self, rows: list[tuple[Any, ...]]) -> None:
        started = _clock()
        with self._tx() as cur:
            cur.executemany(self._q(
                f"insert into S.answers ({_COLUMNS}, run) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "on conflict (mobile) do update set code = excluded.code, status = excluded.status, "
                "area = excluded.area, is_mnp = excluded.is_mnp, init_isp = excluded.init_isp, "
                "now_isp = excluded.now_isp, reason = excluded.reason, checked_at = excluded.checked_at, "
                "run = excluded.run where S.answers.checked_at <= excluded.checked_at"), rows)  # fmt: skip
            cur.execute(self._q("update S.runs set heartbeat = now() where run = %s"), (self.run,))
        self._renewed(started)

    def _move_spilled(self, run: str | None = None) -> None:
        """Answers kept on this machine when this store could not take them (this store's, whatever URI
        named it; only ``run``'s when given): moved in as the answers of the run that paid, then their
        files removed. When they cannot be moved in (a read-only role), they are read as stored."""
        legacy = hashlib.sha256(f"{self._conninfo}|{self.schema}".encode()).hexdigest()[:16]  # before 0.2
        self._unmoved = []
        if run is None and self._made:  # receipt ends kept on this machine, written in first
            write_in_ends(self.identity, self._insert_receipt)
        for paid_by, path in [*spilled(self.identity), *spilled(legacy)]:
            if run is not None and paid_by != run:
                continue
            table, _ = read_journal(path, 0)
            if table is None or not table.num_rows:
                path.unlink(missing_ok=True)
                continue
            if not self._made:  # (a store not made yet: read as stored; the run that makes it moves them in)
                self._unmoved.append(table)
                continue
            try:
                self._upsert([(*a.values(), paid_by) for a in _answers(table)])
            except (StoreUnavailableError, CheckpointError) as exc:
                if run is not None:
                    raise
                self._unmoved.append(table)
                warn_once(path, f"{table.num_rows:,} answers spilled on this machine ({path}) cannot be moved into "
                                f"{self.location} now ({exc}); they are used, not paid for again, and moved in by "
                                "a later run that may write there.")  # fmt: skip
                continue
            path.unlink(missing_ok=True)

    # -- runs and claims -------------------------------------------------------------

    def _register(self) -> None:
        """This run in ``runs``, holding its session's advisory lock: it ends with the session, and with it
        a killed run's claims."""
        if self._registered:
            return
        self.create()
        started = _clock()
        with self._tx() as cur:
            cur.execute("select pg_advisory_lock(%s)", (self._lock_key,))
            cur.execute(self._q("insert into S.runs (run, lock_key, host, pid) values (%s, %s, %s, %s)"),
                        (self.run, self._lock_key, socket.gethostname(), os.getpid()))  # fmt: skip
        self._registered, self._beat_at = True, started

    def beat(self) -> None:
        """Renew this run's heartbeat: its claims stay live for another lease."""
        started = _clock()
        with self._tx() as cur:
            cur.execute(self._q("update S.runs set heartbeat = now() where run = %s"), (self.run,))
        self._renewed(started)

    def _renewed(self, started: float) -> None:
        """A heartbeat sent at ``started`` extends the lease only if the lease still stood then: after it
        lapsed (a suspension), only :meth:`confirm` may say that the claims are still this run's."""
        if self._registered and started < self._beat_at + self.lease:
            self._beat_at = started

    def lease_left(self) -> float:
        """Seconds before this run's claims could lapse (from its last renewed heartbeat, suspensions counted)."""
        return self._beat_at + self.lease - _clock()

    def confirm(self, held: int) -> bool:
        """Renew the heartbeat and check, under the claims lock, that this run still holds its ``held`` claims
        (none were taken over while its lease was lapsed)."""
        started = _clock()
        with self._tx() as cur:
            cur.execute("select pg_advisory_xact_lock(%s)", (_CLAIMS_LOCK,))
            cur.execute(self._q("update S.runs set heartbeat = now() where run = %s"), (self.run,))
            cur.execute(self._q("select count(*) from S.claims where run = %s"), (self.run,))
            count = int(cur.fetchone()[0])
        self._beat_at = started
        return count >= held

    async def recover(self, then: Callable[[], T]) -> T:
        """``then()`` with the store taking writes: after a passing fault, first a new session if the old one
        is lost and this run's spill moved in. A passing fault is retried with backoff (0.1 s doubling to 5 s)
        within the patience, or until an interrupt; then it is raised. A lasting one is raised at once."""
        deadline, delay = time.monotonic() + self.patience, 0.1
        while True:
            if self.fault is not None and not self.fault.transient:
                raise self.fault
            try:
                if self.fault is not None:
                    await asyncio.to_thread(self.reconnect)
                    self._move_spilled(run=self.run)
                done = then()
                self.fault = None
                return done
            except StoreUnavailableError as exc:
                drain = draining()
                if not exc.transient:
                    self.fault = exc
                    raise
                if time.monotonic() + delay > deadline or (drain is not None and drain.is_set()):
                    self.fault = _gave_up(exc, self.patience)
                    raise self.fault from None
                self.fault = exc
                await asyncio.sleep(random.uniform(0, 2 * delay))
                delay = min(delay * 2, 5.0)

    async def claim(self, numbers: list[str], max_age: float | None) -> PostgresClaim:
        """Claim those of ``numbers`` nobody answered and no live run (on any machine) is asking; a passing
        fault of the store is waited out (see :meth:`recover`)."""
        claim = await self.recover(lambda: self._claim(numbers, max_age))
        if claim.mine:
            claim.keep_alive()
        return claim

    def _claim(self, numbers: list[str], max_age: float | None) -> PostgresClaim:
        """The claim, made ``_CLAIM_BATCH`` numbers a transaction: the claims lock is held for milliseconds at a
        time, however many numbers a run claims. Within each: others' live claims first, then the answers, so a
        run that releases its claim between the two has its answers seen (it commits them before it releases)."""
        self._register()
        since = -1.0 if max_age is None else time.time() - max_age
        started = _clock()
        answered: list[pa.Table] = []
        others: dict[Any, tuple[str, list[str]]] = {}
        mine: list[str] = []
        for start in range(0, len(numbers), _CLAIM_BATCH):
            chunk = numbers[start : start + _CLAIM_BATCH]
            with self._tx() as cur:
                # A claim outlives no crash of the server (the advisory locks that make it live end with it), so
                # its commit need not wait for the disk.
                cur.execute("set local synchronous_commit = off")
                cur.execute("select pg_advisory_xact_lock(%s)", (_CLAIMS_LOCK,))
                cur.execute(self._q("update S.runs set heartbeat = now() where run = %s"), (self.run,))
                cur.execute(self._q("select c.run, r.host, r.pid, c.mobile, c.run in (" + self._live() + ") from "
                                    "S.claims c join S.runs r using (run) where c.mobile = any(%s) and c.run <> %s"),
                            (chunk, self.run))  # fmt: skip
                taken, dead = set(), []
                for run, host, pid, mobile, alive in cur.fetchall():
                    if not alive:  # its run is gone (killed, or its lease lapsed): so is its claim
                        dead.append(mobile)
                        continue
                    others.setdefault(run, (f"pid {pid} on {host}, run {run}", []))[1].append(mobile)
                    taken.add(mobile)
                if dead:
                    cur.execute(self._q(f"delete from S.claims where mobile = any(%s) and run not in ({self._live()})"),
                                (dead,))  # fmt: skip
                free = [n for n in chunk if n not in taken]
                found = _table(self._lookup(cur, free, since))
                done = set(found["mobile"].to_pylist())
                ours = [n for n in free if n not in done]
                cur.execute(self._q("insert into S.claims (mobile, run) select unnest(%s::text[]), %s "
                                    "on conflict do nothing"), (ours, self.run))  # fmt: skip
            answered.append(found)
            mine += ours
        self._beat_at = started
        claim = PostgresClaim(mine, pa.concat_tables(answered) if answered else _table([]), others)
        claim.store = self
        return claim

    def _release(self) -> None:
        with self._tx() as cur:
            cur.execute(self._q("delete from S.claims where run = %s"), (self.run,))

    def _holds(self, run: str) -> bool:
        with self._tx() as cur:
            cur.execute(self._q(f"select exists (select 1 from S.claims where run = %s and run in ({self._live()}))"),
                        (run,))  # fmt: skip
            return bool(cur.fetchone()[0])

    def _live(self) -> str:
        """Runs that hold their session's advisory lock and renewed their heartbeat within the lease."""
        return ("select r.run from S.runs r join pg_locks l on l.locktype = 'advisory' and l.granted and "
                "l.objsubid = 1 and ((l.classid::bigint << 32) | l.objid::bigint) = r.lock_key "
                f"where r.heartbeat > now() - interval '{self.lease:.3f} seconds'")  # fmt: skip

    # -- receipts ---------------------------------------------------------------------

    def add_receipt(self, record: dict[str, Any]) -> None:
        try:
            self.create()
            self._insert_receipt(record)
        except StoreUnavailableError as exc:
            if record.get("event") == "start":
                raise  # before paying: the run does not start
            keep_end(self.identity, record, exc.message)

    def _insert_receipt(self, record: dict[str, Any]) -> None:
        with self._tx() as cur:
            cur.execute(self._q("insert into S.receipts (run, record) values (%s, %s)"),
                        (record.get("run"), json.dumps(record, ensure_ascii=False)))  # fmt: skip

    def runs(self) -> list[dict[str, Any]]:
        """Every run's receipt; a run that is gone without its end gets one counted from the answers it stored."""
        if not self._exists():
            return []
        with self._tx() as cur:
            cur.execute(self._q("select record from S.receipts order by id"))
            records = [row[0] if isinstance(row[0], dict) else json.loads(row[0]) for row in cur.fetchall()]
            runs = merge_runs(records + pending_ends(self.identity))
            cur.execute(self._q(f"select run from S.runs where run in ({self._live()})"))
            live = {row[0] for row in cur.fetchall()}
            for run in runs:
                if "ended" not in run and run.get("run") not in live:
                    cur.execute(self._q("select code, count(*) from S.answers where run = %s group by code"),
                                (run.get("journal"),))  # fmt: skip
                    counts = {str(code): int(n) for code, n in cur.fetchall()}
                    run.update(recovered_end(counts, "the store"))
        return runs

    def forget(
        self, numbers: list[str] | None = None, older_than: float | None = None, *, dry_run: bool = False
    ) -> int:
        """DELETE the answers for ``numbers`` and/or older than ``older_than`` s; how many. (The rows' space is
        reclaimed by VACUUM; see docs/privacy.md.)"""
        if not self._exists():
            return 0
        cutoff = -1.0 if older_than is None else time.time() - older_than
        if not dry_run:  # spilled answers not yet moved in (a read-only role) are forgotten too
            prune_spilled(self.identity, numbers or [], cutoff)
            self._move_spilled()  # what is left of them, read again
        verb = "select count(*)" if dry_run else "delete"
        with self._tx() as cur:
            cur.execute(self._q(f"{verb} from S.answers where mobile = any(%s) or checked_at < %s"),
                        (numbers or [], cutoff))  # fmt: skip
            return int(cur.fetchone()[0]) if dry_run else cur.rowcount

    def tidy(self, retention: float | None = None) -> int:
        """Forget answers older than ``retention`` s, if given (how many), and runs that are gone (and their
        claims)."""
        if not self._exists():
            return 0
        expired = self.forget(older_than=retention) if retention is not None else 0
        with self._tx() as cur:
            cur.execute(self._q(f"delete from S.claims where run not in ({self._live()})"))
            cur.execute(self._q(f"delete from S.runs where run not in ({self._live()}) and heartbeat < now() - "
                                "interval '1 day'"))  # fmt: skip
        return expired


#: Our tables and their columns: a schema holding a table of these names with other columns is not ours.
_TABLES = {
    "meta": ["key", "value"],
    "answers": ["mobile", "code", "status", "area", "is_mnp", "init_isp", "now_isp", "reason", "checked_at", "run"],
    "claims": ["mobile", "run"],
    "runs": ["run", "lock_key", "host", "pid", "heartbeat"],
    "receipts": ["id", "run", "record"],
}
#: What a check does in the store (a plan, a dry run and a report only read).
_PRIVILEGES = {
    "meta": ("SELECT",), "answers": ("SELECT", "INSERT", "UPDATE"), "claims": ("SELECT", "INSERT", "DELETE"),
    "runs": ("SELECT", "INSERT", "UPDATE", "DELETE"), "receipts": ("SELECT", "INSERT"), "receipts_id_seq": ("USAGE",),
}  # fmt: skip
_GRANTS = "Running again will not help: grant the role what docs/store.md lists. Nothing more was asked or paid for."

_DDL = (
    "create table if not exists S.meta (key text primary key, value text not null)",
    "create table if not exists S.answers (mobile text primary key, code smallint not null, status text, "
    "area text, is_mnp boolean, init_isp text, now_isp text, reason text, checked_at double precision not null, "
    "run text)",
    "create table if not exists S.claims (mobile text primary key, run text not null)",
    "create table if not exists S.runs (run text primary key, lock_key bigint not null, host text, pid int, "
    "heartbeat timestamptz not null default now())",
    "create table if not exists S.receipts (id bigserial primary key, run text, record jsonb not null)",
)


def _table(rows: list[tuple[Any, ...]]) -> pa.Table:
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[] for _ in ANSWER_SCHEMA]
    return pa.table([pa.array(list(col), type=f.type) for col, f in zip(columns, ANSWER_SCHEMA, strict=True)],
                    schema=ANSWER_SCHEMA)  # fmt: skip


def _answers(table: pa.Table) -> list[Answer]:
    return [Answer(**row) for row in table.to_pylist()]


def _gave_up(exc: StoreUnavailableError, patience: float) -> StoreUnavailableError:
    """The run's patience ran out: for the rest of the run, the fault is final (never waited out again)."""
    return StoreUnavailableError(f"{exc.message.split(' Answers already')[0]} It was not back within "
                                 f"{patience:.0f} s (the run's patience).", hint="")  # fmt: skip


def _connect_error(location: str, exc: BaseException) -> Exception:
    """A failed connection: a wrong password or database is a CheckpointError (exit 2); unreachable, exit 1."""
    text = _first_line(exc)
    fixed = ("password authentication failed", "does not exist", "no password supplied", "role ", "invalid",
             "authentication")  # fmt: skip
    if any(word in text for word in fixed):
        return CheckpointError(f"Cannot use the answer store {location}: {text}. Running again will not help: "
                               "check the URI, the role and its password. Nothing was asked or paid for.")  # fmt: skip
    failure = StoreUnavailableError(f"Cannot reach the answer store {location}: {text}. Nothing was asked or paid "
                                    "for; run again when the database is reachable.")  # fmt: skip
    failure.transient = True
    return failure
