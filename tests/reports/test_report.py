"""Split files, Excel out, receipts and the report: against the simulator over loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import openpyxl
import pandas as pd
import pyarrow as pa
import pytest
from conftest import POSTPAID_KEY, SAMPLE, SECRET, make_simulator, qxt, wait_for

import qxt_pandas
from qxt_pandas.command import outputs
from qxt_pandas.errors import CheckpointError
from qxt_pandas.results import NO_STATUS
from qxt_pandas.simulator import Faults, SimulatorTransport, serve


def test_split_files_partition_the_rows_exactly(tmp_path, service):
    _, url = service
    result = qxt("check", SAMPLE, "--column", "mobile", "--output", tmp_path / "out.csv", "--base-url", url,
                 "--split", "--budget", "1500")  # fmt: skip
    assert result.returncode == 5, result.stderr  # the budget leaves some unanswered: their own file
    whole = pd.read_csv(tmp_path / "out.csv", dtype=str, keep_default_na=False)
    parts = {p.name.split(".")[1]: pd.read_csv(p, dtype=str, keep_default_na=False)
             for p in tmp_path.glob("out.*.csv")}  # fmt: skip
    assert {"正常", "空号", "invalid", "unknown", "unanswered"} <= set(parts)
    assert sorted(c for part in parts.values() for c in part["customer_id"]) == sorted(whole["customer_id"])
    for outcome, part in parts.items():
        assert list(part.columns) == list(whole.columns)
        if outcome not in ("invalid", "unknown", "unanswered"):
            assert (part["Status"] == outcome).all() and (part["qxt_code"] == "0").all()
    assert set(parts["invalid"]["qxt_code"]) <= {"-100", "1", "-2", "-3"} and set(parts["unknown"]["qxt_code"]) == {
        "-4"
    }
    checked = pd.read_csv(tmp_path / "out.csv", dtype={"qxt_code": "Int16"}, keep_default_na=False, na_values=[""])
    in_python = checked.qxt.split()  # the same split from Python, in one line
    assert {k: len(v) for k, v in in_python.items()} == {k: len(v) for k, v in parts.items()}


def test_the_workbook_round_trips_with_numbers_as_text_and_a_frozen_header(tmp_path, service):
    _, url = service
    common = ("check", SAMPLE, "--column", "mobile", "--base-url", url, "--checkpoint", tmp_path / "ck")
    assert qxt(*common, "--output", tmp_path / "out.xlsx").returncode == 0
    assert qxt(*common, "--output", tmp_path / "out.parquet").returncode == 0
    book = pd.read_excel(tmp_path / "out.xlsx", dtype=str, keep_default_na=False)
    ref = pd.read_parquet(tmp_path / "out.parquet").astype(object)
    for column in ("customer_id", "name", "mobile", "Status", "Area", "Now_isp", "qxt_mobile", "qxt_error"):
        assert book[column].tolist() == ref[column].where(ref[column].notna(), "").astype(str).tolist(), column
    sheet = openpyxl.load_workbook(tmp_path / "out.xlsx", read_only=False).active
    assert sheet.freeze_panes == "A2"
    mobile = sheet.cell(2, list(book.columns).index("qxt_mobile") + 1)
    assert mobile.data_type == "s"  # text: Excel shows 13972565391, never 1.39E+10
    width = sheet.column_dimensions["B"].width  # names: Chinese, two units a character
    assert width >= 2 * max(len(n) for n in book["name"]) + 2


def test_a_workbook_continues_on_further_sheets(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "EXCEL_ROWS", 5)
    table = pa.table({"mobile": [f"139{i:08d}" for i in range(12)], "n": list(range(12))})
    out = outputs.AtomicWriter(tmp_path / "many.xlsx")
    out.open(table.schema)
    out.write(table)
    out.commit()
    book = openpyxl.load_workbook(tmp_path / "many.xlsx")
    assert book.sheetnames == ["checked", "checked (2)", "checked (3)"]
    assert [book[name].max_row for name in book.sheetnames] == [6, 6, 3]  # a header on each


def test_receipts_show_what_the_vendor_charged_for_answers_it_lost(tmp_path):
    sim = make_simulator(faults=Faults(truncated=0.06, reset=0.06, endpoints=frozenset({"status"})), seed=9)
    sim.accounts[SECRET].balance = 100_000
    df = pd.DataFrame({"mobile": [f"139{i:08d}" for i in range(300)]})
    with serve(sim) as url:
        df.qxt.check("mobile", apikey=SECRET, base_url=url, checkpoint=tmp_path / "r.qxt", progress=False,
                     retries=8, backoff=0.001)  # fmt: skip
    lost = sum(1 for charge in sim.ledger.charges if not charge.delivered)
    made = qxt_pandas.report(tmp_path / "r.qxt").to_dict()
    assert lost > 0 and made["charged"] - made["delivered"] == lost == made["charged_minus_delivered"]
    (run,) = made["runs"]
    assert run["balance_before"] - run["balance_after"] == len(sim.ledger) and run["paid"] == made["delivered"]
    assert f"charged for {lost} answer(s) that never arrived" in made["warning"]


def test_a_postpaid_account_reports_its_balance_going_negative(tmp_path, sim):
    df = pd.DataFrame({"mobile": [f"139{i:08d}" for i in range(40)]})
    df.qxt.check("mobile", apikey=POSTPAID_KEY, base_url="http://127.0.0.1", transport=SimulatorTransport(sim),
                 checkpoint=tmp_path / "p.qxt", progress=False)  # fmt: skip
    (run,) = qxt_pandas.report(tmp_path / "p.qxt").runs
    assert run["fee_type"] == "后付费" and run["balance_before"] == 0 and run["balance_after"] < 0
    assert run["charged"] == len(sim.ledger) == run["delivered"]


def test_a_killed_run_leaves_a_true_receipt_recovered_from_its_journal(tmp_path):
    sim = make_simulator(latency=0.03)
    sim.accounts[SECRET].balance = 100_000
    checkpoint = tmp_path / "k.qxt"
    child_code = (
        "import sys, pandas as pd, qxt_pandas\n"
        "df = pd.DataFrame({'mobile': [f'139{i:08d}' for i in range(400)]})\n"
        "df.qxt.check('mobile', base_url=sys.argv[1], checkpoint=sys.argv[2], concurrency=4, progress=False)\n"
    )
    with serve(sim) as url:
        child = subprocess.Popen([sys.executable, "-c", child_code, url, str(checkpoint)],
                                 env={**os.environ, "QXT_APIKEY": SECRET})  # fmt: skip
        assert wait_for(lambda: len(sim.ledger) >= 30 or child.poll() is not None)
        child.send_signal(signal.SIGKILL)
        child.wait()
        (started,) = qxt_pandas.report(checkpoint).runs
        assert "ended" not in started and "no end recorded" in str(qxt_pandas.report(checkpoint))
        assert qxt_pandas.stores.directory.store.Checkpoint(checkpoint, service="127.0.0.1").compact()
    (recovered,) = qxt_pandas.report(checkpoint).runs
    stored = qxt_pandas.report(checkpoint).stored
    assert recovered["recovered"] and sum(recovered["by_code"].values()) == stored and stored > 0


def test_the_html_report_is_self_contained_and_holds_the_counts(tmp_path, service):
    _, url = service
    assert qxt("check", SAMPLE, "--column", "mobile", "--output", tmp_path / "o.csv", "--base-url", url).returncode == 0
    result = qxt("report", tmp_path / "o.qxt", "--html", tmp_path / "report.html", "--json")
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    assert {"by_status", "by_carrier", "ported", "runs", "delivered", "charged"} <= set(made)
    assert {"started", "paid", "balance_before", "balance_after"} <= set(made["runs"][0])
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"https?://|<script|src=|@import|url\(", page)  # no network, no script
    assert ">正常 · normal<" in page and ">中国移动<" in page  # labels are text for the browser, Chinese first
    assert f"{made['by_status']['正常']:,}" in page and 'name="viewport"' in page
    text = qxt("report", tmp_path / "o.qxt")
    assert text.returncode == 0 and "by Status: 正常" in text.stdout


def test_the_report_of_a_missing_empty_or_damaged_checkpoint_is_a_clear_message(tmp_path):
    missing = qxt("report", tmp_path / "nowhere")
    assert missing.returncode == 2 and "not a qxt checkpoint" in missing.stderr
    (tmp_path / "bad.qxt").mkdir()
    (tmp_path / "bad.qxt" / "meta.json").write_text("[]")
    damaged = qxt("report", tmp_path / "bad.qxt")
    assert damaged.returncode == 2 and "meta.json is damaged" in damaged.stderr
    qxt_pandas.stores.directory.store.Checkpoint(tmp_path / "empty.qxt", service="127.0.0.1").create()
    empty = qxt_pandas.report(tmp_path / "empty.qxt")
    assert empty.answered == 0 and "no answers yet" in str(empty) and "qxt-bars" in empty._repr_html_()
    with pytest.raises(CheckpointError):
        qxt_pandas.report(tmp_path / "nowhere")


def test_plan_shows_as_a_table_in_jupyter(sim):
    plan = pd.DataFrame({"mobile": ["13972565391", "无"]}).qxt.plan(
        "mobile", apikey=SECRET, base_url="http://127.0.0.1", transport=SimulatorTransport(sim))  # fmt: skip
    page = plan._repr_html_()
    assert "<table>" in page and "to query" in page and "covers the run" in page


def test_a_reports_counts_are_made_where_the_answers_are_and_count_each_numbers_newest_answer(store):
    """Issue 32: a report counts with the store (GROUP BY, or a batch at a time), not from every answer loaded,
    and gives the counts the answers give: the newest answer per number, spilled answers included."""
    from qxt_pandas.stores import open_store
    from qxt_pandas.stores.journal import Answer
    from qxt_pandas.stores.tallies import tally

    statuses = ["正常", "空号", "停机", None]
    opened = open_store(store, service="127.0.0.1")
    try:
        opened.bind(simulator=True)
        with opened.writer() as writer:
            for i in range(700):
                code = -4 if i % 9 == 0 else 0
                writer.append(Answer(f"139{i:08d}", code, statuses[i % 4] if code == 0 else None,
                                     "湖北-宜昌" if i % 3 else "广东-深圳", i % 5 == 0, "中国移动",
                                     ["中国移动", "中国电信"][i % 2], None, 1.7e9 + i))  # fmt: skip
        if hasattr(opened, "compact"):
            opened.compact()  # the directory: a part, then a journal below
        with opened.writer() as writer:  # 200 numbers answered again, later, otherwise
            for i in range(0, 400, 2):
                writer.append(Answer(f"139{i:08d}", 0, "沉默号", "", True, "中国联通", "中国联通", None, 1.8e9 + i))
        newest = opened.answers()
        counted = opened.tallies()
    finally:
        opened.close()
    assert newest.num_rows == 700 and counted["count"].to_pylist() and sum(counted["count"].to_pylist()) == 700
    expected = {tuple(row.values()) for row in tally(newest).to_pylist()}
    assert {tuple(row.values()) for row in counted.to_pylist()} == expected
    made = qxt_pandas.report(store)
    frame = newest.to_pandas()
    answered = frame[frame["code"] == 0]
    assert made.stored == 700 and made.answered == len(answered) and made.by_status["沉默号"] == 200
    assert made.by_status == {k: int(v) for k, v in answered["Status"].fillna(NO_STATUS).value_counts().items()}
    assert made.by_carrier == {k: int(v) for k, v in answered["Now_isp"].value_counts().items()}
    assert made.ported == int(answered["Is_MNP"].sum()) and made.by_code["-4"] == int((frame["code"] == -4).sum())
    provinces = answered["Area"].str.split("-").str[0]
    assert made.by_province.get("", 0) == int((provinces == "").sum())  # an empty Area is its own, as before
