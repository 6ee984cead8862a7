"""Faults outside the process, injected where they happen, with the simulator's ledger as the truth of money (issue 28).

Two halves, as SQLite tests its I/O errors:

- In process: each store's write fails at the Nth call, once (a passing fault) or from then on
  (a lasting one), with every class of failure a store meets: a lost connection, a read-only
  database, a value refused, a pooler's missing prepared statement, a missing privilege, an
  unexpected exception; a full disk, an I/O error, a read-only file system, a short write.
- In real processes, on a real PostgreSQL: the database read-only for a while, every connection
  terminated, a NUL in a vendor field, a run suspended past its lease while another takes over,
  SIGHUP, a closed progress pipe, ``qxt serve`` killed, a disk that fills.

Each asserts from the ledger: nothing paid twice, no answer lost (every charged number is in
the store or in a spill file, and the next run moves it in), and no exit 0 from a run that did
not store every answer it paid for.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import SECRET, qxt, rich, stored

from qxt_pandas import errors as E
from qxt_pandas.simulator import serve
from qxt_pandas.stores import journal

NUMBERS = [f"135{i:08d}" for i in range(400)]


def check(url: str, store: str, numbers: list[str] = NUMBERS, **more) -> pd.DataFrame:
    frame = pd.DataFrame({"m": numbers})
    return frame.qxt.check("m", apikey=SECRET, base_url=url, checkpoint=store, progress=False, **more)


def spilled(base: Path) -> set[str]:
    """The numbers spilled under ``$QXT_SPILL_DIR`` ``base``, each file private to its user."""
    found: set[str] = set()
    where = base / "answers"
    for path in where.glob("*.jsonl") if where.is_dir() else []:
        assert path.stat().st_mode & 0o777 == 0o600 and where.stat().st_mode & 0o777 == 0o700
        table, _ = journal.read_journal(path, 0)
        found |= set(table["mobile"].to_pylist()) if table is not None else set()
    return found


def answered(columns: pd.DataFrame, numbers: list[str] = NUMBERS) -> set[str]:
    """The numbers with an answer in a check's result columns (a frame, or an error's ``.partial``)."""
    return {numbers[i] for i in range(len(columns)) if pd.notna(columns["qxt_code"].iloc[i])}


def twice(sim) -> int:
    return sum(n - 1 for n in sim.ledger.paid(SECRET).values())


class Nth:
    """Fails calls from the ``n``-th on: once (``lasting=False``), or every one after."""

    def __init__(self, n: int, lasting: bool) -> None:
        self.n, self.lasting, self.calls, self.failed = n, lasting, 0, 0

    def __call__(self) -> bool:
        self.calls += 1
        fail = self.calls == self.n or (self.lasting and self.calls > self.n)
        self.failed += fail
        return fail


# -- in process: PostgreSQL's commit fails at the Nth batch ------------------------------------------


def _pg_errors():
    import psycopg

    return {
        "lost connection": psycopg.OperationalError("server closed the connection unexpectedly"),
        "read-only": psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
        "value refused": psycopg.errors.CharacterNotInRepertoire("invalid byte sequence for encoding UTF8: 0x00"),
        "pooler": psycopg.errors.InvalidSqlStatementName("prepared statement _pg3_0 does not exist"),
        "privilege": psycopg.errors.InsufficientPrivilege("permission denied for table answers"),
        "unexpected": RuntimeError("a bug of ours"),
    }


PG_ERRORS = ["lost connection", "read-only", "value refused", "pooler", "privilege", "unexpected"]
PASSING = {"lost connection", "read-only", "pooler"}


@pytest.mark.parametrize("lasting", [False, True], ids=["once", "lasting"])
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("kind", PG_ERRORS)
def test_a_failed_commit_keeps_its_batch_and_never_pays_twice(postgres, tmp_path, monkeypatch, kind, n, lasting):
    from qxt_pandas.stores.postgres.store import PostgresStore

    monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))
    error, fails = _pg_errors()[kind], Nth(n, lasting)
    upsert = PostgresStore._upsert

    def failing(self, rows):
        if fails():
            with self._tx():
                raise error
        return upsert(self, rows)

    monkeypatch.setattr(PostgresStore, "_upsert", failing)
    sim = rich(latency=0.005)
    with serve(sim) as url:
        try:
            done = check(url, postgres, concurrency=8, patience=1.0)
            outcome = None
        except E.StoreUnavailableError as exc:
            done, outcome = exc.partial, exc
        assert fails.failed >= 1  # the fault was met
        paid, kept = set(sim.ledger.paid(SECRET)), spilled(tmp_path / "spill")
        monkeypatch.setattr(PostgresStore, "_upsert", upsert)
        if kind in PASSING and not lasting:  # a blip: retried, moved in, the run goes through
            assert outcome is None and done["qxt_code"].notna().all()
            assert not kept and paid <= stored(postgres)
        else:  # it stopped, saying so; every answer paid for is stored or spilled, and in the results
            assert outcome is not None and outcome.unsaved == 0 and outcome.spilled >= 1
            assert "spill" in str(outcome) and "Run the same check again" in str(outcome)
            assert paid <= answered(done)
            assert paid <= stored(postgres) | kept  # (opening the store moved the spill in)
        again = check(url, postgres)  # moves the spill in first: pays only for what was never asked
    assert again["qxt_code"].notna().all() and twice(sim) == 0
    assert not spilled(tmp_path / "spill") and set(sim.ledger.paid(SECRET)) <= stored(postgres)


# -- in process: the directory's journal write fails at the Nth answer ------------------------------


class _FailingOS:
    """``os`` for journal.py, whose ``write`` fails as ``kind`` says at the calls ``fails`` picks."""

    def __init__(self, kind: str, fails: Nth) -> None:
        self.kind, self.fails, self.torn = kind, fails, False

    def __getattr__(self, name: str):
        return getattr(os, name)

    def write(self, fd: int, data: bytes) -> int:
        if self.torn:  # the rest of a short write: the disk is full
            self.torn = False
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if not self.fails():
            return os.write(fd, data)
        if self.kind == "short write":
            self.torn = True
            return os.write(fd, data[: len(data) // 2])
        code = {"disk full": errno.ENOSPC, "I/O error": errno.EIO, "read-only": errno.EROFS,
                "quota": errno.EDQUOT}[self.kind]  # fmt: skip
        raise OSError(code, os.strerror(code))


@pytest.mark.parametrize("lasting", [False, True], ids=["once", "lasting"])
@pytest.mark.parametrize("n", [1, 50])
@pytest.mark.parametrize("kind", ["disk full", "I/O error", "read-only", "quota", "short write"])
def test_a_failed_journal_write_stops_the_run_and_keeps_every_answer(tmp_path, monkeypatch, kind, n, lasting):
    monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))
    store, fails = str(tmp_path / "c.qxt"), Nth(n, lasting)
    sim = rich(latency=0.005)
    with serve(sim) as url:
        monkeypatch.setattr(journal, "os", _FailingOS(kind, fails))
        with pytest.raises(E.StoreUnavailableError, match="Cannot write to the checkpoint") as caught:
            check(url, store, concurrency=8)
        monkeypatch.undo()
        monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))
        paid = set(sim.ledger.paid(SECRET))
        assert caught.value.spilled >= 1 and caught.value.unsaved == 0
        assert paid <= stored(store) | spilled(tmp_path / "spill")
        again = check(url, store)
    assert again["qxt_code"].notna().all() and twice(sim) == 0 and not spilled(tmp_path / "spill")


def test_when_the_spill_fails_too_the_answers_are_in_the_results_and_the_error_says_so(tmp_path, monkeypatch):
    (tmp_path / "spill").write_text("a file where the spill directory should be")
    monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))
    sim = rich(latency=0.005)
    with serve(sim) as url:
        monkeypatch.setattr(journal, "os", _FailingOS("disk full", Nth(10, True)))
        with pytest.raises(E.StoreUnavailableError, match="only in this run's results") as caught:
            check(url, str(tmp_path / "c.qxt"), concurrency=4)
    partial = caught.value.partial
    assert caught.value.unsaved >= 1 and set(sim.ledger.paid(SECRET)) <= answered(partial)


def test_a_receipt_end_neither_the_store_nor_the_spill_can_take_is_said_and_nothing_paid_is_lost(tmp_path, monkeypatch):
    from qxt_pandas.stores import receipts

    (tmp_path / "spill").write_text("a file where the spill directory should be")
    monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))
    sim = rich(latency=0.005)
    with serve(sim) as url:
        monkeypatch.setattr(journal, "os", _FailingOS("disk full", Nth(10, True)))
        monkeypatch.setattr(receipts, "os", _FailingOS("disk full", Nth(2, True)))  # (the 1st is the start)
        with pytest.raises(E.StoreUnavailableError) as caught, pytest.warns(
                RuntimeWarning, match="nor could it be kept on this machine"):  # fmt: skip
            check(url, str(tmp_path / "c.qxt"), concurrency=4)
    assert twice(sim) == 0 and set(sim.ledger.paid(SECRET)) <= answered(caught.value.partial)


def test_a_receipt_end_the_store_cannot_take_is_kept_and_written_in_by_the_next_run(store, tmp_path, monkeypatch):
    """Issue 34: after a disk-full run the report said 9,229 answers "never arrived" (its receipt said paid 0)."""
    import qxt_pandas
    from qxt_pandas.stores import receipts
    from qxt_pandas.stores.postgres.store import PostgresStore

    monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))
    directory = not store.startswith("postgresql")
    insert = PostgresStore._insert_receipt

    def refused(self, record):
        if record.get("event") == "end":
            raise E.StoreUnavailableError("the database went away")
        return insert(self, record)

    def gone(self, rows):
        raise E.StoreUnavailableError("the database went away")

    def fail() -> None:  # the store fails from the 50th answer on, and so does its receipt's end line
        if directory:
            monkeypatch.setattr(journal, "os", _FailingOS("disk full", Nth(50, True)))
            monkeypatch.setattr(receipts, "os", _FailingOS("disk full", Nth(2, True)))  # (the 1st is the start)
        else:
            monkeypatch.setattr(PostgresStore, "_upsert", gone)
            monkeypatch.setattr(PostgresStore, "_insert_receipt", refused)

    sim = rich(latency=0.005)
    with serve(sim) as url:
        fail()
        with pytest.raises(E.StoreUnavailableError), pytest.warns(RuntimeWarning, match="receipt could not be ended"):
            check(url, store, concurrency=8, patience=0.5)
        paid = sum(sim.ledger.paid(SECRET).values())
        ends = list((tmp_path / "spill" / "answers").glob("*.end.json"))
        assert paid >= 1 and len(ends) == 1 and ends[0].stat().st_mode & 0o777 == 0o600
        with pytest.warns(RuntimeWarning):  # still failing: the report reads the end from this machine
            (run,) = qxt_pandas.report(store).runs
        assert run["paid"] == paid and run["spilled"] + run["unsaved"] >= 1 and not run["recovered"]
        monkeypatch.undo()
        monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))
        check(url, store)  # writes the end in, moves the answers in, asks only what was never asked
        made = qxt_pandas.report(store)
    first = made.runs[0]
    assert not list((tmp_path / "spill" / "answers").glob("*.end.json")) and twice(sim) == 0
    assert first["paid"] == paid and first["delivered"] == first["by_code"].get("0", 0) and not first["recovered"]
    assert made.overcharged == [], made.warning()


# -- claims end only once their answers are durable -----------------------------------------------


def test_a_claim_ends_only_after_its_answers_are_committed(postgres, monkeypatch):
    from qxt_pandas.stores.postgres.store import PostgresClaim

    release, seen = PostgresClaim.release, []

    def checked_release(self):
        if self.mine:
            with self.store._tx() as cur:
                cur.execute(self.store._q("select count(*) from S.answers where mobile = any(%s)"), (self.mine,))
                seen.append((cur.fetchone()[0], len(self.mine)))
        release(self)

    monkeypatch.setattr(PostgresClaim, "release", checked_release)
    sim = rich(latency=0.01)
    with serve(sim) as url:
        check(url, postgres, concurrency=16)
    answered = len(sim.ledger.paid(SECRET))
    assert seen and sum(n for n, _ in seen) >= answered  # every answer paid for was committed before its claim ended


# -- values a store cannot hold are made storable, the same in every store -------------------------


def test_a_nul_or_a_lone_surrogate_from_the_vendor_is_stored_alike_in_every_store(store):
    sim = rich(shape="hostile")
    with serve(sim) as url:
        first = check(url, store, NUMBERS[:40])
        again = check(url, store, NUMBERS[:40])
    odd = first[first["m"].str[-1].isin(["3", "7"]) & first["qxt_code"].eq(0)]
    assert len(odd) and odd["Area"].str.endswith("\ufffdx").all()
    assert twice(sim) == 0 and len(sim.ledger.paid(SECRET)) == (first["qxt_code"] == 0).sum()
    pd.testing.assert_series_equal(first["Area"], again["Area"])


# -- read-only roles and schemas that are not ours ------------------------------------------------


def test_a_read_only_role_plans_and_reports_but_a_check_stops_before_paying(postgres, postgres_server, tmp_path):
    import psycopg

    sim = rich()
    with serve(sim) as url:
        check(url, postgres, NUMBERS[:50])
        base, schema = postgres.split("&schema=")
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute("drop role if exists qxt_reader; create role qxt_reader login password 'r'")
            admin.execute(f"grant usage on schema {schema} to qxt_reader")
            admin.execute(f"grant select on all tables in schema {schema} to qxt_reader")
        host = postgres_server.split("host=")[1]
        reader = f"postgresql://qxt_reader:r@/postgres?host={host}&schema={schema}"
        paid = len(sim.ledger)
        plan = pd.DataFrame({"m": NUMBERS[:80]}).qxt.plan("m", apikey=SECRET, base_url=url, checkpoint=reader)
        assert plan.in_checkpoint == 50 and plan.to_query == 30
        (tmp_path / "in.csv").write_text("m\n" + "\n".join(NUMBERS[:80]) + "\n")
        common = ["check", tmp_path / "in.csv", "--column", "m", "--checkpoint", reader, "--base-url", url]
        assert qxt(*common, "--dry-run").returncode == 0
        assert qxt("report", reader, key=None).returncode == 0
        refused = qxt(*common, "--output", tmp_path / "out.csv")
    assert refused.returncode == 2 and "qxt_reader" in refused.stderr and "INSERT" in refused.stderr
    assert len(sim.ledger) == paid and ":r@" not in refused.stderr


def test_a_schema_holding_another_applications_tables_is_refused_before_anything_is_written(postgres):
    import psycopg

    base, schema = postgres.split("&schema=")
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f"create schema {schema}")
        admin.execute(f"create table {schema}.answers (id serial primary key, question text, answer text)")
        admin.execute(f"insert into {schema}.answers (question, answer) values ('q', 'a')")
    sim = rich()
    with serve(sim) as url, pytest.raises(E.CheckpointError, match="that qxt did not make"):
        check(url, postgres)
    with psycopg.connect(base, autocommit=True) as admin:
        tables = admin.execute("select table_name from information_schema.tables where table_schema = %s",
                               (schema,)).fetchall()  # fmt: skip
        rows = admin.execute(f"select question, answer from {schema}.answers").fetchall()
    assert tables == [("answers",)] and rows == [("q", "a")] and len(sim.ledger) == 0


# -- spill files: found by the store's identity, not the URI's spelling ----------------------------


def test_a_spill_is_moved_in_through_another_spelling_of_the_same_database(postgres, tmp_path, monkeypatch):
    from qxt_pandas.stores.postgres.store import PostgresStore

    monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))
    upsert = PostgresStore._upsert
    fails = Nth(2, lasting=True)

    def failing(self, rows):
        if fails():
            raise E.CheckpointError("injected: the role lost its privileges")
        return upsert(self, rows)

    monkeypatch.setattr(PostgresStore, "_upsert", failing)
    sim = rich(latency=0.005)
    with serve(sim) as url:
        with pytest.raises(E.StoreUnavailableError):
            check(url, postgres, concurrency=8)
        monkeypatch.setattr(PostgresStore, "_upsert", upsert)
        assert spilled(tmp_path / "spill")
        base, schema = postgres.split("&schema=")
        respelled = base.replace("postgresql://postgres:@", "postgres://postgres@")
        respelled += f"&connect_timeout=5&schema={schema}"  # another scheme, no empty password, a parameter more
        again = check(url, respelled)
    assert again["qxt_code"].notna().all() and twice(sim) == 0 and not spilled(tmp_path / "spill")


def test_a_lease_renewal_that_fails_for_a_moment_is_retried_with_backoff(postgres, tmp_path, monkeypatch):
    from qxt_pandas.stores.postgres.store import PostgresStore

    monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))
    monkeypatch.setenv("QXT_LEASE_SECONDS", "1")  # heartbeats every 0.25 s, renewals before most requests
    confirm, tries = PostgresStore.confirm, []

    def flaky(self, held):
        tries.append(time.monotonic())
        if len(tries) <= 4:  # a read-only moment: no write goes through, not even a heartbeat
            with self._tx():
                raise psycopg_errors().ReadOnlySqlTransaction("cannot execute UPDATE in a read-only transaction")
        return confirm(self, held)

    monkeypatch.setattr(PostgresStore, "confirm", flaky)
    monkeypatch.setattr(PostgresStore, "beat", lambda self: flaky(self, 0) and None)
    sim = rich(latency=0.05)
    with serve(sim) as url:
        done = check(url, postgres, NUMBERS[:120], concurrency=4, timeout=0.5, retries=0)
    assert done["qxt_code"].notna().all() and twice(sim) == 0
    # waited between tries, not a busy loop (the heartbeat's own tries interleave with the renewal's: the span counts)
    assert len(tries) > 4 and tries[4] - tries[0] >= 0.1


def psycopg_errors():
    import psycopg

    return psycopg.errors


def test_spilled_answers_the_disk_still_cannot_take_are_read_as_stored_and_never_paid_again(tmp_path, monkeypatch):
    from qxt_pandas.stores import _spill
    from qxt_pandas.stores.directory.store import Answer, Checkpoint

    monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))
    store = Checkpoint(tmp_path / "c.qxt", service="127.0.0.1")
    store.bind(simulator=True)
    kept = [Answer(n, 0, "正常", checked_at=2e9) for n in NUMBERS[:20]]
    _spill.spill(store.identity, "run-1", kept)  # a run whose disk filled
    sim = rich(latency=0.005)
    with serve(sim) as url:
        monkeypatch.setattr(journal, "os", _FailingOS("disk full", Nth(1, True)))  # still full: moving in fails
        with pytest.warns(RuntimeWarning, match="cannot be moved into"):
            done = check(url, str(tmp_path / "c.qxt"), NUMBERS[:20])
        monkeypatch.undo()
        monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))
        assert len(sim.ledger) == 0 and done["qxt_code"].notna().all()  # read as stored: nothing paid
        assert spilled(tmp_path / "spill") == set(NUMBERS[:20])  # the spill is whole until it can move in
        assert stored(str(tmp_path / "c.qxt")) == set(NUMBERS[:20]) and not spilled(tmp_path / "spill")
