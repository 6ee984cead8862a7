"""Two of everything on one checkpoint: runs, processes, compaction racing loads; damage; the key in locals."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import time
import traceback
import warnings

import pandas as pd
import pytest
from conftest import QXT, SECRET, make_simulator, qxt, wait_for

import qxt_pandas
from qxt_pandas import errors as E
from qxt_pandas.simulator import SimulatorTransport, answer, serve
from qxt_pandas.stores.directory.store import Answer, Checkpoint, JournalWriter


def numbers(start: int, stop: int) -> pd.DataFrame:
    return pd.DataFrame({"mobile": [f"138{i:08d}" for i in range(start, stop)]})


def paid_twice(sim) -> int:
    return sum(n - 1 for n in sim.ledger.paid(SECRET).values())


def charged(start: int, stop: int) -> set[str]:
    """The numbers the simulator charges for (code 0) among ``numbers(start, stop)``."""
    return {m for m in numbers(start, stop)["mobile"] if answer(m)[1] is not None}


def ans(i: int, at: float | None = None) -> Answer:
    return Answer(f"138{i:08d}", 0, "正常", "北京-北京", False, "中国移动", "中国移动", None, at or time.time())


@pytest.fixture
def busy_sim():
    sim = make_simulator(latency=0.01)
    sim.accounts[SECRET].balance = 10**6
    return sim


# -- item 1: runs sharing a checkpoint -------------------------------------------------


def test_two_commands_at_once_on_one_checkpoint_pay_each_number_once(tmp_path, busy_sim):
    numbers(0, 600).to_csv(tmp_path / "in.csv", index=False)
    env = {**os.environ, "QXT_APIKEY": SECRET}
    with serve(busy_sim) as url:
        runs = [
            subprocess.Popen([*QXT, "check", "in.csv", "--column", "mobile",
                              "--output", f"out{k}.parquet", "--checkpoint", "shared.qxt", "--base-url", url,
                              "--concurrency", "16"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
            for k in (1, 2)
        ]  # fmt: skip
        errs = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], errs
    assert paid_twice(busy_sim) == 0 and set(busy_sim.ledger.paid(SECRET)) == charged(0, 600)
    first, second = (pd.read_parquet(tmp_path / f"out{k}.parquet") for k in (1, 2))
    assert first["qxt_code"].notna().all()
    pd.testing.assert_frame_equal(first.drop(columns="qxt_checked_at"), second.drop(columns="qxt_checked_at"))
    assert not list((tmp_path / "shared.qxt").glob("claim-*"))  # every claim ended with its run


def test_two_acheck_under_gather_and_overlapping_runs_never_pay_twice_or_deadlock(tmp_path, busy_sim):
    options = dict(apikey=SECRET, checkpoint=tmp_path / "g.qxt", progress=False, concurrency=8)

    async def together(url: str):
        return await asyncio.gather(
            numbers(0, 300).qxt.acheck("mobile", base_url=url, **options),
            numbers(0, 300).qxt.acheck("mobile", base_url=url, **options),
            numbers(150, 450).qxt.acheck("mobile", base_url=url, **options),  # half shared with the others
        )

    with serve(busy_sim) as url:
        a, b, c = asyncio.run(asyncio.wait_for(together(url), 60))
    assert paid_twice(busy_sim) == 0 and set(busy_sim.ledger.paid(SECRET)) == charged(0, 450)
    for out in (a, b, c):
        assert out["qxt_code"].notna().all()
    pd.testing.assert_frame_equal(a.drop(columns="qxt_checked_at"), b.drop(columns="qxt_checked_at"))
    assert c["Status"].iloc[:150].tolist() == a["Status"].iloc[150:].tolist()


def test_a_run_waits_for_the_numbers_another_run_is_asking_and_says_so(tmp_path, busy_sim, capsys):
    busy_sim.latency = 0.05
    options = dict(apikey=SECRET, checkpoint=tmp_path / "w.qxt", concurrency=4)

    async def staggered(url: str):
        first = asyncio.create_task(numbers(0, 80).qxt.acheck("mobile", base_url=url, progress=False, **options))
        await asyncio.to_thread(wait_for, lambda: len(busy_sim.ledger) >= 4)
        second = await numbers(0, 80).qxt.acheck("mobile", base_url=url, progress="log", **options)
        return await first, second

    with serve(busy_sim) as url:
        _, second = asyncio.run(staggered(url))
    assert paid_twice(busy_sim) == 0 and second["qxt_code"].notna().all()
    assert "waiting for another run on this checkpoint (pid" in capsys.readouterr().err


def test_a_claim_of_a_killed_run_ends_with_it(tmp_path, busy_sim):
    script = (
        "import sys, asyncio, qxt_pandas.stores.directory.claims as c, qxt_pandas.stores.directory.store as k\n"
        "store = k.Checkpoint(sys.argv[1], service='127.0.0.1')\n"
        "claim = asyncio.run(c.claim_numbers(store, ['13800000001'], None))\n"
        "print('claimed', flush=True); sys.stdin.read()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "k.qxt")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "claimed"
    store = Checkpoint(tmp_path / "k.qxt", service="127.0.0.1")
    from qxt_pandas.stores.directory.claims import claim_numbers

    held = asyncio.run(claim_numbers(store, ["13800000001"], None))
    assert held.mine == [] and held.waiting_for == ["13800000001"]
    holder.kill()  # kill -9: no cleanup; the kernel drops the lock
    holder.wait()
    mine = asyncio.run(claim_numbers(store, ["13800000001"], None))
    assert mine.mine == ["13800000001"]
    mine.release()


# -- item 2: compaction racing loads ----------------------------------------------------

COMPACTOR = """
import sys, time
from qxt_pandas.stores.directory.store import Answer, Checkpoint
path, start, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for r in range(rounds):
    with Checkpoint(path, service="s").writer() as w:
        for i in range(start + r * 500, start + (r + 1) * 500):
            w.append(Answer(f"138{i:08d}", 0, "正常", "北京-北京", False, "中国移动", "中国移动", None, time.time()))
    Checkpoint(path, service="s").compact()
"""


def test_loads_racing_compactions_in_another_process_never_miss_an_answer(tmp_path):
    path = tmp_path / "race.qxt"
    with Checkpoint(path, service="s").writer() as w:
        for i in range(20_000):
            w.append(ans(i))
    Checkpoint(path, service="s").compact()
    compactor = subprocess.Popen([sys.executable, "-c", COMPACTOR, str(path), "20000", "40"])
    seen, loads = 20_000, 0
    while compactor.poll() is None or loads < 5:
        got = Checkpoint(path, service="s").answers().num_rows
        assert got >= seen, f"a load saw {got} answers after one saw {seen}"
        seen, loads = got, loads + 1
    assert compactor.returncode == 0 and seen == 40_000 and loads >= 5


def test_incremental_refresh_sees_new_journal_lines_and_new_parts_only(tmp_path):
    store = Checkpoint(tmp_path / "r.qxt", service="s")
    assert store.answers().num_rows == 0
    store.create()
    with JournalWriter(store.path) as w:
        w.append(ans(1))
        assert store.refresh()["mobile"].to_pylist() == ["13800000001"]
        w.append(ans(2))
        assert store.refresh()["mobile"].to_pylist() == ["13800000002"]  # only the new line
    assert store.refresh().num_rows == 0
    other = Checkpoint(store.path, service="s")
    other.compact()
    assert set(store.refresh()["mobile"].to_pylist()) == {"13800000001", "13800000002"}  # the new part, whole


# -- item 5: answers belong to the service that gave them -------------------------------


def test_simulated_answers_are_never_served_to_another_service_on_the_same_host(tmp_path, sim):
    import httpx

    checkpoint = tmp_path / "sim.qxt"
    df = numbers(0, 5)
    with serve(sim) as url:
        df.qxt.check("mobile", apikey=SECRET, base_url=url, checkpoint=checkpoint, progress=False)

    def vendor(request: httpx.Request) -> httpx.Response:  # no simulator header: a tunnel to the vendor
        if "balance" not in request.url.path:  # numbers fail (unpaid, not stored): only the binding matters
            return httpx.Response(502, text="<html>bad gateway</html>")
        return httpx.Response(200, json={"code": 0, "reason": "Succ", "result": {"feeType": "预付费", "balance": "9"}})

    with pytest.raises(E.CheckpointError, match="simulated answers"):
        df.qxt.check("mobile", apikey=SECRET, base_url="http://127.0.0.1:1", checkpoint=checkpoint,
                     transport=httpx.MockTransport(vendor), progress=False)  # fmt: skip
    real = tmp_path / "real.qxt"
    df.qxt.check(  # the fake vendor fails every number; what matters here is the binding
        "mobile", apikey=SECRET, base_url="http://127.0.0.1:1", checkpoint=real, retries=0,
                     transport=httpx.MockTransport(vendor), progress=False)  # fmt: skip
    assert json.loads((real / "meta.json").read_text())["simulator"] is False
    with serve(sim) as url, pytest.raises(E.CheckpointError, match="real answers"):
        df.qxt.check("mobile", apikey=SECRET, base_url=url, checkpoint=real, progress=False)


class Tunnel:
    """An ASGI app that answers as the simulator does but, like the vendor, never says it is one."""

    def __init__(self, sim) -> None:
        self.sim = sim

    async def __call__(self, scope, receive, send) -> None:
        async def strip(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [h for h in message["headers"] if h[0] != b"x-qxt-simulator"]}
            await send(message)

        await self.sim(scope, receive, strip)


def test_the_command_refuses_a_simulated_checkpoint_against_another_service(tmp_path, sim):
    numbers(0, 20).to_csv(tmp_path / "in.csv", index=False)
    args = ("check", tmp_path / "in.csv", "--column", "mobile", "--output", tmp_path / "o.csv", "--checkpoint",
            tmp_path / "cp")  # fmt: skip
    assert qxt(*args, "--simulate", key=None).returncode == 0
    with serve(Tunnel(sim)) as url:  # 127.0.0.1, like the simulator: only the service's own word differs
        refused = qxt(*args, "--base-url", url)
    assert refused.returncode == 2 and "simulated answers" in refused.stderr and len(sim.ledger) == 0
    with serve(sim) as url:  # another simulator: its answers are the same, nothing is paid
        again = qxt(*args, "--base-url", url)
    assert again.returncode == 0 and len(sim.ledger) == 0


# -- item 6: bit rot in a compacted part ------------------------------------------------


def test_every_single_bit_flip_in_a_part_is_detected(tmp_path):
    store = Checkpoint(tmp_path / "b.qxt", service="s")
    with store.writer() as w:
        for i in range(200):
            w.append(ans(i, at=1000.0 + i))
    store.compact()
    part = next(store.path.glob("part-*"))
    good = part.read_bytes()
    expected = store.answers()
    rng = random.Random(6)
    wrong = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(300):
            flipped = bytearray(good)
            bit = rng.randrange(len(good) * 8)
            flipped[bit // 8] ^= 1 << (bit % 8)
            part.write_bytes(bytes(flipped))
            got = Checkpoint(store.path, service="s").answers()
            wrong += got.num_rows != 0 and not got.equals(expected)  # either refused whole, or the truth
            assert got.num_rows == 0
    assert wrong == 0


# -- item 11: damaged journals and meta, leftovers ----------------------------------------


@pytest.mark.parametrize("line", [b"123", b"[1,2]", b'{"mobile": 13800000001, "code": 0, "checked_at": 1.0}',
                                  b'{"mobile": "13800000001", "code": "0", "checked_at": 1.0}', b"null",
                                  b'{"mobile": "13800000001", "code": 5, "checked_at": 1.0}'])  # fmt: skip
def test_damaged_journal_lines_are_skipped_with_one_warning_and_asked_again(tmp_path, sim, line):
    store = Checkpoint(tmp_path / "d.qxt", service="simulator")
    with store.writer() as w:
        w.append(ans(2))
    (store.path / "journal-1-1-damaged.jsonl").write_bytes(line + b"\n" + ans(3).line())
    options = dict(apikey=SECRET, base_url="http://simulator", transport=SimulatorTransport(sim), progress=False,
                   checkpoint=store.path)  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = numbers(1, 4).qxt.check("mobile", **options)
    assert [str(w.message) for w in caught if "damaged line" in str(w.message)].__len__() == 1
    assert out["qxt_code"].notna().all() and set(sim.ledger.paid(SECRET)) == {"13800000001"}


@pytest.mark.parametrize("meta", ["[]", "null", '{"format": 2}', "{half"])
def test_a_damaged_meta_is_a_checkpoint_error_naming_the_file(tmp_path, meta):
    (tmp_path / "m.qxt").mkdir()
    (tmp_path / "m.qxt" / "meta.json").write_text(meta)
    with pytest.raises(E.CheckpointError, match=r"meta\.json is damaged"):
        Checkpoint(tmp_path / "m.qxt", service="s")


def test_empty_journals_left_by_kills_are_removed_by_a_later_run(tmp_path, sim):
    store = Checkpoint(tmp_path / "e.qxt", service="simulator")
    store.create()
    for k in range(3):
        (store.path / f"journal-{k}-999-dead.jsonl").write_bytes(b"")
    live = store.writer()
    live.append(ans(9))  # a live writer's journal is never touched
    numbers(0, 3).qxt.check("mobile", apikey=SECRET, base_url="http://simulator", transport=SimulatorTransport(sim),
                            progress=False, checkpoint=store.path)  # fmt: skip
    assert [p.name for p in store.path.glob("journal-*") if p.stat().st_size == 0] == []
    assert live.path.exists()
    live.close()


# -- item 14: power loss ------------------------------------------------------------------


def test_a_journal_is_fsynced_while_the_run_goes_on(tmp_path, monkeypatch):
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    writer = JournalWriter(tmp_path, sync_every=0.02)
    writer.append(ans(1))
    assert wait_for(lambda: synced, timeout=5)  # before close: a power cut loses at most sync_every
    writer.close()


# -- item 16: the key in frame locals -----------------------------------------------------


def library_locals(exc: BaseException) -> str:
    """Every local of every library frame in the traceback, as a verbose traceback would print them."""
    seen: list[str] = []
    te: traceback.TracebackException | None = traceback.TracebackException.from_exception(exc, capture_locals=True)
    while te is not None:
        seen += [repr(f.locals) for f in te.stack if "qxt_pandas" in f.filename]
        te = te.__cause__ or te.__context__
    return "\n".join(seen)


def test_the_key_is_in_no_frame_local_of_a_failing_check(sim):
    sim.accounts[SECRET].balance = 0
    options = dict(apikey=SECRET, base_url="http://simulator", transport=SimulatorTransport(sim), progress=False)
    for call in (
        lambda: numbers(0, 2).qxt.check("mobile", concurrency=0, **options),
        lambda: numbers(0, 2).qxt.check("mobile", **options),
        lambda: numbers(0, 2)["mobile"].qxt.check(max_age=-5, **options),
        lambda: asyncio.run(numbers(0, 2).qxt.acheck("mobile", rate=float("nan"), **options)),
        lambda: qxt_pandas.Client(SECRET, timeout=-1),
    ):
        with pytest.raises((ValueError, E.QxtError)) as caught:
            call()
        ours = library_locals(caught.value)
        assert SECRET not in ours and "Secret('***')" in ours  # the locals were captured, the key wrapped


def test_claim_files_and_locks_are_cleaned_and_copies_are_independent(tmp_path):
    store = Checkpoint(tmp_path / "c.qxt", service="s")
    store.create()
    (store.path / "claim-1-999-dead.txt").write_text('{"pid": 999}\n13800000001\n')
    from qxt_pandas.stores.directory.claims import claim_numbers

    claim = asyncio.run(claim_numbers(store, ["13800000001"], None))
    assert claim.mine == ["13800000001"] and not (store.path / "claim-1-999-dead.txt").exists()
    claim.release()
    assert not list(store.path.glob("claim-*"))
    shutil.copytree(store.path, tmp_path / "copy.qxt")
    assert Checkpoint(tmp_path / "copy.qxt", service="s").answers().num_rows == 0
