"""Ordinary accidents destroy nothing and lose nothing (issue 17).

Real ``qxt`` processes against the simulator over loopback, its ledger saying
what was paid; the user's own files are compared byte for byte before and after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import QXT, SECRET, make_simulator, qxt, wait_for
from test_cli_failures import MOBILES, check, export

import qxt_pandas
from qxt_pandas import errors as E
from qxt_pandas.command.outputs import AtomicWriter, SplitWriter, Targets
from qxt_pandas.results import OUTPUT_TYPES
from qxt_pandas.simulator import serve
from qxt_pandas.stores.directory.store import Checkpoint


def snapshot(directory) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


# -- item 1: a checkpoint never takes a user's directory for its own ----------------------------


def test_a_spark_output_directory_is_refused_as_a_checkpoint_and_left_untouched(tmp_path, service):
    sim, url = service
    spark = tmp_path / "spark-out"
    spark.mkdir()
    for k in range(2):
        pq.write_table(pa.table({"mobile": MOBILES[k::2]}), spark / f"part-0000{k}-8f3e1a2b-1c2d-c000.snappy.parquet")
    (spark / "_SUCCESS").write_bytes(b"")
    before = snapshot(spark)
    result = check(export(tmp_path / "in.csv"), tmp_path / "out.csv", url, "--checkpoint", spark)
    assert result.returncode == 2 and "not a qxt checkpoint" in result.stderr and "_SUCCESS" in result.stderr
    assert snapshot(spark) == before and len(sim.ledger) == 0 and not (tmp_path / "out.csv").exists()


def test_the_working_directory_is_never_a_checkpoint(tmp_path, service):
    sim, url = service
    work = tmp_path / "work"
    work.mkdir()
    source = export(work / "in.csv")
    (work / "claim-2024-q3.txt").write_text("my notes")
    (work / "journal-2024.jsonl").write_text('{"day": 1}\n')
    before = snapshot(work)
    result = check(source, work / "out.csv", url, "--checkpoint", ".", cwd=work)
    assert result.returncode == 2 and "not a qxt checkpoint" in result.stderr
    assert snapshot(work) == before and len(sim.ledger) == 0
    with pytest.raises(ValueError, match="empty path"):
        qxt_pandas.CheckOptions(checkpoint="")


def test_a_store_reads_and_removes_only_its_own_files(tmp_path):
    store = Checkpoint(tmp_path / "c.qxt", service="simulator")
    store.create()
    theirs = {"part-00000-8f3e1a2b-1c2d-c000.snappy.parquet": b"PAR1", "claim-notes.txt": b"x",
              "journal-2024.jsonl": b'{"a": 1}\n', ".tmp-mine": b"y"}  # fmt: skip
    for name, data in theirs.items():
        (store.path / name).write_bytes(data)
    assert store.answers().num_rows == 0
    store.sweep()
    store.compact()
    assert {n: (store.path / n).read_bytes() for n in theirs} == theirs
    assert not (store.path / "damaged").exists()


# -- item 2: a run writes no file it must not -----------------------------------------------------


def test_split_never_overwrites_the_input_or_a_users_file(tmp_path, service):
    sim, url = service
    source = export(tmp_path / "leads.正常.csv")
    mine = tmp_path / "leads.invalid.csv"
    mine.write_text("my own list\n")
    before = snapshot(tmp_path)
    result = check(source, tmp_path / "leads.csv", url, "--split")
    assert result.returncode == 2 and len(sim.ledger) == 0
    assert "leads.正常.csv (it is the input file)" in result.stderr
    assert "leads.invalid.csv (it exists and was not written by qxt" in result.stderr
    assert snapshot(tmp_path) == before


def test_an_existing_file_is_replaced_only_with_overwrite_or_when_qxt_wrote_it(tmp_path, service):
    sim, url = service
    source, output = export(tmp_path / "in.csv"), tmp_path / "out.csv"
    output.write_text("somebody's report\n")
    refused = check(source, output, url)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr and len(sim.ledger) == 0
    assert output.read_text() == "somebody's report\n"
    assert check(source, output, url, "--overwrite").returncode == 0
    assert check(source, output, url).returncode == 0  # qxt's own output: a re-run replaces it


def test_the_output_may_not_be_the_checkpoint(tmp_path, service):
    sim, url = service
    result = check(export(tmp_path / "in.csv"), tmp_path / "o.csv", url, "--checkpoint", tmp_path / "o.csv")
    assert result.returncode == 2 and "it is the checkpoint" in result.stderr and len(sim.ledger) == 0


def test_a_directory_named_like_a_split_file_is_refused_before_paying(tmp_path, service):
    sim, url = service
    (tmp_path / "out.空号.csv").mkdir()
    result = check(export(tmp_path / "in.csv"), tmp_path / "out.csv", url, "--split")
    assert result.returncode == 2 and "it is a directory" in result.stderr and len(sim.ledger) == 0


# -- item 3: distinct outcomes, distinct files; rows add up -------------------------------------


def _split(tmp_path, statuses: list[str]) -> SplitWriter:
    schema = pa.schema([pa.field("mobile", pa.string()), *(pa.field(n, t) for n, t in OUTPUT_TYPES.items())])
    n = len(statuses)
    columns = {"mobile": ["13900000000"] * n, "Status": statuses, "Area": [None] * n, "Is_MNP": [None] * n,
               "Init_isp": [None] * n, "Now_isp": [None] * n, "qxt_mobile": ["13900000000"] * n,
               "qxt_code": [0] * n, "qxt_error": [None] * n, "qxt_checked_at": [None] * n}  # fmt: skip
    table = pa.table({k: pa.array(v, schema.field(k).type) for k, v in columns.items()})
    main = AtomicWriter(tmp_path / "checked.csv")
    main.open(schema)
    parts = SplitWriter(main, schema, targets=Targets())
    main.write(table)
    parts.write(table)
    main.commit()
    parts.commit()
    return parts


def test_statuses_that_sanitise_alike_get_distinct_files(tmp_path):
    statuses = ["a/b", "a_b", "a:b", "a_b", "invalid", "no-status", "x" * 200, "正常", "ab\x01c"]
    parts = _split(tmp_path, statuses)
    files = {outcome: writer.path for outcome, writer in parts.writers.items()}
    assert len(set(files.values())) == len(files) == len(set(statuses))
    assert files["a_b"].name == "checked.a_b.csv" and files["正常"].name == "checked.正常.csv"
    assert all(len(p.name.encode()) < 200 for p in files.values())
    assert not any(p.name in ("checked.invalid.csv", "checked.no-status.csv") for p in files.values())
    rows = sum(len(p.read_text(encoding="utf-8").splitlines()) - 1 for p in files.values())
    assert rows == len(statuses)


def test_a_users_file_in_the_way_of_a_new_status_gets_a_distinct_name(tmp_path):
    (tmp_path / "checked.沉默号.csv").write_text("mine\n")
    parts = _split(tmp_path, ["沉默号"])
    assert (tmp_path / "checked.沉默号.csv").read_text() == "mine\n"
    assert parts.writers["沉默号"].path.name.startswith("checked.沉默号~")


def test_the_accessor_refuses_a_foreign_directory_too(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(E.CheckpointError, match="not a qxt checkpoint"):
        pd.DataFrame({"m": MOBILES}).qxt.check("m", apikey=SECRET, checkpoint=tmp_path, progress=False,
                                               base_url="http://127.0.0.1:9")  # fmt: skip
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_qxt_report_of_a_foreign_directory_touches_nothing(tmp_path):
    (tmp_path / "a.csv").write_text("x")
    result = qxt("report", tmp_path)
    assert result.returncode == 2 and snapshot(tmp_path) == {"a.csv": b"x"}


# -- items 6 and 11: what a cell holds can neither crash an output after paying nor run in Excel --


HOSTILE = ['=HYPERLINK("http://x","click")', "=1+1", "=cmd|' /C calc'!A0", "ab\x01c", "@SUM(A1)", "+86 13900000001"]


def test_xlsx_holds_hostile_cells_as_text_and_never_fails_after_paying(tmp_path, service):
    from openpyxl import load_workbook

    _sim, url = service
    source = tmp_path / "in.csv"
    notes = [HOSTILE[k % len(HOSTILE)] for k in range(len(MOBILES))]
    pd.DataFrame({"mobile": MOBILES, "note": notes}).to_csv(source, index=False)
    result = check(source, tmp_path / "out.xlsx", url)
    assert result.returncode == 0, result.stderr
    cells = [c for row in load_workbook(tmp_path / "out.xlsx").worksheets[0].iter_rows() for c in row]
    assert not any(c.data_type == "f" for c in cells)
    notes = {c.value for c in cells if c.column == 2}
    assert "=1+1" in notes and "abc" in notes and not any("\x01" in str(v) for v in notes)


def test_excel_friendly_csv_defuses_formulas(tmp_path, service):
    _sim, url = service
    source = tmp_path / "in.csv"
    source.write_text("mobile,note\n" + "".join(f"{m},=1+{k}\n" for k, m in enumerate(MOBILES)), encoding="utf-8")
    assert check(source, tmp_path / "out.csv", url, "--excel-friendly").returncode == 0
    lines = (tmp_path / "out.csv").read_text(encoding="utf-8-sig").splitlines()[1:]
    assert all(",\"'=1+" in line for line in lines)
    assert check(source, tmp_path / "plain.csv", url).returncode == 0  # without the flag: the cells as they are
    assert ',"=1+0"' in (tmp_path / "plain.csv").read_text(encoding="utf-8")


# -- item 12: a simulator run and a real run on one fresh checkpoint: one binds it, the other is refused --


def _bind(path, simulator: bool, barrier, results) -> None:
    barrier.wait()
    try:
        Checkpoint(path, service="127.0.0.1").bind(simulator)
        results.put(("bound", simulator))
    except E.CheckpointError:
        results.put(("refused", simulator))


def test_two_first_runs_of_different_kinds_never_both_bind(tmp_path):
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    for attempt in range(20):
        path = tmp_path / f"c{attempt}.qxt"
        barrier, results = fork.Barrier(2), fork.Queue()
        workers = [fork.Process(target=_bind, args=(path, kind, barrier, results)) for kind in (True, False)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        outcomes = sorted(results.get(timeout=5) for _ in workers)
        (bound,) = [kind for what, kind in outcomes if what == "bound"]
        assert [what for what, _ in outcomes].count("refused") == 1
        assert json.loads((path / "meta.json").read_text())["simulator"] is bound


# -- items 4 and 7: Ctrl-C and SIGTERM keep what was in flight, and the receipt says what was sent ----


def _started(tmp_path, url: str, *more: object) -> tuple[subprocess.Popen, Path]:
    from test_cli_failures import SECRET as KEY

    source = tmp_path / "in.csv"
    pd.DataFrame({"mobile": [f"139{i:08d}" for i in range(1500)]}).to_csv(source, index=False)
    env = {**os.environ, "QXT_APIKEY": KEY}
    args = ["check", source, "--column", "mobile", "--output", tmp_path / "out.parquet", "--checkpoint",
            tmp_path / "c.qxt", "--base-url", url, "--progress", "log", *more]  # fmt: skip
    child = subprocess.Popen([*QXT, *map(str, args)], env=env,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    return child, source


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_keeps_every_answer_in_flight_and_a_rerun_pays_nothing_twice(tmp_path, sig):
    sim = make_simulator(latency=0.3)
    sim.accounts[SECRET].balance = 100_000
    with serve(sim) as url:
        child, source = _started(tmp_path, url)
        assert wait_for(lambda: len(sim.ledger) >= 150, timeout=60)
        child.send_signal(sig)
        err = child.communicate(timeout=60)[1]
        assert child.returncode == 130 and "finishing" in err and "in flight" in err
        charged = set(sim.ledger.paid(SECRET))
        stored = set(Checkpoint(tmp_path / "c.qxt", service="127.0.0.1").answers()["mobile"].to_pylist())
        assert charged <= stored  # every answer the vendor charged for is kept
        receipt = [json.loads(line) for line in (tmp_path / "c.qxt" / "receipts.jsonl").read_text().splitlines()]
        end = receipt[-1]
        assert end["stopped"] == "interrupted" and end["paid"] == len(charged) and end["requests"] >= len(charged)
        assert check(source, tmp_path / "out.parquet", url, "--checkpoint", tmp_path / "c.qxt").returncode == 0
    assert sim.ledger.paid_twice() == {}


def test_a_second_interrupt_abandons_at_once_and_says_what_may_be_charged(tmp_path):
    sim = make_simulator(latency=3.0)  # answers slower than a person's patience
    sim.accounts[SECRET].balance = 100_000
    with serve(sim) as url:
        child, _ = _started(tmp_path, url, "--concurrency", "16")
        assert wait_for(lambda: sim.in_flight >= 8, timeout=60)
        child.send_signal(signal.SIGINT)
        started = time.monotonic()
        deadline = started + 10
        while child.poll() is None and time.monotonic() < deadline:  # the first may land before the handler
            child.send_signal(signal.SIGINT)
            if wait_for(lambda: child.poll() is not None, timeout=0.5):
                break
        err = child.communicate(timeout=30)[1]
    assert child.returncode == 130 and time.monotonic() - started < 5
    assert "abandoned" in err and "may charge" in err


# -- item 5: a suspended process reads the answers that arrived; it does not pay for them again ------


def test_time_suspended_does_not_count_against_a_requests_timeout():
    import asyncio

    from conftest import GOOD

    from qxt_pandas import AsyncClient

    sim = make_simulator(latency=0.2)

    async def suspended_mid_request(url: str):
        async with AsyncClient(SECRET, base_url=url, timeout=1.0, retries=0) as client:
            task = asyncio.create_task(client.status(GOOD))
            deadline = time.monotonic() + 10
            while sim.requests_by_path["/ssphone_status"] == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            time.sleep(2.5)  # the loop runs nothing for longer than the timeout: what Ctrl-Z or SIGSTOP does
            return await task

    with serve(sim) as url:
        answer = asyncio.run(suspended_mid_request(url))
    assert answer.status is not None and sim.requests_by_path["/ssphone_status"] == 1 and len(sim.ledger) == 1


def test_a_request_that_never_answers_still_times_out():
    import asyncio

    from conftest import GOOD

    from qxt_pandas import AsyncClient
    from qxt_pandas.simulator import Faults

    sim = make_simulator(faults=Faults(hang=1.0), hang_seconds=30)

    async def ask(url: str):
        async with AsyncClient(SECRET, base_url=url, timeout=0.5, retries=0) as client:
            started = time.monotonic()
            with pytest.raises(E.ConnectionFailedError, match="timed out"):
                await client.status(GOOD)
            return time.monotonic() - started

    with serve(sim) as url:
        assert 0.4 < asyncio.run(ask(url)) < 3


# -- items 8 and 9: no wait without end --------------------------------------------------------------


def test_a_hung_run_holding_numbers_is_waited_for_with_word_and_within_patience(tmp_path, capsys):
    script = (
        "import sys, asyncio, qxt_pandas.stores.directory.claims as c, qxt_pandas.stores.directory.store as k\n"
        "store = k.Checkpoint(sys.argv[1], service='127.0.0.1')\n"
        "claim = asyncio.run(c.claim_numbers(store, sys.argv[2:], None))\n"
        "print('claimed', flush=True); sys.stdin.read()\n"
    )
    held = MOBILES[:5]
    holder = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "c.qxt"), *held],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "claimed"
        holder.send_signal(signal.SIGSTOP)  # alive to the kernel, its claim held, never finishing
        sim = make_simulator()
        with serve(sim) as url:
            started = time.monotonic()
            out = pd.DataFrame({"m": MOBILES}).qxt.check("m", apikey=SECRET, base_url=url, patience=1.5,
                                                         checkpoint=tmp_path / "c.qxt", progress="log")  # fmt: skip
        assert time.monotonic() - started < 15
    finally:
        holder.send_signal(signal.SIGCONT)
        holder.kill()
        holder.wait()
    left = out[out["m"].isin(held)]
    assert left["qxt_code"].isna().all() and left["qxt_error"].str.contains("another run").all()
    assert out[~out["m"].isin(held)]["qxt_code"].notna().all()
    err = capsys.readouterr().err
    assert "waiting for another run" in err and "gave up waiting" in err


def test_a_long_retry_after_is_capped_and_bounded_by_patience(tmp_path):
    from qxt_pandas.service.client import MAX_RETRY_AFTER, retry_after

    assert retry_after("100") == MAX_RETRY_AFTER == 60 and retry_after("nan") is None and retry_after("3") == 3
    sim = make_simulator(capacity=0, throttle=503, retry_after=100)  # refuses everything, asking for 100 s
    with serve(sim) as url:
        started = time.monotonic()
        result = check(export(tmp_path / "in.csv"), tmp_path / "out.csv", url, "--patience", "2")
    assert result.returncode == 5 and time.monotonic() - started < 20
    assert "Retry-After" in result.stderr and len(sim.ledger) == 0


# -- item 7: receipts of runs at once, and of a killed run, state the money truthfully ---------------


def test_runs_at_once_share_one_bill_that_matches_the_ledger(tmp_path):
    import asyncio

    sim = make_simulator(latency=0.05)
    sim.accounts[SECRET].balance = 100_000
    frame = pd.DataFrame({"m": [f"139{i:08d}" for i in range(600)]})

    async def three(url: str):
        return await asyncio.gather(*(frame.qxt.acheck("m", apikey=SECRET, base_url=url, progress=False,
                                                       checkpoint=tmp_path / "c.qxt") for _ in range(3)))  # fmt: skip

    with serve(sim) as url:
        asyncio.run(three(url))
    made = qxt_pandas.report(tmp_path / "c.qxt")
    assert sim.ledger.paid_twice() == {} and made.charged == len(sim.ledger) == made.delivered
    assert made.warning() == "" and all(run.get("shared") for run in made.runs)


def test_a_killed_runs_charge_is_recovered_from_the_next_runs_balance(tmp_path):
    from qxt_pandas.stores.receipts import RECEIPTS

    lines = [
        {"run": "a", "event": "start", "started": "2026-12-01T10:00:00+0000", "fee_type": "预付费",
         "balance_before": 1000, "journal": "journal-1-1-a.jsonl"},
        {"run": "a", "event": "end", "ended": None, "recovered": True, "by_code": {"0": 344}, "paid": 344,
         "balance_after": None, "stopped": "the run ended without its record (killed?)"},
        {"run": "b", "event": "start", "started": "2026-12-01T11:00:00+0000", "fee_type": "预付费",
         "balance_before": 529, "journal": "journal-2-2-b.jsonl"},
        {"run": "b", "event": "end", "ended": "2026-12-01T11:05:00+0000", "by_code": {"0": 100}, "paid": 100,
         "balance_after": 429, "stopped": "finished"},
    ]  # fmt: skip
    store = Checkpoint(tmp_path / "c.qxt", service="simulator")
    store.create()
    (store.path / RECEIPTS).write_text("".join(json.dumps(line) + "\n" for line in lines))
    made = qxt_pandas.report(store.path)
    killed = made.runs[0]
    assert killed["charged"] == 471 and killed["charged_from"] == "the next run's balance_before"
    assert made.to_dict()["charged_minus_delivered"] == 127 and "127" in made.warning()
