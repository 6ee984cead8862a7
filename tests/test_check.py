"""df.qxt.check / s.qxt.check: the contract, deduplication, resume, budget, stopping (in-process)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pandas as pd
import pytest
from conftest import EMPTY_KEY, FENCED_KEY, SECRET

import qxt_pandas  # noqa: F401 (registers .qxt)
from qxt_pandas import errors as E
from qxt_pandas.options import parse_age
from qxt_pandas.results import LOCAL_INVALID, RESULT_COLUMNS
from qxt_pandas.simulator import Faults, SimulatorTransport, answer
from qxt_pandas.stores.directory.store import Checkpoint

M = "13972565391"
NO_INFO = "17703560786"  # -4 in the simulator
SILENT = "17712986396"  # 沉默号: a status the document does not list
EMPTY_NUMBER = "18600628374"  # 空号


def numbers(n: int, start: int = 0) -> list[str]:
    return [f"138{i:08d}" for i in range(start, start + n)]


@pytest.fixture
def opts(sim, tmp_path):
    def make(**more):
        base = dict(apikey=SECRET, base_url="http://simulator", transport=SimulatorTransport(sim), progress=False,
                    backoff=0, checkpoint=tmp_path / "run.qxt")  # fmt: skip
        return {**base, **more}

    return make


def crm() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5, 6, 7, 8],
            "mobile": [M, "139-7256-5391", "无", NO_INFO, "+86 139 7256 5391", SILENT, "0755-26012345", EMPTY_NUMBER],
        },
        index=pd.Index(["a", "b", "b", "c", 9, 9, "d", "e"], dtype=object),
    )


def test_the_result_frame(sim, opts):
    df = crm()
    before = df.copy()
    out = df.qxt.check("mobile", **opts())
    pd.testing.assert_frame_equal(df, before)  # the input is never modified
    assert list(out.columns) == ["id", "mobile", *RESULT_COLUMNS]
    assert out.index.equals(df.index)
    pd.testing.assert_frame_equal(out[["id", "mobile"]], df)
    assert out["Status"].tolist()[:2] == ["正常", "正常"]
    assert out.loc["e", "Status"] == "空号"
    assert out["Status"].iloc[5] == "沉默号"  # kept verbatim
    assert out["qxt_code"].tolist() == [0, 0, LOCAL_INVALID, -4, 0, 0, LOCAL_INVALID, 0]
    assert out["qxt_error"].iloc[2] == "empty" and out["qxt_error"].iloc[6] == "landline"
    assert out["qxt_error"].iloc[3].startswith("未查询到")
    assert out["qxt_error"].iloc[[0, 1, 4, 5, 7]].isna().all()
    assert out["Is_MNP"].tolist()[:3] == [True, True, pd.NA]
    assert out["qxt_checked_at"].iloc[2] is pd.NaT and out["qxt_checked_at"].iloc[0].tzname() == "UTC"
    assert {str(out[c].dtype) for c in ("Status", "Area", "Init_isp", "Now_isp", "qxt_error")} == {"category"}
    assert (str(out["Is_MNP"].dtype), str(out["qxt_code"].dtype)) == ("boolean", "Int16")


def test_each_number_is_asked_once_and_invalid_values_never(sim, opts):
    crm().qxt.check("mobile", **opts())
    assert sim.ledger.paid(SECRET) == {M: 1, SILENT: 1, EMPTY_NUMBER: 1}
    assert sim.requests == 1 + 4 + 1  # the balance, one request per unique valid number, the balance (receipt)


def test_a_second_run_pays_for_nothing_and_a_new_file_only_for_new_numbers(sim, opts):
    first = crm().qxt.check("mobile", **opts())
    again = crm().qxt.check("mobile", **opts())
    pd.testing.assert_frame_equal(again, first)
    # Nothing to ask: the only request is a free balance read that confirms the service is a
    # simulator, because simulated answers are never served to anything else.
    assert sim.requests == 7 and len(sim.ledger) == 3
    other = pd.DataFrame({"mobile": [M, "13800000001", "13800000002"]})
    other.qxt.check("mobile", **opts())
    assert sim.ledger.paid_twice() == {} and len(sim.ledger) == 5


def test_max_age_asks_old_answers_again(sim, opts):
    df = pd.DataFrame({"mobile": [M]})
    df.qxt.check("mobile", **opts())
    df.qxt.check("mobile", **opts(max_age="1d"))
    assert len(sim.ledger) == 1
    time.sleep(0.01)
    df.qxt.check("mobile", **opts(max_age=0.001))
    assert len(sim.ledger) == 2


@pytest.mark.parametrize(("text", "seconds"), [("90d", 90 * 86400), ("12h", 43200), ("30m", 1800), ("2w", 1209600),
                                               ("45s", 45), (7.5, 7.5), (None, None)])  # fmt: skip
def test_parse_age(text, seconds):
    assert parse_age(text) == seconds
    with pytest.raises(ValueError):
        parse_age("soon")


def test_a_checkpoint_from_another_service_is_refused(sim, opts, tmp_path):
    pd.DataFrame({"mobile": [M]}).qxt.check("mobile", **opts())
    with pytest.raises(E.CheckpointError, match=r"other\.example"):
        pd.DataFrame({"mobile": [M]}).qxt.check("mobile", **opts(base_url="http://other.example"))


def test_plan_counts_and_costs_nothing(sim, opts):
    df = crm()
    plan = df.qxt.plan("mobile", **opts())
    assert (plan.rows, plan.invalid, plan.duplicates, plan.unique, plan.in_checkpoint, plan.to_query) == (
        8,
        2,
        2,
        4,
        0,
        4,
    )
    assert (plan.balance, plan.fee_type, plan.covered) == (1000, "预付费", True)
    assert len(sim.ledger) == 0 and "to query" in str(plan)
    df.qxt.check("mobile", **opts())
    again = df.qxt.plan("mobile", **opts())
    assert (again.in_checkpoint, again.to_query) == (4, 0)


def test_budget_caps_paid_queries_and_the_next_run_continues(sim, opts):
    df = pd.DataFrame({"mobile": numbers(30)})
    out = df.qxt.check("mobile", **opts(budget=7, concurrency=8))
    assert sim.ledger.paid(SECRET).total() == 7
    assert (out["qxt_error"] == "not asked: budget reached").sum() == 30 - out["qxt_code"].notna().sum()
    rest = df.qxt.check("mobile", **opts())
    assert rest["qxt_code"].notna().all() and sim.ledger.paid_twice() == {}


def test_a_prepaid_balance_that_cannot_cover_the_run_is_refused_before_spending(sim, opts):
    sim.accounts[SECRET].balance = 5
    df = pd.DataFrame({"mobile": numbers(20)})
    with pytest.raises(E.InsufficientBalanceError, match="budget=5") as caught:
        df.qxt.check("mobile", **opts())
    assert len(sim.ledger) == 0 and "Nothing was spent" in str(caught.value)
    assert not df.qxt.plan("mobile", **opts()).covered
    out = df.qxt.check("mobile", **opts(budget=5))
    assert sim.ledger.paid(SECRET).total() == 5 and out["qxt_code"].eq(0).sum() == 5


def test_balance_exhausted_mid_run_stops_cleanly_and_a_top_up_finishes(sim, opts):
    sim.accounts[SECRET].balance = 6
    df = pd.DataFrame({"mobile": numbers(40)})
    with pytest.raises(E.InsufficientBalanceError) as caught:
        df.qxt.check("mobile", **opts(budget=100, concurrency=4))
    exc = caught.value
    assert exc.code == -5 and exc.answered >= 6 and exc.answered + exc.remaining <= 40
    assert "Run the same check again" in str(exc)
    assert exc.partial["qxt_code"].eq(0).sum() == 6
    stored = Checkpoint(opts()["checkpoint"], service="simulator").answers()
    assert set(stored["mobile"].to_pylist()) == set(sim.ledger.paid(SECRET))  # every paid answer is saved
    sim.accounts[SECRET].balance = 1000
    out = df.qxt.check("mobile", **opts())
    assert out["qxt_code"].notna().all() and sim.ledger.paid_twice() == {}


@pytest.mark.parametrize(
    ("key", "cls"),
    [("x" * 32, E.InvalidApiKeyError), (FENCED_KEY, E.IpNotAllowedError), (EMPTY_KEY, E.InsufficientBalanceError),
     ("short", E.InvalidApiKeyError)],
)  # fmt: skip
def test_bad_key_ip_and_empty_account_fail_before_any_paid_query(sim, opts, key, cls):
    with pytest.raises(cls) as caught:
        crm().qxt.check("mobile", **opts(apikey=key))
    assert sim.requests == 1 and len(sim.ledger) == 0
    assert key not in str(caught.value) and caught.value.terminal
    if key == "short":
        assert "32-character" in str(caught.value)


def test_a_terminal_stop_without_checkpoint_keeps_answers_in_partial(sim, opts):
    sim.accounts[SECRET].balance = 3
    with pytest.raises(E.InsufficientBalanceError) as caught:
        pd.DataFrame({"mobile": numbers(10)}).qxt.check("mobile", **opts(checkpoint=None, budget=10, concurrency=2))
    assert caught.value.partial["qxt_code"].eq(0).sum() == 3 and ".partial" in str(caught.value)


def test_a_number_failing_after_retries_is_on_its_row_and_asked_next_run(sim, opts):
    sim.faults = Faults(busy=1.0, endpoints=frozenset({"status"}))
    df = pd.DataFrame({"mobile": [M, "13800000001"]})
    out = df.qxt.check("mobile", **opts(retries=1, concurrency=4))  # a fixed limit retries -8 as before
    assert out["qxt_code"].eq(-8).all()  # the vendor's last word on it
    assert out["qxt_error"].str.startswith("failed after 2 attempt(s): ServerBusyError").all()
    sim.faults = Faults()
    out = df.qxt.check("mobile", **opts())
    assert out["qxt_code"].eq(0).all() and len(sim.ledger) == 2


def test_series_accessor(sim, opts):
    s = pd.Series(["139 7256 5391", None], index=[5, 5], name="phone")
    res = s.qxt.check(**opts())
    assert list(res.columns) == list(RESULT_COLUMNS) and res.index.equals(s.index)
    assert res["Status"].iloc[0] == "正常" and res["qxt_code"].iloc[1] == LOCAL_INVALID
    assert s.qxt.plan(**opts()).in_checkpoint == 1


def test_existing_result_columns_are_refused_or_prefixed(sim, opts):
    out = crm().qxt.check("mobile", **opts())
    with pytest.raises(E.ColumnConflictError, match="prefix="):
        out.qxt.check("mobile", **opts())
    again = out.qxt.check("mobile", prefix="new_", **opts())
    assert "new_Status" in again.columns and again["new_Status"].equals(again["Status"])


def test_usage_errors(sim, opts):
    with pytest.raises(KeyError, match="phone"):
        crm().qxt.check("phone", **opts())
    with pytest.raises(TypeError, match="concurency"):
        crm().qxt.check("mobile", concurency=8)


def test_check_inside_a_running_event_loop_and_acheck(sim, opts):
    async def notebook_cell():
        sync = crm().qxt.check("mobile", **opts())  # as in Jupyter: a loop already runs here
        asynchronous = await crm().qxt.acheck("mobile", **opts())
        return sync, asynchronous

    sync, asynchronous = asyncio.run(notebook_cell())
    pd.testing.assert_frame_equal(sync, asynchronous)


def test_progress_shows_live_counts(sim, opts, capsys):
    pd.DataFrame({"mobile": [M, EMPTY_NUMBER, NO_INFO]}).qxt.check("mobile", **opts(progress=True))
    err = capsys.readouterr().err
    assert "QXT" in err and "answered=2" in err and "空号=1" in err and "no info=1" in err
    assert "error" not in err  # a -4 answer is an answer, not an error
    assert SECRET not in err


def test_many_rows_few_numbers(sim, opts):
    values = np.array(numbers(50), dtype=object)[np.random.default_rng(1).integers(0, 50, 20000)]
    out = pd.DataFrame({"mobile": values}).qxt.check("mobile", **opts(concurrency=16))
    assert sim.requests == 1 + 50 + 1 and out["qxt_code"].notna().all()
    expected = {m: answer(m)[1]["Status"] if answer(m)[1] else None for m in numbers(50)}
    assert out["Status"].astype(object).where(out["Status"].notna(), None).tolist() == [expected[m] for m in values]
