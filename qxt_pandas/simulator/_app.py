"""The simulator's ASGI app: both endpoints as documented, billing, latency, faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from ..service.protocol import SIMULATOR_HEADER
from . import _answers as A
from ._shapes import SHAPES, render
from ._state import DEMO_APIKEY, DEMO_POSTPAID_APIKEY, POSTPAID, PREPAID, Account, Charge, Faults, Ledger

# ASGI's three (the spec's shapes; the simulator needs no framework).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HTML_ERROR = (
    "<html>\r\n<head><title>{code} {text}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {text}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_HTTP_ERRORS = ((500, "Internal Server Error"), (502, "Bad Gateway"), (503, "Service Temporarily Unavailable"))


class ConnectionDropped(Exception):
    """Raised inside the app to make the server drop the connection mid-response."""


class Simulator:
    """A stand-in for the QXT service: an ASGI app with accounts, a ledger and knobs.

    ``latency``/``jitter`` are seconds per request (the vendor quotes ~0.1);
    ``faults`` injects transient failures; ``seed`` makes fault draws repeatable;
    ``shape`` writes answers as the document shows them (see ``_shapes``);
    ``capacity`` is how many requests it holds at once (beyond, it refuses them
    at once, uncharged). Knobs and accounts may be changed while it serves, in
    process or over HTTP (``GET``/``POST /_simulator``).

    Example::

        sim = Simulator(latency=0.1, faults=Faults.mixed(0.1))
        with serve(sim) as base_url:
            ...
        sim.ledger.paid_twice()   # {} when nothing was paid twice
    """

    def __init__(
        self,
        accounts: Iterable[Account] | None = None,
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        faults: Faults | None = None,
        hang_seconds: float = 60.0,
        content_type: str = "text/html;charset=UTF-8",
        seed: int | None = 0,
        capacity: int | None = None,
        throttle: int | None = None,
        retry_after: float | None = None,
        shape: str = "json",
    ) -> None:
        if accounts is None:
            accounts = [Account(DEMO_APIKEY), Account(DEMO_POSTPAID_APIKEY, POSTPAID, balance=0)]
        self.accounts = {a.apikey: a for a in accounts}
        self.latency = latency
        self.jitter = jitter
        self.faults = faults or Faults()
        self.hang_seconds = hang_seconds
        self.content_type = content_type
        if shape not in SHAPES:
            raise ValueError(f"shape={shape!r}: use one of {', '.join(SHAPES)}")
        #: How answers are written: strict JSON, or another shape the vendor's document shows (see _shapes).
        self.shape = shape
        #: Status requests it holds at once; beyond, it refuses them at once, uncharged: -8, or HTTP
        #: ``throttle`` (429, 503) with ``Retry-After: retry_after`` when set. None: no limit. The
        #: balance endpoint (free, light) is always answered.
        self.capacity = capacity
        self.throttle = throttle
        self.retry_after = retry_after
        self.refused = 0
        self.ledger = Ledger()
        self.requests = 0
        #: Requests by endpoint (``/ssphone_status``, ``/balance``, lower-case), for tests that count paid asks.
        self.requests_by_path: Counter[str] = Counter()
        #: Requests being handled right now, and the most there ever were at once.
        self.in_flight = 0
        self.max_in_flight = 0
        #: The raw query strings received, so that tests can see what reached a URL.
        self.query_strings: list[str] = []
        #: When each request arrived (``time.monotonic()``), so that tests can see pauses.
        self.arrivals: list[float] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    # -- the vendor's logic, free of HTTP --------------------------------------

    def _check_caller(self, params: dict[str, str], client_ip: str) -> tuple[tuple[int, str], Account | None]:
        key = params.get("apikey", "")
        if len(key) != 32:
            return A.PARAM_MISSING, None
        account = self.accounts.get(key)
        if account is None:
            return A.BAD_KEY, None
        if account.allowed_ips is not None and client_ip not in account.allowed_ips:
            return A.IP_DENIED, None
        return A.SUCC, account

    def query_status(self, params: dict[str, str], client_ip: str, lost: bool = False) -> dict[str, Any]:
        """The JSON object the vendor sends for ``ssPhone_Status``; bills code-0 answers."""
        outcome, account = self._check_caller(params, client_ip)
        mobile = params.get("mobile")
        if account is None:
            return _body(outcome)
        if not mobile:
            return _body(A.PARAM_MISSING)
        complaint = A.validate(mobile)
        if complaint:
            return _body(complaint)
        outcome, result = A.answer(mobile)
        if result is None:
            return _body(outcome)
        with self._lock:
            if account.fee_type == PREPAID and account.balance < 1:
                return _body(A.NO_BALANCE)
            account.balance -= 1
            self.ledger.record(Charge(account.apikey, mobile, delivered=not lost))
        return _body(outcome, result)

    def query_balance(self, params: dict[str, str], client_ip: str) -> dict[str, Any]:
        """The JSON object the vendor sends for ``balance``."""
        outcome, account = self._check_caller(params, client_ip)
        if account is None:
            return _body(outcome)
        return _body(A.SUCC, {"feeType": account.fee_type, "balance": str(account.balance)})

    # -- ASGI --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = scope.get("query_string", b"").decode("latin-1")
        path = scope["path"].rstrip("/").lower()
        if path == "/_simulator":
            await self._admin(scope["method"], body, send)
            return
        with self._lock:
            self.requests += 1
            self.requests_by_path[path] += 1
            self.query_strings.append(query)
            self.arrivals.append(time.monotonic())
            # in flight: status queries only, as capacity counts them (a balance read beside six queries made
            # a max of 7 against a capacity of 6)
            status = path == "/ssphone_status"
            full = self.capacity is not None and self.in_flight >= self.capacity and status
            self.refused += full
            if status and not full:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            fault = self.faults.pick(self._rng.random())
            pause = max(0.0, self.latency + self._rng.uniform(-self.jitter, self.jitter))
        if full:
            await self._refuse(send)
            return
        try:
            await self._handle(scope, receive, send, path, query, body, fault, pause)
        finally:
            if status:
                with self._lock:
                    self.in_flight -= 1

    async def _refuse(self, send: Send) -> None:
        """Over capacity: refused at once and not charged, as a busy service sheds load."""
        if self.throttle is None:
            await _send(send, 200, json.dumps(_body(A.SYSTEM_ERROR), ensure_ascii=False), self.content_type)
            return
        extra = [(b"retry-after", f"{self.retry_after:g}".encode())] if self.retry_after is not None else []
        text = _HTML_ERROR.format(code=self.throttle, text="Too Many Requests").encode()
        await send({"type": "http.response.start", "status": self.throttle,
                    "headers": _headers("text/html", len(text)) + extra})  # fmt: skip
        await send({"type": "http.response.body", "body": text})

    def stats(self) -> dict[str, Any]:
        """What it has seen and how it is set (``GET /_simulator`` answers this)."""
        with self._lock:
            return {"requests": self.requests, "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                    "refused": self.refused, "charged": len(self.ledger), "capacity": self.capacity,
                    "latency": self.latency, "shape": self.shape}  # fmt: skip

    async def _admin(self, method: str, body: bytes, send: Send) -> None:
        """``POST /_simulator`` with ``{"capacity": 15}`` (or latency, jitter) changes knobs while serving."""
        if method == "POST":
            for name, value in json.loads(body or b"{}").items():
                if name not in ("capacity", "latency", "jitter", "throttle", "retry_after", "shape"):
                    await _send(send, 400, f"unknown knob {name!r}", "text/plain")
                    return
                setattr(self, name, value)
        await _send(send, 200, json.dumps(self.stats()), "application/json")

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        path: str,
        query: str,
        body: bytes,
        fault: str | None,
        pause: float,
    ) -> None:
        if path not in ("/ssphone_status", "/balance"):
            await _send(send, 404, _HTML_ERROR.format(code=404, text="Not Found"), "text/html")
            return
        if scope["method"] not in ("GET", "POST"):
            await _send(send, 405, _HTML_ERROR.format(code=405, text="Not Allowed"), "text/html")
            return
        params = dict(parse_qsl(query))
        params.update(_form(body, scope))
        client_ip = (scope.get("client") or ("", 0))[0]
        if pause:
            await asyncio.sleep(pause)
        if ("balance" if path == "/balance" else "status") not in self.faults.endpoints:
            fault = None
        if fault == "busy":
            await _send(send, 200, json.dumps(_body(A.SYSTEM_ERROR), ensure_ascii=False), self.content_type)
            return
        if fault == "http_error":
            code, text = _HTTP_ERRORS[self._rng.randrange(3)]
            await _send(send, code, _HTML_ERROR.format(code=code, text=text), "text/html")
            return
        lost = fault in ("truncated", "reset", "hang")
        if path == "/balance":
            answer = self.query_balance(params, client_ip)
        else:
            answer = self.query_status(params, client_ip, lost=lost)
        data, content_type = render(answer, self.shape, self.content_type)
        if fault == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_client_gone(receive), self.hang_seconds)
        elif fault == "truncated":
            await _send(send, 200, data[: data.find(b"code")], content_type)  # nothing shows it was charged
        elif fault == "reset":
            await send({"type": "http.response.start", "status": 200, "headers": _headers(content_type, 999)})
            raise ConnectionDropped("simulated connection reset")
        else:
            await _send(send, 200, data, content_type)


async def _client_gone(receive: Receive) -> None:
    """Returns when the client closes the connection (as a client that timed out does)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _body(outcome: tuple[int, str], result: dict[str, Any] | None = None) -> dict[str, Any]:
    code, reason = outcome
    body: dict[str, Any] = {"code": code, "reason": reason}
    if result is not None:
        body["result"] = result
    return body


def _form(body: bytes, scope: Scope) -> dict[str, str]:
    """POST parameters: form-encoded as browsers send them, or a JSON object."""
    if not body:
        return {}
    text = body.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        try:
            return {str(k): str(v) for k, v in json.loads(text).items()}
        except (ValueError, AttributeError):
            return {}
    return dict(parse_qsl(text))


def _headers(content_type: str, length: int) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", content_type.encode()),
        (b"content-length", str(length).encode()),
        (SIMULATOR_HEADER.encode(), b"1"),  # what it is: its answers are not the vendor's
    ]


async def _send(send: Send, status: int, text: str | bytes, content_type: str) -> None:
    data = text.encode("utf-8") if isinstance(text, str) else text
    await send({"type": "http.response.start", "status": status, "headers": _headers(content_type, len(data))})
    await send({"type": "http.response.body", "body": data})
