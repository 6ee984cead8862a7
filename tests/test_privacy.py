"""Personal data kept to the minimum: keyed stores, forgetting, retention, masked messages (issue 19)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pandas as pd
import pytest
from conftest import QXT, SECRET, make_simulator, qxt, wait_for

import qxt_pandas
from qxt_pandas import errors as E
from qxt_pandas.service._secret import Secret
from qxt_pandas.simulator import Faults, answer, serve
from qxt_pandas.stores.directory.store import Checkpoint
from qxt_pandas.stores.keyed import fingerprint

KEY = "a-store-key-for-tests-only-0123456789"
NUMBERS = [f"139{i:08d}" for i in range(400)]


def rich(**knobs):
    sim = make_simulator(**knobs)
    sim.accounts[SECRET].balance = 100_000
    return sim


def check(url: str, store: str, numbers: list[str] = NUMBERS, **more) -> pd.DataFrame:
    return pd.DataFrame({"m": numbers}).qxt.check("m", apikey=SECRET, base_url=url, checkpoint=store,
                                                  progress=False, **more)  # fmt: skip


def stored_bytes(store: str) -> bytes:
    """Everything the store holds: each file of a directory as bytes and, for a compressed Parquet part, its
    values too; or every row of every table of the schema."""
    if not store.startswith("postgres"):
        import pyarrow.parquet as pq

        blobs = []
        for path in sorted(Path(store).rglob("*")):
            if path.is_file():
                blobs.append(path.read_bytes())
                if path.read_bytes()[:4] == b"PAR1":
                    blobs.append(str(pq.read_table(path).to_pylist()).encode())
        return b"".join(blobs)
    import psycopg

    base, schema = store.split("&schema=")
    with psycopg.connect(base) as conn:
        tables = [r[0] for r in conn.execute("select table_name from information_schema.tables where table_schema "
                                             "= %s", (schema,)).fetchall()]  # fmt: skip
        return "\n".join(str(conn.execute(f'select * from "{schema}"."{t}"').fetchall()) for t in tables).encode()


def revealed(blob: bytes, numbers: list[str]) -> int:
    """How many of ``numbers`` the bytes reveal: whole, or their last 8 digits."""
    return sum(n[-8:].encode() in blob for n in numbers)


# -- the store key -------------------------------------------------------------------------------


def test_a_keyed_store_reveals_no_number_and_a_plain_one_does(store, tmp_path):
    sim = rich(faults=Faults(reset=0.05), seed=2)
    with serve(sim) as url:
        plain = store + ("_plain" if store.startswith("postgres") else ".plain")
        first = check(url, store, store_key=KEY, backoff=0)
        again = check(url, store, store_key=KEY)  # resumes through the hashes: pays nothing again
        check(url, plain, backoff=0)
    paid = sum(sim.ledger.paid(SECRET).values())
    assert revealed(stored_bytes(store), NUMBERS) == 0
    assert revealed(stored_bytes(plain), NUMBERS) > 300  # the control: the scan does find numbers in clear
    assert again["Status"].tolist() == first["Status"].tolist()
    assert paid == len(sim.ledger) and KEY.encode() not in stored_bytes(store)
    if not store.startswith("postgres"):
        Checkpoint(store, service="127.0.0.1", key=fingerprint(Secret(KEY))).compact()
        assert revealed(stored_bytes(store), NUMBERS) == 0
    made = qxt_pandas.report(store)  # a report needs no key: it counts, it never names a number
    assert made.answered == int((first["qxt_code"] == 0).sum())


def test_a_wrong_missing_or_extra_key_is_refused_before_paying(store):
    sim = rich()
    with serve(sim) as url:
        check(url, store, NUMBERS[:50], store_key=KEY)
        paid = len(sim.ledger)
        for wrong in ("another-key-entirely-0123456789", None):
            with pytest.raises(E.CheckpointError, match=r"store key|keyed hashes"):
                check(url, store, store_key=wrong)
        plain = store + ("_p" if store.startswith("postgres") else ".p")
        check(url, plain, NUMBERS[:10])
        with pytest.raises(E.CheckpointError, match="without a store key"):
            check(url, plain, store_key=KEY)
    assert len(sim.ledger) == paid + sum(answer(n)[0][0] == 0 for n in NUMBERS[:10])


def test_the_store_key_is_never_shown():
    options = qxt_pandas.CheckOptions(store_key=KEY, checkpoint="x.qxt")
    assert KEY not in repr(options) and KEY not in str(options)
    with pytest.raises(ValueError, match="16 characters") as caught:
        qxt_pandas.CheckOptions(store_key="short")
    assert "short" not in str(caught.value)


def test_a_keyed_store_killed_mid_run_still_reveals_nothing(tmp_path):
    sim = rich(latency=0.05)
    numbers = [f"138{i:08d}" for i in range(1200)]
    pd.DataFrame({"m": numbers}).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "key").write_text(KEY)
    args = ["check", tmp_path / "in.csv", "--column", "m", "--output", tmp_path / "out.csv", "--checkpoint",
            tmp_path / "c.qxt", "--store-key-file", tmp_path / "key", "--progress", "off"]  # fmt: skip
    with serve(sim) as url:
        child = subprocess.Popen([*QXT, *map(str, args), "--base-url", url],
                                 env={**os.environ, "QXT_APIKEY": SECRET}, stderr=subprocess.DEVNULL)  # fmt: skip
        assert wait_for(lambda: len(sim.ledger) >= 200, timeout=60)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert revealed(stored_bytes(str(tmp_path / "c.qxt")), numbers) == 0  # journals and claims of the dead run
        assert qxt(*args, "--base-url", url).returncode == 0
    assert revealed(stored_bytes(str(tmp_path / "c.qxt")), numbers) == 0


# -- forgetting and retention ----------------------------------------------------------------------


@pytest.mark.parametrize("keyed", [False, True])
def test_forget_by_number_then_a_rerun_pays_exactly_those_again(store, keyed):
    key = KEY if keyed else None
    sim = rich()
    with serve(sim) as url:
        check(url, store, store_key=key)
        gone = NUMBERS[:25]
        spelled = [f"+86 {n[:3]}-{n[3:7]}-{n[7:]}" for n in gone]
        assert qxt_pandas.forget(store, numbers=spelled, store_key=key, dry_run=True) == 25
        assert qxt_pandas.forget(store, numbers=spelled, store_key=key) == 25
        assert revealed(stored_bytes(store), gone) == 0
        before = sim.ledger.paid(SECRET).copy()
        check(url, store, store_key=key)
    again = sim.ledger.paid(SECRET) - before
    assert sorted(again) == sorted(n for n in gone if answer(n)[0][0] == 0)
    if not store.startswith("postgres"):
        assert not (Path(store) / "damaged").exists()


def test_forget_by_age_and_retention(store):
    sim = rich()
    with serve(sim) as url:
        check(url, store, NUMBERS[:100])
        assert qxt_pandas.forget(store, older_than="1h") == 0
        assert qxt_pandas.forget(store, older_than=0) == 100
        assert qxt_pandas.report(store).stored == 0
        check(url, store, NUMBERS[:100])
        paid = len(sim.ledger)
        check(url, store, NUMBERS[:100], retention="1h")  # young enough: served, and kept
        assert len(sim.ledger) == paid and qxt_pandas.report(store).stored == 100
        check(url, store, NUMBERS[100:110], retention=0)  # the run's tidy-up removes what is older
    assert qxt_pandas.report(store).stored == 0


def test_forget_racing_a_run_and_a_reader_loses_nothing_else(tmp_path):
    store = str(tmp_path / "c.qxt")
    sim = rich(latency=0.01)
    gone, kept = NUMBERS[:200], [f"137{i:08d}" for i in range(600)]
    with serve(sim) as url:
        check(url, store, gone + kept[:300])
        done = threading.Event()
        short = []

        def reader() -> None:
            seen = Checkpoint(store, service="127.0.0.1")
            while not done.is_set():
                table = seen.answers()
                short.append(len(set(kept[:300]) - set(table["mobile"].to_pylist())))

        def forgetting() -> None:
            while not done.is_set():
                qxt_pandas.forget(store, numbers=gone)

        threads = [threading.Thread(target=reader), threading.Thread(target=forgetting)]
        for t in threads:
            t.start()
        check(url, store, kept)
        done.set()
        for t in threads:
            t.join()
        qxt_pandas.forget(store, numbers=gone)
    stored = set(Checkpoint(store, service="127.0.0.1").answers()["mobile"].to_pylist())
    assert set(kept) <= stored and not (set(gone) & stored) and max(short) == 0
    assert sim.ledger.paid_twice() == {}


def test_qxt_forget_from_a_file_of_numbers_and_by_age(tmp_path):
    sim = rich()
    with serve(sim) as url:
        check(url, str(tmp_path / "c.qxt"))
    (tmp_path / "gone.csv").write_text("phone\n" + "\n".join(NUMBERS[:10]) + "\n")
    result = qxt("forget", tmp_path / "c.qxt", "--numbers", tmp_path / "gone.csv", "--column", "phone", key=None)
    assert result.returncode == 0 and "10 numbers' answers removed" in result.stdout
    (tmp_path / "gone.txt").write_text("\n".join(NUMBERS[10:15]))
    assert "5 numbers" in qxt("forget", tmp_path / "c.qxt", "--numbers", tmp_path / "gone.txt", key=None).stdout
    assert "385 numbers" in qxt("forget", tmp_path / "c.qxt", "--older-than", "0d", "--all", "--dry-run",
                                key=None).stdout  # fmt: skip
    assert qxt("forget", tmp_path / "c.qxt", key=None).returncode == 2


# -- masked messages -------------------------------------------------------------------------------


def test_messages_of_failing_runs_contain_no_whole_number(tmp_path):
    sim = rich(faults=Faults(busy=1.0, endpoints=frozenset({"status"})))
    pd.DataFrame({"m": NUMBERS[:20]}).to_csv(tmp_path / "in.csv", index=False)
    with serve(sim) as url:
        result = qxt("check", tmp_path / "in.csv", "--column", "m", "--output", tmp_path / "out.csv", "--base-url",
                     url, "--retries", "0", "--concurrency", "4", "--progress", "log")  # fmt: skip
        shown = qxt("check", tmp_path / "in.csv", "--column", "m", "--output", tmp_path / "out2.csv", "--base-url",
                    url, "--retries", "0", "--concurrency", "4", "--show-numbers", "--dry-run")  # fmt: skip
    assert result.returncode == 5 and not re.search(r"1\d{10}", result.stdout + result.stderr)
    assert shown.returncode == 0
    error = E.NoInformationError(code=-4, reason="x", mobile=NUMBERS[3])
    assert NUMBERS[3] not in str(error) and "139****0003" in str(error) and error.mobile == NUMBERS[3]


def test_mask_output_writes_masked_numbers(tmp_path):
    sim = rich()
    pd.DataFrame({"m": NUMBERS[:20], "name": ["x"] * 20}).to_csv(tmp_path / "in.csv", index=False)
    with serve(sim) as url:
        assert qxt("check", tmp_path / "in.csv", "--column", "m", "--output", tmp_path / "out.csv", "--base-url",
                   url, "--mask-output", "--split").returncode == 0  # fmt: skip
    files = list(tmp_path.glob("out*.csv"))
    assert len(files) > 1
    for path in files:
        assert not re.search(r"1\d{10}", path.read_text(encoding="utf-8")), path.name
    assert "139****0001" in (tmp_path / "out.csv").read_text(encoding="utf-8")
