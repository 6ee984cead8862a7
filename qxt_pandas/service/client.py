"""``Client`` and ``AsyncClient``: both QXT endpoints over httpx, with retries.

``AsyncClient`` holds the logic; ``Client`` drives it on a private loop (see
``_sync``), so the two cannot disagree. Transient faults (-8, HTTP 5xx/429,
connection failures, timeouts, unreadable bodies that show no code 0) are
retried with exponential backoff and full jitter; every other answer is raised
at once (an unreadable code-0 answer too: it was charged).

Example::

    with qxt_pandas.Client() as client:          # key from QXT_APIKEY
        print(client.balance().balance)
        print(client.status("13972565391").status)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import logging
import os
import random
import time
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import httpx

from ..errors import ConnectionFailedError, MissingApiKeyError, QxtError
from ..masking import mask
from ..system.sync import LoopThread
from . import protocol
from ._awake import awake_timeout
from ._secret import Secret
from ._transport import AiohttpTransport, Reply
from .protocol import Balance, Method, PhoneStatus

__all__ = ["AsyncClient", "Client", "Watch", "retry_after"]

log = logging.getLogger("qxt_pandas")
T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 0.5
MAX_BACKOFF = 30.0


def resolve_base_url(base_url: str | None = None) -> str:
    """``base_url``, else ``$QXT_BASE_URL``, else the vendor's URL; without a trailing slash."""
    return (base_url or os.environ.get("QXT_BASE_URL") or protocol.DEFAULT_BASE_URL).rstrip("/")


def check_base_url(base_url: str | None = None) -> str:
    """The resolved base URL, or a ValueError saying what is wrong with it (no request is made).

    A URL without ``http://``/``https://``, without a host or with an impossible port is a
    mistake in the configuration: reporting it later as a network failure would say "run
    again", which cannot help.
    """
    url = resolve_base_url(base_url)
    where = "base_url" if base_url else "$QXT_BASE_URL" if os.environ.get("QXT_BASE_URL") else "base_url"
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ValueError(f"{where}={url!r} is not a valid URL ({exc}); use e.g. https://ps.szqxt.com") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"{where}={url!r}: use an http:// or https:// URL with a host, e.g. https://ps.szqxt.com")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{where}={url!r}: the port must be between 1 and 65535")
    return url


class Watch(Protocol):
    """Hears of every attempt of a call: when it was sent, and the error (None: answered).

    With ``requeue_busy``, a busy answer (-8, HTTP 429/503) is raised at once instead of
    retried: the engine puts the number back and asks again when the service has room,
    without spending one of the number's retries.
    """

    requeue_busy: bool

    def __call__(self, sent_at: float, error: QxtError | None) -> None: ...


#: The longest pause a ``Retry-After`` header can impose (seconds): one header must not stall a run for an hour.
MAX_RETRY_AFTER = 60.0


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (a number of seconds, or an HTTP date), at most
    :data:`MAX_RETRY_AFTER`; None if absent or junk."""
    seconds = _retry_after(value)
    return None if seconds is None else min(seconds, MAX_RETRY_AFTER)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
        return max(0.0, seconds) if seconds == seconds else None  # NaN is junk
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


class AsyncClient:
    """Async client for the QXT service; use as ``async with AsyncClient() as c``.

    ``apikey`` defaults to ``$QXT_APIKEY``, ``base_url`` to ``$QXT_BASE_URL``
    then the vendor's ``https://ps.szqxt.com``. ``timeout`` is seconds per
    attempt; ``retries`` is how many times a transient fault is tried again;
    ``backoff`` the first retry's mean delay (doubling, with jitter).
    ``transport`` replaces the network (``httpx.ASGITransport``, a simulator's
    ``transport()``, ``httpx.MockTransport``).

    Example::

        async with AsyncClient(base_url=url) as client:
            answer = await client.status("13972565391")
    """

    def __init__(
        self,
        apikey: Secret | str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        method: Method = "POST",
        backoff: float = DEFAULT_BACKOFF,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        apikey = Secret.wrap(apikey if apikey is not None else os.environ.get("QXT_APIKEY", ""))  # first
        if not apikey:
            raise MissingApiKeyError("No QXT API key.")
        if method not in ("GET", "POST"):
            raise ValueError(f"method must be 'GET' or 'POST', not {method!r}")
        if method == "GET":
            warnings.warn(
                "method='GET' puts the API key in the URL, where proxies and server logs "
                "can record it; prefer the default POST.",
                UserWarning,
                stacklevel=2,
            )
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if not timeout > 0:
            raise ValueError("timeout must be > 0 seconds")
        self._apikey = apikey
        self.base_url = check_base_url(base_url)
        #: Whether the service said it is the bundled simulator (``X-QXT-Simulator``), once it has answered.
        self.simulator: bool | None = None
        self.method: Method = method
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        # The client builds httpx.Requests itself and hands them to the transport: httpx's
        # AsyncClient layer (URL merging, auth, cookies, redirects) cost half the CPU per query.
        self._transport = transport or AiohttpTransport(max_connections)
        self._urls = {ep: httpx.URL(self.base_url + path) for ep, path in protocol.ENDPOINT_PATHS.items()}
        self._extensions = {"timeout": httpx.Timeout(None).as_dict()}  # awake_timeout is the timeout
        self._headers = httpx.Headers({"User-Agent": "qxt-pandas", "Accept": "application/json"})
        self._form_headers = httpx.Headers({**self._headers, "Content-Type": "application/x-www-form-urlencoded"})
        self._plain_form_headers = dict(self._form_headers.items())
        self._fast = isinstance(self._transport, AiohttpTransport)
        self._url_text = {ep: str(url) for ep, url in self._urls.items()}

    def __repr__(self) -> str:  # also for a half-built client, as a verbose traceback shows it
        base_url, method = getattr(self, "base_url", None), getattr(self, "method", None)
        return f"{type(self).__name__}(base_url={base_url!r}, method={method!r}, apikey=***)"

    async def status(self, mobile: str, *, watch: Watch | None = None) -> PhoneStatus:
        """The status of one mobile number; raises a :class:`NumberError` for per-number answers.

        ``watch`` (for the engine) hears of every attempt; see :class:`Watch`.
        """
        secret = self._apikey
        return await self._retrying(
            "status",
            mobile,
            lambda r: protocol.parse_status(
                r.status_code, r.content, mobile=mobile, secret=secret, content_type=r.headers.get("content-type")
            ),
            watch,
        )

    async def balance(self) -> Balance:
        """The account's fee type and remaining balance (in queries).

        Also tells which service answered: :attr:`simulator` is set from its headers.
        """
        secret = self._apikey

        def parse(response: Reply) -> Balance:
            balance = protocol.parse_balance(
                response.status_code, response.content, secret=secret, content_type=response.headers.get("content-type")
            )
            self.simulator = protocol.SIMULATOR_HEADER in response.headers
            return balance

        return await self._retrying("balance", None, parse)

    async def _retrying(
        self,
        endpoint: protocol.Endpoint,
        mobile: str | None,
        parse: Callable[[Reply], T],
        watch: Watch | None = None,
    ) -> T:
        """One endpoint call, retried for transient faults only (busy ones not, when ``watch`` requeues them)."""
        request = protocol.build_request(endpoint, self._apikey.reveal(), self.method, mobile)
        body = urlencode(request.data).encode() if request.data else b""  # cheaper than httpx's form path
        for attempt in range(self.retries + 1):
            sent, response = time.monotonic(), None
            try:
                response = await self._send(request, body, endpoint, mobile)
                result = parse(response)
            except QxtError as exc:
                error = exc
                if response is not None and error.retryable:
                    error.retry_after = retry_after(response.headers.get("retry-after"))
            else:
                if watch is not None:
                    watch(sent, None)
                return result
            error.attempts = attempt + 1
            if watch is not None:
                watch(sent, error)
                if watch.requeue_busy and error.busy:
                    raise error  # not a failure of the number: the caller asks again when there is room
            if not error.retryable or attempt == self.retries:
                raise error
            # A fault that is not overload (a reset, a 502, a timeout) is most often a random one: asked again at
            # once, since the request holds a slot of the run meanwhile; from the second retry on, for busy
            # answers and for a vendor that refuses connections, backoff (the controller backs off the run only
            # on overload).
            delay = random.uniform(0, 2 * min(MAX_BACKOFF, self.backoff * 2**attempt))
            unreachable = getattr(error, "kind", "") in ("ConnectError", "ConnectTimeout")  # down: no point at once
            delay = 0.0 if attempt == 0 and not error.busy and not unreachable else delay
            delay = max(delay, error.retry_after or 0.0)
            log.info(
                "QXT %s%s: %s; retry %d of %d in %.2fs",
                endpoint,
                f" {mask(mobile)}" if mobile else "",
                type(error).__name__,
                attempt + 1,
                self.retries,
                delay,
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _send(
        self, wire: protocol.WireRequest, body: bytes, endpoint: protocol.Endpoint, mobile: str | None
    ) -> Reply:
        url = self._urls[endpoint]
        try:
            # The attempt's timeout counts only time this process ran: after a suspension (Ctrl-Z, a
            # closed lid) the answers that arrived meanwhile are read, not timed out and paid again.
            async with awake_timeout(self.timeout):
                if self._fast and wire.data:  # the hot path: aiohttp, no httpx objects
                    reply: Reply = await self._transport.post(  # type: ignore[attr-defined]
                        self._url_text[endpoint], body, self._plain_form_headers
                    )
                    return reply
                if wire.params:
                    url = url.copy_merge_params(wire.params)
                request = httpx.Request(wire.method, url, headers=self._form_headers if wire.data else self._headers,
                                        content=body, extensions=self._extensions)  # fmt: skip
                response = await self._transport.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                return Reply(response.status_code, response.headers, response.content)
        except TimeoutError:
            failure, kind = f"The request to {url.host} timed out after {self.timeout:g} s (ReadTimeout)", "ReadTimeout"
        except httpx.TransportError as exc:
            what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
            failure = f"The request to {url.host} {what}: {type(exc).__name__}: {self._apikey.redact(str(exc))}"
            kind = type(exc).__name__
        # Raised outside the except block: no __context__ chain to the httpx error, whose
        # request object holds the key.
        error = ConnectionFailedError(failure, mobile=mobile)
        error.kind = kind
        raise error

    async def aclose(self) -> None:
        """Close connections; idempotent."""
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Client:
    """The synchronous face of :class:`AsyncClient` (same arguments, same errors).

    Works in scripts and inside Jupyter (where a loop is already running).

    Example::

        with Client(base_url=url) as client:
            client.status("13972565391").now_isp
    """

    def __init__(self, apikey: Secret | str | None = None, **options: Any) -> None:
        apikey = None if apikey is None else Secret.wrap(apikey)  # first: no frame local shows the key
        self._async = AsyncClient(apikey, **options)
        self._runner = LoopThread("qxt-client")

    def __repr__(self) -> str:
        inner = getattr(self, "_async", None)
        return repr(inner).replace("AsyncClient", "Client", 1) if inner else "Client(apikey=***)"

    @property
    def base_url(self) -> str:
        return self._async.base_url

    def status(self, mobile: str) -> PhoneStatus:
        """See :meth:`AsyncClient.status`."""
        return self._runner.run(self._async.status(mobile))

    def balance(self) -> Balance:
        """See :meth:`AsyncClient.balance`."""
        return self._runner.run(self._async.balance())

    def close(self) -> None:
        """Close connections and the private loop; idempotent."""
        if not self._runner._closed:
            self._runner.run(self._async.aclose())
            self._runner.close()

    def __del__(self) -> None:
        # Left unclosed: one ResourceWarning (shown with -W default, as httpx's), then closed quietly,
        # where aiohttp would print "Unclosed client session" to stderr.
        runner = getattr(self, "_runner", None)
        if runner is None or runner._closed:
            return
        warnings.warn("a qxt_pandas.Client was not closed: use `with Client(...) as client:` or "
                      "client.close()", ResourceWarning, stacklevel=2)  # fmt: skip
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
