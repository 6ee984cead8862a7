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
- If the database goes away mid-run, the answers received are written to a
  local spill file (``$QXT_SPILL_DIR``, default ``~/.cache/qxt-pandas/spill``),
  the run stops asking and says so, and the next run on this store moves them in.
- A claim is live while its run holds its session's advisory lock (a dead
  run's session ends, and with it the lock) and has renewed its heartbeat
  within ``LEASE`` seconds (a hung run's claims end by themselves).

Example::

    store = PostgresStore("postgresql:///qxt?host=/run/postgresql", service="ps.szqxt.com")
    store.answers(numbers=pa.array(["13972565391"]))
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import socket
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pyarrow as pa

from .claims import Claim
from .errors import CheckpointError, StoreUnavailableError
from .journal import ANSWER_SCHEMA, Answer, read_journal
from .receipts import merge_runs, recovered_end
from .store import check_key, refuse_other_kind

__all__ = ["COMMIT_BATCH", "COMMIT_EVERY", "LEASE", "PostgresStore", "without_password"]

FORMAT = 1
COMMIT_EVERY = 0.05  # seconds: the most an answer waits for its commit while a run goes on
COMMIT_BATCH = 500  # answers: a batch this large is committed at once
LEASE = 60.0  # seconds: a run that has not renewed its heartbeat for this long holds no claims
_BEAT = LEASE / 4
_LOOKUP_BATCH = 20_000
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SCHEMA_LOCK = 0x71787473  # advisory lock keys ("qxts", "qxtc"): creating the schema, claiming
_CLAIMS_LOCK = 0x71787463
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


def _spill_dir() -> Path:
    if os.environ.get("QXT_SPILL_DIR"):
        return Path(os.environ["QXT_SPILL_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qxt-pandas" / "spill"


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
    """The :class:`~qxt_pandas.store.Store` protocol over one PostgreSQL schema (see the module docstring)."""

    def __init__(self, uri: str, *, service: str, create: bool = True, key: object = None) -> None:
        self.service = service
        self._conninfo, self.schema = _split(uri)
        self._shown = without_password(uri)
        self.run = f"{time.strftime('%Y%m%dT%H%M%S')}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._lock_key = random.getrandbits(62) + 1
        self._registered = False
        self._conn = self._connect()
        self._ensure_schema(create)
        self._key = key
        self._meta = self._read_meta(create)
        check_key(self.location, self._meta.get("key"), key)
        if create:
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

        try:
            return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10,
                                   application_name="qxt-pandas")  # fmt: skip
        except psycopg.OperationalError as exc:
            raise _connect_error(self.location, exc) from None

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        """A transaction's cursor; a lost connection is a StoreUnavailableError naming the store."""
        import psycopg

        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                yield cur
        except psycopg.OperationalError as exc:
            raise StoreUnavailableError(
                f"The answer store {self.location} cannot be reached: {_first_line(exc)}. Answers already stored "
                "are kept; run again when the database is back.",
            ) from None

    def _q(self, sql: str) -> str:
        """``sql`` with ``S.`` naming this store's schema (checked to be a plain identifier)."""
        return sql.replace("S.", f'"{self.schema}".')

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()

    # -- schema, meta, binding -----------------------------------------------------

    def _ensure_schema(self, create: bool) -> None:
        import psycopg

        with self._tx() as cur:
            cur.execute("select 1 from information_schema.tables where table_schema = %s and table_name = 'meta'",
                        (self.schema,))  # fmt: skip
            if cur.fetchone() is not None:
                return
            if not create:
                raise CheckpointError(f"{self.location} holds no qxt answers (no table {self.schema}.meta).")
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

    def _read_meta(self, create: bool) -> dict[str, Any]:
        with self._tx() as cur:
            cur.execute(self._q("select key, value from S.meta"))
            meta = {k: json.loads(v) for k, v in cur.fetchall()}
            if "service" not in meta:
                if not create:
                    raise CheckpointError(f"{self.location} holds no qxt answers yet.")
                mark = self._key if isinstance(self._key, str) else None
                cur.execute(self._q("insert into S.meta values ('format', %s), ('service', %s), ('key', %s) "
                                    "on conflict do nothing"),
                            (json.dumps(FORMAT), json.dumps(self.service), json.dumps(mark)))  # fmt: skip
                cur.execute(self._q("select key, value from S.meta"))
                meta = {k: json.loads(v) for k, v in cur.fetchall()}
        if not isinstance(meta.get("format"), int) or meta["format"] > FORMAT:
            raise CheckpointError(f"{self.location} was written by a newer qxt-pandas; upgrade to read it.")
        if meta["service"] != self.service:
            raise CheckpointError(
                f"The store {self.location} holds answers from {meta['service']!r}, not from {self.service!r}. "
                "Use another schema (?schema=) for this service (answers from a simulator and from the real "
                "vendor must not be mixed).",
            )
        return meta

    @property
    def simulator(self) -> bool | None:
        value = self._meta.get("simulator")
        return value if isinstance(value, bool) else None

    def bind(self, simulator: bool) -> None:
        """Record which kind of service answers here (once, in a transaction), or refuse the other kind."""
        with self._tx() as cur:
            cur.execute(self._q("insert into S.meta values ('simulator', %s) on conflict do nothing"),
                        (json.dumps(simulator),))  # fmt: skip
            cur.execute(self._q("select value from S.meta where key = 'simulator'"))
            self._meta["simulator"] = json.loads(cur.fetchone()[0])
        refuse_other_kind(f"store {self.location}", self.service, self.simulator, simulator,
                          "use another schema (?schema=).")  # fmt: skip

    # -- answers ---------------------------------------------------------------------

    def answers(self, max_age: float | None = None, numbers: pa.Array | None = None) -> pa.Table:
        """Stored answers (newest per number), only for ``numbers`` when given (looked up, never scanned)."""
        since = -1.0 if max_age is None else time.time() - max_age
        rows: list[tuple[Any, ...]] = []
        with self._tx() as cur:
            if numbers is None:
                cur.execute(self._q(f"select {_COLUMNS} from S.answers where checked_at >= %s"), (since,))
                rows = cur.fetchall()
            else:
                rows = self._lookup(cur, numbers.to_pylist(), since)
        return _table(rows)

    def _lookup(self, cur: Any, numbers: list[str], since: float) -> list[tuple[Any, ...]]:
        """The stored answers of ``numbers`` no older than ``since``, by primary key, in batches."""
        query, rows = self._q(f"select {_COLUMNS} from S.answers where mobile = any(%s) and checked_at >= %s"), []
        for start in range(0, len(numbers), _LOOKUP_BATCH):
            cur.execute(query, (numbers[start : start + _LOOKUP_BATCH], since))
            rows += cur.fetchall()
        return rows

    def writer(self) -> PostgresWriter:
        self._register()
        return PostgresWriter(self)

    def _upsert(self, rows: list[tuple[Any, ...]]) -> None:
        with self._tx() as cur:
            cur.executemany(self._q(
                f"insert into S.answers ({_COLUMNS}, run) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "on conflict (mobile) do update set code = excluded.code, status = excluded.status, "
                "area = excluded.area, is_mnp = excluded.is_mnp, init_isp = excluded.init_isp, "
                "now_isp = excluded.now_isp, reason = excluded.reason, checked_at = excluded.checked_at, "
                "run = excluded.run where S.answers.checked_at <= excluded.checked_at"), rows)  # fmt: skip
            cur.execute(self._q("update S.runs set heartbeat = now() where run = %s"), (self.run,))

    def _move_spilled(self) -> None:
        """Answers a run kept locally when this store went away: moved in, then their file removed."""
        for spilled in sorted(_spill_dir().glob(f"{self._spill_prefix()}-*.jsonl")):
            table, _ = read_journal(spilled, 0)
            if table is not None and table.num_rows:
                self._upsert([(*row.values(), "spilled") for row in _answers(table)])
            spilled.unlink(missing_ok=True)

    def _spill_prefix(self) -> str:
        return hashlib.sha256(f"{self._conninfo}|{self.schema}".encode()).hexdigest()[:16]

    def spill_path(self) -> Path:
        return _spill_dir() / f"{self._spill_prefix()}-{self.run}.jsonl"

    # -- runs and claims -------------------------------------------------------------

    def _register(self) -> None:
        """This run in ``runs``, holding its session's advisory lock: it ends with the session, and with it
        a killed run's claims."""
        if self._registered:
            return
        with self._tx() as cur:
            cur.execute("select pg_advisory_lock(%s)", (self._lock_key,))
            cur.execute(self._q("insert into S.runs (run, lock_key, host, pid) values (%s, %s, %s, %s)"),
                        (self.run, self._lock_key, socket.gethostname(), os.getpid()))  # fmt: skip
        self._registered = True

    def beat(self) -> None:
        """Renew this run's heartbeat: its claims stay live for another ``LEASE`` seconds."""
        with self._tx() as cur:
            cur.execute(self._q("update S.runs set heartbeat = now() where run = %s"), (self.run,))

    async def claim(self, numbers: list[str], max_age: float | None) -> PostgresClaim:
        """Claim those of ``numbers`` nobody answered and no live run (on any machine) is asking."""
        self._register()
        since = -1.0 if max_age is None else time.time() - max_age
        with self._tx() as cur:
            cur.execute("select pg_advisory_xact_lock(%s)", (_CLAIMS_LOCK,))
            cur.execute(self._q("update S.runs set heartbeat = now() where run = %s"), (self.run,))
            answered = _table(self._lookup(cur, numbers, since))
            done = set(answered["mobile"].to_pylist())
            pending = [n for n in numbers if n not in done]
            cur.execute(self._q(f"delete from S.claims c where mobile = any(%s) and run not in ({_LIVE})"), (pending,))
            cur.execute(self._q("select c.run, r.host, r.pid, c.mobile from S.claims c join S.runs r using (run) "
                                "where c.mobile = any(%s) and c.run <> %s"), (pending, self.run))  # fmt: skip
            others: dict[Any, tuple[str, list[str]]] = {}
            for run, host, pid, mobile in cur.fetchall():
                others.setdefault(run, (f"pid {pid} on {host}, run {run}", []))[1].append(mobile)
            taken = {n for _, held in others.values() for n in held}
            mine = [n for n in pending if n not in taken]
            cur.execute(self._q("insert into S.claims (mobile, run) select unnest(%s::text[]), %s "
                                "on conflict do nothing"), (mine, self.run))  # fmt: skip
        claim = PostgresClaim(mine, answered, others)
        claim.store = self
        if mine:
            claim.keep_alive()
        return claim

    def _release(self) -> None:
        with self._tx() as cur:
            cur.execute(self._q("delete from S.claims where run = %s"), (self.run,))

    def _holds(self, run: str) -> bool:
        with self._tx() as cur:
            cur.execute(self._q(f"select exists (select 1 from S.claims where run = %s and run in ({_LIVE}))"),
                        (run,))  # fmt: skip
            return bool(cur.fetchone()[0])

    # -- receipts ---------------------------------------------------------------------

    def add_receipt(self, record: dict[str, Any]) -> None:
        try:
            with self._tx() as cur:
                cur.execute(self._q("insert into S.receipts (run, record) values (%s, %s)"),
                            (record.get("run"), json.dumps(record, ensure_ascii=False)))  # fmt: skip
        except StoreUnavailableError as exc:
            warnings.warn(f"{exc} (this run's receipt could not be written)", RuntimeWarning, stacklevel=2)

    def runs(self) -> list[dict[str, Any]]:
        """Every run's receipt; a run that is gone without its end gets one counted from the answers it stored."""
        with self._tx() as cur:
            cur.execute(self._q("select record from S.receipts order by id"))
            runs = merge_runs([row[0] if isinstance(row[0], dict) else json.loads(row[0]) for row in cur.fetchall()])
            cur.execute(self._q(f"select run from S.runs where run in ({_LIVE})"))
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
        cutoff = -1.0 if older_than is None else time.time() - older_than
        verb = "select count(*)" if dry_run else "delete"
        with self._tx() as cur:
            cur.execute(self._q(f"{verb} from S.answers where mobile = any(%s) or checked_at < %s"),
                        (numbers or [], cutoff))  # fmt: skip
            return int(cur.fetchone()[0]) if dry_run else cur.rowcount

    def tidy(self, retention: float | None = None) -> None:
        """Forget answers older than ``retention`` s, if given, and runs that are gone (and their claims)."""
        if retention is not None:
            self.forget(older_than=retention)
        with self._tx() as cur:
            cur.execute(self._q(f"delete from S.claims where run not in ({_LIVE})"))
            cur.execute(self._q(f"delete from S.runs where run not in ({_LIVE}) and heartbeat < now() - "
                                "interval '1 day'"))  # fmt: skip


class PostgresWriter:
    """Buffers answers and commits them every ``COMMIT_EVERY`` s or ``COMMIT_BATCH`` answers.

    If the database is gone, what was received is written to a local spill file (moved in by the
    next run) and :class:`StoreUnavailableError` stops the run.
    """

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.name = store.run
        self.count = 0
        self._rows: list[tuple[Any, ...]] = []
        self._first = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._failed: StoreUnavailableError | None = None

    def append(self, answer: Answer) -> None:
        if self._failed is not None:
            self._spill([answer.values()])
            raise self._failed
        if not self._rows:
            self._first = time.monotonic()
            self._schedule()
        self._rows.append((*answer.values(), self.name))
        self.count += 1
        if len(self._rows) >= COMMIT_BATCH:
            self.flush()

    def _schedule(self) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop (a sync caller): committed on close
            self._timer = asyncio.get_running_loop().call_later(COMMIT_EVERY, self._due)

    def _due(self) -> None:
        self._timer = None
        with contextlib.suppress(StoreUnavailableError):  # said by the next append
            self.flush()

    def flush(self) -> None:
        """Commit what is buffered; if the store is gone, keep it in the spill file and raise."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._rows or self._failed is not None:
            return
        rows, self._rows = self._rows, []
        try:
            self.store._upsert(rows)
        except StoreUnavailableError as exc:
            self._spill([row[:-1] for row in rows])
            self._failed = StoreUnavailableError(
                f"{exc.args[0].split('. Answers')[0]}. The run stopped asking; the answers received since the last "
                f"commit are kept in {self.store.spill_path()} and will be moved into the store by the next run.",
            )
            raise self._failed from None

    def _spill(self, rows: list[tuple[Any, ...]]) -> None:
        path = self.store.spill_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            for row in rows:
                f.write(Answer(*row).line())
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        with contextlib.suppress(StoreUnavailableError):  # kept in the spill file; the run has said so
            self.flush()

    def __enter__(self) -> PostgresWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PostgresClaim(Claim):
    """A claim in the ``claims`` table; live while its run holds its advisory lock and renews its heartbeat."""

    store: PostgresStore
    _beating: asyncio.TimerHandle | None = None

    def keep_alive(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._beating = asyncio.get_running_loop().call_later(_BEAT, self._beat)

    def _beat(self) -> None:
        with contextlib.suppress(StoreUnavailableError):
            self.store.beat()
        self.keep_alive()

    def held(self, key: Any) -> bool:
        return self.store._holds(key)

    def release(self) -> None:
        if self._beating is not None:
            self._beating.cancel()
            self._beating = None
        if self.mine:
            with contextlib.suppress(StoreUnavailableError):
                self.store._release()
            self.mine = []


# Runs that hold their session's advisory lock and renewed their heartbeat within the lease.
_LIVE = (
    "select r.run from S.runs r join pg_locks l on l.locktype = 'advisory' and l.granted and l.objsubid = 1 "
    "and ((l.classid::bigint << 32) | l.objid::bigint) = r.lock_key "
    f"where r.heartbeat > now() - interval '{LEASE:.0f} seconds'"
)

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


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _connect_error(location: str, exc: BaseException) -> Exception:
    """A failed connection: a wrong password or database is a CheckpointError (exit 2); unreachable, exit 1."""
    text = _first_line(exc)
    fixed = ("password authentication failed", "does not exist", "no password supplied", "role ", "invalid",
             "authentication")  # fmt: skip
    if any(word in text for word in fixed):
        return CheckpointError(f"Cannot use the answer store {location}: {text}. Running again will not help: "
                               "check the URI, the role and its password. Nothing was asked or paid for.")  # fmt: skip
    return StoreUnavailableError(f"Cannot reach the answer store {location}: {text}. Nothing was asked or paid "
                                 "for; run again when the database is reachable.")  # fmt: skip
