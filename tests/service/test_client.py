"""Client and AsyncClient on both serving paths: endpoints, methods, codes, retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from urllib.parse import parse_qs

import pytest
from conftest import EMPTY_KEY, FENCED_KEY, GOOD, POSTPAID_KEY, SECRET

import qxt_pandas
from qxt_pandas import errors as E
from qxt_pandas.simulator import Faults, SimulatorTransport, answer, serve
from qxt_pandas.system.sync import LoopThread

NO_INFO = next(f"138{i:08d}" for i in range(10**4) if answer(f"138{i:08d}")[0][0] == -4)


def test_both_endpoints(connect, sim):
    client = connect()
    assert client.balance() == qxt_pandas.Balance("预付费", 1000)
    got = client.status(GOOD)
    assert got == qxt_pandas.PhoneStatus(GOOD, "正常", "湖北-宜昌", True, "中国移动", "中国电信")
    assert client.balance().balance == 999
    assert sim.ledger.paid(SECRET) == {GOOD: 1}


def test_postpaid_balance_is_negative(connect, sim):
    client = connect(POSTPAID_KEY)
    client.status(GOOD)
    assert client.balance() == qxt_pandas.Balance("后付费", -1)


def test_post_keeps_the_key_out_of_the_url(connect, sim):
    client = connect()
    client.balance()
    client.status(GOOD)
    assert sim.query_strings == ["", ""]


def test_get_works_and_warns_that_the_key_is_in_the_url(connect, sim):
    with pytest.warns(UserWarning, match="URL"):
        client = connect(method="GET")
    assert client.status(GOOD).mobile == GOOD
    assert client.balance().balance == 999
    assert [parse_qs(q)["apikey"] for q in sim.query_strings] == [[SECRET], [SECRET]]


@pytest.mark.parametrize(
    ("key", "mobile", "cls"),
    [
        ("x" * 32, GOOD, E.InvalidApiKeyError),
        (FENCED_KEY, GOOD, E.IpNotAllowedError),
        (EMPTY_KEY, GOOD, E.InsufficientBalanceError),
        ("short", GOOD, E.InvalidRequestError),
        (SECRET, "1397256539", E.MobileLengthError),
        (SECRET, "1397256539x", E.InvalidMobileError),
        (SECRET, NO_INFO, E.NoInformationError),
    ],
)
def test_error_answers_are_raised_once_and_never_retried(connect, sim, key, mobile, cls):
    client = connect(key, retries=3)
    with pytest.raises(cls) as caught:
        client.status(mobile)
    assert caught.value.attempts == 1 and sim.requests == 1
    assert caught.value.code is not None and caught.value.reason
    if issubclass(cls, E.NumberError):
        assert caught.value.mobile == mobile
    assert len(sim.ledger) == 0


@pytest.mark.parametrize(
    ("fault", "cls"),
    [
        ("busy", E.ServerBusyError),
        ("http_error", E.HttpStatusError),
        ("truncated", E.UnparsableResponseError),
        ("reset", E.ConnectionFailedError),
        ("hang", E.ConnectionFailedError),
    ],
)
def test_transient_faults_are_retried_then_reported(connect, sim, fault, cls):
    sim.faults = Faults(**{fault: 1.0})
    client = connect(retries=2, timeout=0.3)
    with pytest.raises(cls) as caught:
        client.status(GOOD)
    assert caught.value.retryable and caught.value.attempts == 3
    assert sim.requests == 3
    if fault == "hang":
        assert "timed out" in str(caught.value)


def test_retries_carry_a_run_through_many_faults(connect, sim):
    sim.faults = Faults.mixed(0.5)
    client = connect(retries=12, timeout=0.1)
    numbers = [f"1390000{i:04d}" for i in range(30)]
    for m in numbers:
        with contextlib.suppress(E.NoInformationError):
            assert client.status(m).mobile == m
    assert sim.requests > len(numbers)  # faults happened and were retried
    assert sim.ledger.paid_twice() == {}  # only answers lost in transit were paid again


def test_retries_back_off_with_jitter(connect, sim):
    sim.faults = Faults(busy=1.0)
    client = connect(retries=3, backoff=0.02)
    start = time.perf_counter()
    with pytest.raises(E.ServerBusyError):
        client.status(GOOD)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0  # mean total backoff is 0.02 + 0.04 + 0.08


def test_retries_are_logged_with_the_number_masked(connect, sim, caplog):
    sim.faults = Faults(busy=1.0)
    client = connect(retries=1)
    with caplog.at_level(logging.INFO, logger="qxt_pandas"), pytest.raises(E.ServerBusyError):
        client.status(GOOD)
    assert "retry 1 of 1" in caplog.text and "139****5391" in caplog.text and GOOD not in caplog.text


def test_a_refused_connection_is_retried_and_explained():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    url = f"http://127.0.0.1:{port}"
    with (
        qxt_pandas.Client(SECRET, base_url=url, retries=1, backoff=0) as client,
        pytest.raises(E.ConnectionFailedError) as caught,
    ):
        client.balance()
    assert caught.value.attempts == 2 and "127.0.0.1" in str(caught.value)


def test_a_missing_key_fails_before_any_request(sim, monkeypatch):
    monkeypatch.delenv("QXT_APIKEY", raising=False)
    for make in (qxt_pandas.Client, qxt_pandas.AsyncClient):
        with pytest.raises(E.MissingApiKeyError, match="QXT_APIKEY"):
            make(transport=SimulatorTransport(sim))
        with pytest.raises(E.MissingApiKeyError):
            make("  ", transport=SimulatorTransport(sim))
    assert sim.requests == 0


def test_key_and_base_url_come_from_the_environment(sim, monkeypatch):
    with serve(sim) as url:
        monkeypatch.setenv("QXT_APIKEY", SECRET)
        monkeypatch.setenv("QXT_BASE_URL", url + "/")
        with qxt_pandas.Client() as client:
            assert client.base_url == url
            assert client.balance().balance == 1000
    monkeypatch.delenv("QXT_BASE_URL")
    with qxt_pandas.Client() as client:
        assert client.base_url == "https://ps.szqxt.com"


def test_bad_arguments():
    with pytest.raises(ValueError):
        qxt_pandas.AsyncClient(SECRET, method="PUT")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        qxt_pandas.AsyncClient(SECRET, retries=-1)


def test_sync_client_works_inside_a_running_event_loop(sim):
    """As in Jupyter: a loop is already running in the calling thread."""

    async def notebook_cell():
        with qxt_pandas.Client(SECRET, transport=SimulatorTransport(sim)) as client:
            return client.status(GOOD).status

    assert asyncio.run(notebook_cell()) == "正常"


def test_async_client_as_context_manager(sim):
    async def go():
        async with qxt_pandas.AsyncClient(SECRET, transport=SimulatorTransport(sim)) as client:
            return await asyncio.gather(*(client.status(f"1390000{i:04d}") for i in range(5)), return_exceptions=True)

    results = asyncio.run(go())
    assert len(results) == 5 and sim.requests == 5


def test_close_is_idempotent_and_a_closed_client_refuses(sim):
    client = qxt_pandas.Client(SECRET, transport=SimulatorTransport(sim))
    client.close()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.balance()


def test_ctrl_c_cancels_the_coroutine_and_reaches_the_caller():
    runner = LoopThread()
    started, cleaned_up = threading.Event(), threading.Event()

    async def long_job():
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            cleaned_up.set()

    def interrupt():
        assert started.wait(5)
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    threading.Thread(target=interrupt, daemon=True).start()
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        runner.run(long_job())
    assert time.perf_counter() - start < 1.5
    assert cleaned_up.wait(1)
    runner.close()
