"""The API key appears in no URL, message, repr, traceback or log line, on any path."""

from __future__ import annotations

import json
import logging
import socket
import traceback
from urllib.parse import quote, quote_plus

import httpx
import pytest
from conftest import EMPTY_KEY, FENCED_KEY, GOOD, SECRET

import qxt_pandas
from qxt_pandas import errors as E
from qxt_pandas.simulator import Faults

BAD_KEY = "BaD-kEy-that-is-also-secret-0001"  # rejected with -1: must not leak either
FORMS = [form for key in (SECRET, BAD_KEY) for form in (key, quote(key, safe=""), quote_plus(key))]


def assert_clean(*texts: str) -> None:
    for text in texts:
        for form in FORMS:
            assert form not in text, f"the key leaked into: {text[:300]}"


def chain(exc: BaseException | None) -> list[BaseException]:
    found = []
    while exc is not None:
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def everything_about(exc: BaseException) -> list[str]:
    texts = [text for e in chain(exc) for text in (str(e), repr(e), repr(vars(e)))]
    return [*texts, "".join(traceback.format_exception(exc))]


SCENARIOS = {
    "bad key": ({"apikey": BAD_KEY}, None, GOOD, E.InvalidApiKeyError),
    "ip not allowed": ({"apikey": FENCED_KEY}, None, GOOD, E.IpNotAllowedError),
    "no balance": ({"apikey": EMPTY_KEY}, None, GOOD, E.InsufficientBalanceError),
    "per number": ({}, None, "1397256539", E.MobileLengthError),
    "busy": ({}, Faults(busy=1.0), GOOD, E.ServerBusyError),
    "http 5xx": ({}, Faults(http_error=1.0), GOOD, E.HttpStatusError),
    "truncated": ({}, Faults(truncated=1.0), GOOD, E.UnparsableResponseError),
    "reset": ({}, Faults(reset=1.0), GOOD, E.ConnectionFailedError),
    "hang": ({}, Faults(hang=1.0), GOOD, E.ConnectionFailedError),
}


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_error_path_shows_the_key(connect, sim, caplog, method, scenario):
    options, faults, mobile, cls = SCENARIOS[scenario]
    sim.faults = faults or Faults()
    with caplog.at_level(logging.DEBUG), pytest.warns(UserWarning) if method == "GET" else _nothing():
        client = connect(**{"apikey": SECRET, **options}, method=method, retries=1, timeout=0.2)
    with caplog.at_level(logging.DEBUG), pytest.raises(cls) as caught:
        client.status(mobile)
    assert_clean(*everything_about(caught.value), caplog.text, repr(client._client))
    assert not any(isinstance(e, httpx.HTTPError) for e in chain(caught.value))  # .request holds the key
    if method == "POST":
        assert_clean(*sim.query_strings)


def test_a_refused_connection_does_not_show_the_key(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for method in ("POST", "GET"):
        with (
            caplog.at_level(logging.DEBUG),
            pytest.warns(UserWarning) if method == "GET" else _nothing(),
            qxt_pandas.Client(SECRET, base_url=f"http://127.0.0.1:{port}", retries=0, method=method) as client,
            pytest.raises(E.ConnectionFailedError) as caught,
        ):
            client.balance()
        assert_clean(*everything_about(caught.value), caplog.text)


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_server_echoing_the_key_is_redacted(method):
    """Some error pages echo the request: the library's message must not repeat it."""

    def echo(request: httpx.Request) -> httpx.Response:
        echoed = f"<html>bad request: {request.url} {request.content.decode()}</html>"
        if request.url.path == "/balance":
            return httpx.Response(200, text=json.dumps({"code": 0, "result": {"echo": echoed}}))
        return httpx.Response(502, text=echoed)

    with pytest.warns(UserWarning) if method == "GET" else _nothing():
        client = qxt_pandas.Client(SECRET, transport=httpx.MockTransport(echo), retries=0, method=method)
    with client:
        for call, cls in (
            (client.balance, E.UnexpectedResponseError),
            (lambda: client.status(GOOD), E.HttpStatusError),
        ):
            with pytest.raises(cls) as caught:
                call()
            assert_clean(*everything_about(caught.value))
            assert "***" in str(caught.value)


def test_reprs_do_not_show_the_key(sim):
    from qxt_pandas.service._secret import Secret

    for client in (qxt_pandas.Client(SECRET), qxt_pandas.AsyncClient(SECRET)):
        assert_clean(repr(client), str(client), repr(vars(client)))
        assert "***" in repr(client)
    assert_clean(repr(Secret(SECRET)), str(Secret(SECRET)))
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(Secret(SECRET))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_the_wire_request_repr_hides_the_key():
    from qxt_pandas.service.protocol import build_request

    for method in ("POST", "GET"):
        assert_clean(repr(build_request("status", SECRET, method, GOOD)))
