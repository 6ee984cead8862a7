"""Every answer in a shape the vendor's document shows is kept, paid for once, and never asked again."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import SECRET, make_simulator, qxt

import qxt_pandas
from qxt_pandas import errors as E
from qxt_pandas.service._secret import Secret
from qxt_pandas.service.protocol import Balance, PhoneStatus, parse_balance, parse_status
from qxt_pandas.simulator import SimulatorTransport, serve

VENDOR_DOC = Path(__file__).resolve().parents[3] / "shared" / "vendor" / "qxt-phone-check-interface.txt"
STATUS_AS_PRINTED = """{
code: 0,
reason: "Succ",
result: {
  Mobile: "13972565391",
  Status: "正常",
  Area: "湖北-宜昌",
  Is_MNP: "1",
  Init_isp: "中国移动",
  Now_isp: "中国电信"
}
}"""
BALANCE_AS_PRINTED = """{

"code": 0,
"reason": "Succ",
"result":
  {
    "feeType": "预付费",
    "balance": "12048",
  }
}"""
DOCUMENTED = PhoneStatus("13972565391", "正常", "湖北-宜昌", True, "中国移动", "中国电信")


def test_the_examples_are_the_documents_own():
    if not VENDOR_DOC.exists():
        pytest.skip("the vendor's document is not beside this checkout")
    text = VENDOR_DOC.read_text(encoding="utf-8")
    assert STATUS_AS_PRINTED in text
    # the balance example is split by a stray code fence in the document
    squeeze = lambda s: re.sub(r"[\s`]+", "", s)  # noqa: E731
    assert squeeze(BALANCE_AS_PRINTED) in squeeze(text)


def test_answers_exactly_as_the_document_prints_them():
    assert parse_status(200, STATUS_AS_PRINTED.encode()) == DOCUMENTED
    assert parse_balance(200, BALANCE_AS_PRINTED.encode()) == Balance("预付费", 12048)


@pytest.mark.parametrize(
    "raw",
    [
        "{'code': 0, 'reason': 'Succ', 'result': {'Mobile': '13972565391', 'Status': '正常', 'Area': '湖北-宜昌', "
        "'Is_MNP': 1, 'Init_isp': '中国移动', 'Now_isp': '中国电信'}}",  # single quotes
        '{"code":0,"reason":"Succ","result":{"Mobile":"13972565391","Status":"正常","Area":"湖北-宜昌","Is_MNP":"1",'
        '"Init_isp":"中国移动","Now_isp":"中国电信",},}',  # trailing commas
        "\ufeff{code: 0, reason: Succ, result: {Mobile: 13972565391, Status: 正常, Area: 湖北-宜昌, Is_MNP: true, "
        "Init_isp: 中国移动, Now_isp: 中国电信}}",  # BOM, nothing quoted
    ],
)
def test_lenient_shapes(raw):
    assert parse_status(200, raw.encode()) == DOCUMENTED


@pytest.mark.parametrize(
    ("encoding", "content_type"),
    [
        ("gbk", "text/html;charset=GBK"),
        ("gbk", "text/html"),
        ("gb2312", "application/json; charset=gb2312"),
        ("utf-16", "text/plain"),
        ("utf-8", None),
    ],
)
def test_the_body_is_read_in_its_charset(encoding, content_type):
    raw = STATUS_AS_PRINTED.encode(encoding)
    assert parse_status(200, raw, content_type=content_type) == DOCUMENTED


def test_a_gbk_body_labelled_utf8_is_still_read():
    assert parse_status(200, STATUS_AS_PRINTED.encode("gbk"), content_type="text/html;charset=UTF-8") == DOCUMENTED


def test_an_unreadable_code_0_answer_is_charged_and_kept_without_the_key_or_the_number():
    raw = (f'{{"code":0,"reason":"Succ","apikey":"{SECRET}","result":{{"Mobile":"13972565391",<br />'
           "<b>Warning</b>: mysqli_fetch_assoc()").encode()  # fmt: skip
    with pytest.raises(E.ChargedUnreadableError) as caught:
        parse_status(200, raw, mobile="13972565391", secret=Secret(SECRET))
    error = caught.value
    assert not error.retryable and not error.terminal and isinstance(error, E.NumberError)
    assert error.code == E.CHARGED_UNREADABLE and "Warning" in error.reason
    assert SECRET not in error.reason and SECRET not in str(error)
    assert "13972565391" not in error.reason and "139****5391" in error.reason
    assert "retry_unreadable" in str(error)


@pytest.mark.parametrize(
    "raw",
    [b'{"code', b"<html><body>502 Bad Gateway</body></html>", b'{"code": -4, "reason": "x", "res', b""],
)
def test_a_body_with_no_code_0_stays_transient(raw):
    with pytest.raises(E.UnparsableResponseError) as caught:
        parse_status(200, raw)
    assert caught.value.retryable


def test_an_unreadable_code_0_on_an_http_error_is_not_taken_as_charged():
    with pytest.raises(E.HttpStatusError):
        parse_status(502, b'{"code": 0, <html>')


# -- end to end: 1,000 numbers against a server answering in each shape ----------------------------

NUMBERS = [f"139{i:08d}" for i in range(1000)]


def _check(sim, checkpoint, **more) -> pd.DataFrame:
    return pd.DataFrame({"mobile": NUMBERS}).qxt.check(
        "mobile", apikey=SECRET, base_url="http://simulator", transport=SimulatorTransport(sim), progress=False,
        checkpoint=checkpoint, backoff=0, **more,
    )  # fmt: skip


@pytest.mark.parametrize("shape", ["json", "document", "empty", "gbk", "unreadable", "mixed"])
def test_each_shape_pays_once_per_number_and_a_rerun_asks_nothing(tmp_path, shape):
    sim = make_simulator(shape=shape)
    sim.accounts[SECRET].balance = 10_000
    first = _check(sim, tmp_path / "c.qxt")
    assert sim.requests_by_path["/ssphone_status"] == len(NUMBERS)  # not one more
    assert first["qxt_code"].notna().all()  # every number has its answer (or its unreadable mark)
    unreadable = first["qxt_code"] == E.CHARGED_UNREADABLE
    if shape in ("json", "document", "empty", "gbk"):
        assert not unreadable.any()
    if shape == "unreadable":
        assert unreadable.sum() == len(sim.ledger)  # every charged answer is kept, as unreadable
    if shape == "empty":
        no_status = (first["qxt_code"] == 0) & first["Status"].isna()
        assert no_status.sum() > 50 and first.loc[no_status, "qxt_error"].isna().all()
    assert sim.ledger.paid_twice() == {}
    again = _check(sim, tmp_path / "c.qxt")
    assert sim.requests_by_path["/ssphone_status"] == len(NUMBERS)  # the re-run sends none
    pd.testing.assert_frame_equal(first.drop(columns="qxt_checked_at"), again.drop(columns="qxt_checked_at"))


def test_readable_shapes_give_the_same_answers_as_strict_json(tmp_path):
    strict = _check(make_simulator(shape="json"), tmp_path / "a.qxt")
    for shape in ("document", "gbk"):
        other = _check(make_simulator(shape=shape), tmp_path / f"{shape}.qxt")
        pd.testing.assert_frame_equal(strict.drop(columns="qxt_checked_at"), other.drop(columns="qxt_checked_at"))


def test_retry_unreadable_asks_those_again_on_purpose(tmp_path):
    sim = make_simulator(shape="mixed")
    first = _check(sim, tmp_path / "c.qxt")
    unreadable = int((first["qxt_code"] == E.CHARGED_UNREADABLE).sum())
    assert unreadable > 0
    sim.shape = "json"
    sim.accounts[SECRET].balance += unreadable
    again = _check(sim, tmp_path / "c.qxt", retry_unreadable=True)
    assert sim.requests_by_path["/ssphone_status"] == len(NUMBERS) + unreadable
    assert not (again["qxt_code"] == E.CHARGED_UNREADABLE).any()
    _check(sim, tmp_path / "c.qxt", retry_unreadable=True)  # now answered: nothing left to retry
    assert sim.requests_by_path["/ssphone_status"] == len(NUMBERS) + unreadable


def test_the_report_and_receipts_count_unreadable_and_no_status_answers(tmp_path):
    sim = make_simulator(shape="mixed")
    first = _check(sim, tmp_path / "c.qxt")
    made = qxt_pandas.report(tmp_path / "c.qxt")
    unreadable = int((first["qxt_code"] == E.CHARGED_UNREADABLE).sum())
    no_status = int(((first["qxt_code"] == 0) & first["Status"].isna()).sum())
    assert unreadable > 0 and no_status > 0
    assert made.unreadable == unreadable and made.by_status["no-status"] == no_status
    (run,) = made.runs
    assert run["by_code"][str(E.CHARGED_UNREADABLE)] == unreadable == run["unreadable"]
    assert run["paid"] == len(sim.ledger) == run["charged"] == run["delivered"]  # nothing lost, nothing unpaid
    assert made.warning() == ""
    assert "charged, unreadable" in str(made)


def test_no_stored_byte_holds_the_key(tmp_path):
    sim = make_simulator(shape="unreadable")
    _check(sim, tmp_path / "c.qxt")
    stored = b"".join(p.read_bytes() for p in (tmp_path / "c.qxt").rglob("*") if p.is_file())
    assert SECRET.encode() not in stored and b"mysqli" in stored  # the abridged body is there, the key is not


def test_the_command_keeps_every_shape_and_says_how_many_are_unreadable(tmp_path):
    sim = make_simulator(shape="mixed")
    source = tmp_path / "in.csv"
    pd.DataFrame({"mobile": NUMBERS[:300]}).to_csv(source, index=False)
    with serve(sim) as url:
        args = ("check", source, "--column", "mobile", "--output", tmp_path / "out.csv", "--base-url", url, "--split")
        result = qxt(*args)
        assert result.returncode == 0, result.stderr
        out = pd.read_csv(tmp_path / "out.csv", dtype=str)
        unreadable = int((out["qxt_code"] == str(E.CHARGED_UNREADABLE)).sum())
        assert unreadable > 0 and f"{unreadable:,} rows have an answer that was charged but could not be read" in (
            result.stderr
        )
        assert len(pd.read_csv(tmp_path / "out.unreadable.csv")) == unreadable
        assert len(pd.read_csv(tmp_path / "out.no-status.csv")) == int(
            ((out["qxt_code"] == "0") & out["Status"].isna()).sum()
        )
        assert sim.requests_by_path["/ssphone_status"] == 300
        again = qxt(*args)
        assert again.returncode == 0, again.stderr
    assert sim.requests_by_path["/ssphone_status"] == 300
    receipts = [json.loads(line) for line in (tmp_path / "out.qxt" / "receipts.jsonl").read_text().splitlines()]
    assert sum(r.get("by_code", {}).get(str(E.CHARGED_UNREADABLE), 0) for r in receipts) == unreadable
