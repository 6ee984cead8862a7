"""The simulator behaves like the vendor's document says, deterministically."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from conftest import EMPTY_KEY, FENCED_KEY, GOOD, POSTPAID_KEY, SECRET, make_simulator

from qxt_pandas import Client
from qxt_pandas.simulator import DEMO_APIKEY, Faults, SimulatorTransport, answer, serve, spawn

PREFIXES = "139 138 150 188 130 186 166 133 189 199 192 170 171 162 165 167".split()


def sample(n: int, prefixes=PREFIXES) -> list[str]:
    return [f"{prefixes[i % len(prefixes)]}{(i * 7919) % 10**8:08d}" for i in range(n)]


def ask(sim, path="/ssPhone_Status", method="POST", ip="127.0.0.1", **params) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(sim, client=(ip, 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as c:
            if method == "GET":
                return await c.get(path, params=params)
            return await c.post(path, data=params)

    return asyncio.run(go())


def test_the_same_number_always_gets_the_same_answer():
    assert [answer(m) for m in sample(50)] == [answer(m) for m in sample(50)]
    one, two = make_simulator(), make_simulator()
    assert ask(one, apikey=SECRET, mobile=GOOD).json() == ask(two, apikey=SECRET, mobile=GOOD).json()
    assert answer(GOOD)[1] == {
        "Mobile": GOOD,
        "Status": "正常",
        "Area": "湖北-宜昌",
        "Is_MNP": "1",
        "Init_isp": "中国移动",
        "Now_isp": "中国电信",
    }  # the document's example


def test_a_realistic_mix():
    results = [answer(m) for m in sample(20000)]
    codes = Counter(code for (code, _), _ in results)
    statuses = Counter(r["Status"] for _, r in results if r)
    n = len(results)
    assert 0.01 < codes[-4] / n < 0.03
    assert 0.80 < statuses["正常"] / n < 0.88
    assert 0.06 < statuses["空号"] / n < 0.10
    assert 0.03 < statuses["停机"] / n < 0.07
    assert 0 < statuses["沉默号"] / n < 0.02  # a status beyond the document's list
    ported = [r for _, r in results if r and r["Is_MNP"] == "1"]
    assert 0.02 < len(ported) / n < 0.06
    assert all(r["Now_isp"] != r["Init_isp"] for r in ported)
    assert all(r["Now_isp"] == r["Init_isp"] for _, r in results if r and r["Is_MNP"] == "0")
    areas = {r["Area"] for _, r in results if r}
    assert len(areas) > 20 and all(a.count("-") == 1 for a in areas)


@pytest.mark.parametrize(
    ("prefix", "carrier"),
    [("139", "中国移动"), ("198", "中国移动"), ("186", "中国联通"), ("166", "中国联通"), ("189", "中国电信"),
     ("199", "中国电信"), ("192", "中国广电"), ("170", "其它运营商"), ("171", "其它运营商"), ("162", "其它运营商"),
     ("165", "其它运营商"), ("167", "其它运营商")],
)  # fmt: skip
def test_carriers_follow_the_prefix(prefix, carrier):
    inits = {r["Init_isp"] for _, r in (answer(m) for m in sample(300, [prefix])) if r}
    assert inits == {carrier}


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, 1),
        ({"apikey": "short"}, 1),
        ({"apikey": SECRET}, 1),  # no mobile
        ({"apikey": "x" * 32, "mobile": GOOD}, -1),
        ({"apikey": SECRET, "mobile": "1397256539"}, -2),
        ({"apikey": SECRET, "mobile": "139725653911"}, -2),
        ({"apikey": SECRET, "mobile": "1397256539a"}, -3),
        ({"apikey": SECRET, "mobile": "10086000000"}, -3),  # not an allocated mobile prefix
        ({"apikey": SECRET, "mobile": "14012345678"}, -3),
        ({"apikey": EMPTY_KEY, "mobile": GOOD}, -5),
        ({"apikey": FENCED_KEY, "mobile": GOOD}, -9),
        ({"apikey": SECRET, "mobile": GOOD}, 0),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_every_code_in_the_table(params, code, method, sim):
    reply = ask(sim, method=method, **params)
    assert reply.status_code == 200 and reply.json()["code"] == code
    assert reply.headers["content-type"].startswith("text/html")  # as vendors of this kind do
    assert ("result" in reply.json()) == (code == 0)


def test_code_minus_4_and_minus_8_exist(sim):
    no_info = next(m for m in sample(500) if answer(m)[0][0] == -4)
    assert ask(sim, apikey=SECRET, mobile=no_info).json()["code"] == -4
    sim.faults = Faults(busy=1.0)
    assert ask(sim, apikey=SECRET, mobile=GOOD).json()["code"] == -8
    assert len(sim.ledger) == 0  # neither is charged


def test_the_allow_list_admits_its_address(sim):
    assert ask(sim, ip="203.0.113.7", apikey=FENCED_KEY, mobile=GOOD).json()["code"] == 0


@pytest.mark.parametrize("path", ["/ssPhone_Status", "/ssphone_status", "/SSPHONE_STATUS", "/ssPhone_Status/"])
def test_paths_are_case_insensitive(path, sim):
    assert ask(sim, path, apikey=SECRET, mobile=GOOD).json()["result"]["Mobile"] == GOOD


def test_unknown_path_and_method(sim):
    assert ask(sim, "/nope", apikey=SECRET).status_code == 404

    async def put():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(sim), base_url="http://sim") as c:
            return await c.put("/balance", data={"apikey": SECRET})

    assert asyncio.run(put()).status_code == 405


def test_json_post_bodies_are_accepted_too(sim):
    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(sim), base_url="http://sim") as c:
            return await c.post("/balance", json={"apikey": SECRET})

    assert asyncio.run(go()).json()["result"] == {"feeType": "预付费", "balance": "1000"}


def test_prepaid_billing_stops_at_zero_and_postpaid_goes_negative(sim):
    sim.accounts[SECRET].balance = 2
    codes = [ask(sim, apikey=SECRET, mobile=GOOD).json()["code"] for _ in range(3)]
    assert codes == [0, 0, -5]
    assert ask(sim, "/balance", apikey=SECRET).json()["result"]["balance"] == "0"
    for _ in range(3):
        ask(sim, apikey=POSTPAID_KEY, mobile=GOOD)
    assert ask(sim, "/balance", apikey=POSTPAID_KEY).json()["result"] == {"feeType": "后付费", "balance": "-3"}


def test_the_ledger_counts_payments(sim):
    other = "13800138000"
    for m in (GOOD, GOOD, other):
        ask(sim, apikey=SECRET, mobile=m)
    assert sim.ledger.paid(SECRET) == Counter({GOOD: 2, other: 1})
    assert sim.ledger.paid_twice() == {GOOD: 2}
    assert sim.ledger.paid(POSTPAID_KEY) == Counter()


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("http_error", httpx.HTTPStatusError),
        ("truncated", ValueError),
        ("reset", httpx.RemoteProtocolError),
        ("hang", httpx.ReadTimeout),
    ],
)
@pytest.mark.parametrize("where", ["inprocess", "loopback"])
def test_each_fault_looks_as_it_would_on_the_wire(fault, expected, where, sim):
    sim.faults = Faults(**{fault: 1.0})

    async def go(url, transport):
        async with httpx.AsyncClient(base_url=url, transport=transport, timeout=0.3) as c:
            reply = await c.post("/ssPhone_Status", data={"apikey": SECRET, "mobile": GOOD})
            reply.raise_for_status()
            return reply.json()

    if where == "inprocess":
        call = go("http://sim", SimulatorTransport(sim))
        with pytest.raises(expected):
            asyncio.run(call)
    else:
        with serve(sim) as url, pytest.raises(expected):
            asyncio.run(go(url, None))
    lost = [c for c in sim.ledger.charges if not c.delivered]
    assert len(lost) == (1 if fault in ("truncated", "reset", "hang") else 0)
    assert sim.ledger.paid_twice() == {}


def test_latency_is_applied(sim):
    sim.latency = 0.05
    with serve(sim) as url, Client(SECRET, base_url=url) as client:
        client.balance()
        import time

        start = time.perf_counter()
        client.balance()
        assert time.perf_counter() - start >= 0.045


def test_the_command_serves_on_loopback():
    with spawn("--latency", "0", "--balance", "5") as url:
        assert url.startswith("http://127.0.0.1:")
        with Client(DEMO_APIKEY, base_url=url) as client:
            assert client.balance().balance == 5
            assert client.status(GOOD).mobile == GOOD
            assert client.balance().balance == 4
