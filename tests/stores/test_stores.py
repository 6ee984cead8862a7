"""Both stores keep the same promises: a checkpoint directory and PostgreSQL (issue 18).

The first tests run over both (the ``store`` fixture); the rest are about
PostgreSQL alone: runs on two "machines" that share only the database, the
database going away mid-run, a wrong URI, another service. One real server
(pgserver) serves the whole run; each test has a schema of its own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time

import pandas as pd
import pytest
from conftest import QXT, SECRET, make_simulator, qxt, wait_for

import qxt_pandas
from qxt_pandas import errors as E
from qxt_pandas.simulator import Faults, serve
from qxt_pandas.stores import open_store

NUMBERS = [f"139{i:08d}" for i in range(600)]


def frame(numbers: list[str] = NUMBERS) -> pd.DataFrame:
    return pd.DataFrame({"m": [*numbers, "无", "0755-26012345"]})


def check(url: str, store: str, numbers: list[str] = NUMBERS, **more) -> pd.DataFrame:
    return frame(numbers).qxt.check("m", apikey=SECRET, base_url=url, checkpoint=store, progress=False, **more)


def rich(**knobs):
    sim = make_simulator(**knobs)
    sim.accounts[SECRET].balance = 100_000
    return sim


# -- the same promises over both stores ----------------------------------------------------------


def test_resume_after_a_budget_pays_each_number_once(store):
    sim = rich()
    with serve(sim) as url:
        first = check(url, store, budget=200)
        assert sim.ledger.paid(SECRET).total() == 200 and first["qxt_code"].isna().sum() > 0
        second = check(url, store)
        third = check(url, store)
    assert max(sim.ledger.paid(SECRET).values()) == 1 and second["qxt_code"].notna().all()
    pd.testing.assert_frame_equal(second.drop(columns="qxt_checked_at"), third.drop(columns="qxt_checked_at"))


def test_faults_pay_nothing_twice_that_was_delivered(store):
    sim = rich(faults=Faults.mixed(0.15), seed=3)
    with serve(sim) as url:
        check(url, store, backoff=0, timeout=0.5)  # a hang costs the timeout: keep it short
        sim.faults = Faults()
        check(url, store)
    delivered = sim.ledger.paid(SECRET, delivered_only=True)
    assert max(delivered.values()) == 1


def test_a_balance_running_out_keeps_what_was_paid(store):
    sim = make_simulator()
    sim.accounts[SECRET].balance = 100
    with serve(sim) as url, pytest.raises(E.InsufficientBalanceError):
        check(url, store)
    sim.accounts[SECRET].balance = 10_000
    with serve(sim) as url:
        check(url, store)
    assert max(sim.ledger.paid(SECRET).values()) == 1


def test_two_runs_at_once_pay_each_number_once(store):
    sim = rich(latency=0.02)

    async def two(url: str):
        return await asyncio.gather(*(frame().qxt.acheck("m", apikey=SECRET, base_url=url, checkpoint=store,
                                                         progress=False) for _ in range(2)))  # fmt: skip

    with serve(sim) as url:
        a, b = asyncio.run(two(url))
    assert sim.ledger.paid_twice() == {} and a["qxt_code"].notna().all() and b["qxt_code"].notna().all()


def test_max_age_asks_old_answers_again(store):
    sim = rich()
    with serve(sim) as url:
        check(url, store)
        paid = len(sim.ledger)
        check(url, store, max_age="1h")
        assert len(sim.ledger) == paid
        time.sleep(0.01)  # answers must be older than max_age below: a hundredth of a second is enough
        check(url, store, max_age=0.001)
    assert len(sim.ledger) == 2 * paid


def test_report_and_receipts_over_either_store(store):
    sim = rich(faults=Faults(reset=0.05), seed=5)
    with serve(sim) as url:
        out = check(url, store, backoff=0)
    made = qxt_pandas.report(store)
    (run,) = made.runs
    assert made.answered == int((out["qxt_code"] == 0).sum()) and run["paid"] == made.answered
    assert made.charged == len(sim.ledger) and made.delivered == made.answered
    lost = len(sim.ledger) - len(sim.ledger.paid(SECRET, delivered_only=True))
    assert made.to_dict()["charged_minus_delivered"] == sum(sim.ledger.paid(SECRET).values()) - made.delivered
    assert (lost > 0) == bool(made.warning())
    shown = qxt("report", store, key=None)
    assert shown.returncode == 0 and f"numbers answered {made.answered:,}" in shown.stdout


def test_kill_9_re_pays_at_most_what_was_in_flight(store, tmp_path):
    sim = rich(latency=0.05)
    numbers = [f"138{i:08d}" for i in range(1500)]
    pd.DataFrame({"m": numbers}).to_csv(tmp_path / "in.csv", index=False)
    args = ["check", tmp_path / "in.csv", "--column", "m", "--output", tmp_path / "out.parquet", "--checkpoint",
            store, "--concurrency", "16", "--progress", "off"]  # fmt: skip
    env = {**os.environ, "QXT_APIKEY": SECRET}
    with serve(sim) as url:
        child = subprocess.Popen([*QXT, *map(str, args), "--base-url", url],
                                 env=env, stderr=subprocess.DEVNULL)  # fmt: skip
        assert wait_for(lambda: len(sim.ledger) >= 300, timeout=60)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert qxt(*args, "--base-url", url).returncode == 0
    twice = sum(n - 1 for n in sim.ledger.paid(SECRET).values())
    assert twice <= 16 + (500 if store.startswith("postgres") else 0)


# -- PostgreSQL alone ------------------------------------------------------------------------


def test_two_machines_sharing_only_the_database_pay_each_number_once(postgres, tmp_path):
    sim = rich(latency=0.02)
    numbers = [f"137{i:08d}" for i in range(2000)]
    procs = []
    with serve(sim) as url:
        for name in ("a", "b"):
            work = tmp_path / name
            work.mkdir()
            pd.DataFrame({"m": numbers}).to_csv(work / "in.csv", index=False)
            env = {**os.environ, "QXT_APIKEY": SECRET, "QXT_SPILL_DIR": str(work / "spill")}
            procs.append(subprocess.Popen([*QXT, "check", "in.csv", "--column", "m",
                                           "--output", "out.csv", "--checkpoint", postgres, "--base-url", url,
                                           "--progress", "off"], cwd=work, env=env, stderr=subprocess.PIPE,
                                          text=True))  # fmt: skip
        for proc in procs:
            assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert sim.ledger.paid_twice() == {} and len(sim.ledger.paid(SECRET)) > 1900
    assert not any((tmp_path / n / "out.qxt").exists() for n in "ab")  # no directory checkpoint was made


def test_a_run_reads_only_the_answers_it_needs(postgres):
    sim = rich()
    with serve(sim) as url:
        check(url, postgres)
    store = open_store(postgres, service="127.0.0.1")
    try:
        some = store.answers(numbers=qxt_pandas_array(NUMBERS[:10]))
        everything = store.answers()
    finally:
        store.close()
    assert some.num_rows == 10 and everything.num_rows == len(NUMBERS)


def qxt_pandas_array(values: list[str]):
    import pyarrow as pa

    return pa.array(values, pa.string())


def test_every_connection_terminated_mid_run_is_a_blip_the_run_goes_through(postgres, tmp_path, monkeypatch):
    import psycopg

    monkeypatch.setenv("QXT_SPILL_DIR", str(tmp_path / "spill"))
    sim = rich(latency=0.05)
    numbers = [f"136{i:08d}" for i in range(1500)]

    def cut() -> None:
        with psycopg.connect(postgres.split("&schema=")[0], autocommit=True) as admin:
            admin.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                          "where application_name = 'qxt-pandas' and pid <> pg_backend_pid()")  # fmt: skip

    async def run(url: str):
        task = asyncio.create_task(frame(numbers).qxt.acheck("m", apikey=SECRET, base_url=url, checkpoint=postgres,
                                                             progress=False, concurrency=16))  # fmt: skip
        await asyncio.to_thread(wait_for, lambda: len(sim.ledger) >= 300)
        await asyncio.to_thread(cut)
        return await task

    with serve(sim) as url:
        done = asyncio.run(run(url))  # reconnected, its claims checked, its spill moved in: no error
        again = check(url, postgres, numbers)
    assert done["qxt_code"].notna().all() and again["qxt_code"].notna().all()
    assert not list((tmp_path / "spill").glob("*.jsonl")) and sim.ledger.paid_twice() == {}
    store = open_store(postgres, service="127.0.0.1")
    try:
        assert set(sim.ledger.paid(SECRET)) <= set(store.answers()["mobile"].to_pylist())
    finally:
        store.close()


def test_a_wrong_role_or_password_is_a_clear_error_that_never_shows_the_password(postgres_server, tmp_path):
    host = postgres_server.split("host=")[1]
    uri = f"postgresql://nobody:s3cr3t-pw@/postgres?host={host}"
    with pytest.raises(E.CheckpointError) as caught:
        check("http://127.0.0.1:9", uri)
    assert "nobody" in str(caught.value) and "s3cr3t-pw" not in str(caught.value)
    result = qxt("check", export_csv(tmp_path), "--column", "m", "--output", tmp_path / "o.csv", "--checkpoint", uri,
                 "--base-url", "http://127.0.0.1:9")  # fmt: skip
    assert result.returncode == 2 and "s3cr3t-pw" not in result.stderr + result.stdout


def test_an_unreachable_database_stops_before_paying_with_exit_1(tmp_path):
    sim = rich()
    with serve(sim) as url:
        result = qxt("check", export_csv(tmp_path), "--column", "m", "--output", tmp_path / "o.csv", "--checkpoint",
                     f"postgresql://u@/db?host={tmp_path / 'nowhere'}", "--base-url", url)  # fmt: skip
    assert result.returncode == 1 and "Cannot reach the answer store" in result.stderr and len(sim.ledger) == 0


def export_csv(tmp_path):
    path = tmp_path / "in.csv"
    frame().to_csv(path, index=False)
    return path


def test_a_store_of_another_service_or_kind_is_refused(postgres):
    sim = rich()
    with serve(sim) as url:
        check(url, postgres)
    with pytest.raises(E.CheckpointError, match=r"holds answers from '127\.0\.0\.1'"):
        check("http://localhost:9", postgres)
    with pytest.raises(E.CheckpointError, match="schema="):
        check("http://127.0.0.1:9", postgres.replace("&schema=", "&schema=bad-name"))


def test_the_report_of_an_empty_database_says_so(postgres):
    with pytest.raises(E.CheckpointError, match="holds no qxt answers"):
        qxt_pandas.report(postgres)


def test_a_claim_is_made_a_batch_at_a_time_and_overlapping_claims_never_share_a_number(store, monkeypatch):
    """Issue 32: the claims lock is held a batch at a time (here 7 numbers), and the claim is still whole: two
    runs never hold one number, the second waits for the first's numbers, a release frees every batch."""
    from qxt_pandas.stores.directory import claims
    from qxt_pandas.stores.postgres import store as postgres

    monkeypatch.setattr(claims, "BATCH", 7)
    monkeypatch.setattr(postgres, "_CLAIM_BATCH", 7)
    numbers = [f"1390000{i:04d}" for i in range(75)]
    first, second = open_store(store, service="127.0.0.1"), open_store(store, service="127.0.0.1")
    try:
        first.bind(simulator=True)
        mine = asyncio.run(first.claim(numbers[:50], None))
        theirs = asyncio.run(second.claim(numbers[25:75], None))
        assert mine.mine == numbers[:50] and theirs.mine == numbers[50:75]
        assert sorted(theirs.waiting_for) == numbers[25:50]  # across every batch of the first claim
        if hasattr(first, "files"):
            assert len(first.files("claim")) == 8 + 5  # a file a batch with numbers in it: 50 in 7s; 50-52, then 22
        mine.release()
        assert wait_for(lambda: not any(theirs.held(key) for key in theirs.others), timeout=10)
        again = asyncio.run(second.claim(numbers[25:50], None))  # the first asked none of them: all free again
        assert again.mine == numbers[25:50] and not again.others
        again.release()
        theirs.release()
    finally:
        first.close()
        second.close()


def test_answers_stored_while_another_run_still_holds_their_claim_are_never_claimed_again(store):
    """A run that reads another run's answers while that run still holds its claim keeps them: a later round (once
    the claim is released) never claims, and pays for, them again (a full suite run caught a directory store
    paying 150 numbers twice so)."""
    from qxt_pandas.stores.journal import Answer

    numbers = [f"1390001{i:04d}" for i in range(10)]
    first, second = open_store(store, service="127.0.0.1"), open_store(store, service="127.0.0.1")
    try:
        first.bind(simulator=True)
        second.answers()  # the second run loads the store before the first has answered anything
        held = asyncio.run(first.claim(numbers, None))
        with first.writer() as writer:
            for n in numbers[:6]:
                writer.append(Answer(n, 0, "正常", "湖北-宜昌", False, "中国移动", "中国移动", None, time.time()))
        waiting = asyncio.run(second.claim(numbers, None))
        assert waiting.mine == [] and set(waiting.waiting_for) >= set(numbers[6:])  # (the directory: exactly those)
        if waiting.answered is not None:
            assert set(waiting.answered["mobile"].to_pylist()) | set(waiting.waiting_for) == set(numbers)
        held.release()
        again = asyncio.run(second.claim(waiting.waiting_for, None))
        assert sorted(again.mine) == numbers[6:]  # none of the six answered: paid once
        again.release()
    finally:
        first.close()
        second.close()
