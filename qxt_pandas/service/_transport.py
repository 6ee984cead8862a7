"""The transport seam: httpx is the client API, aiohttp moves the bytes.

Why: httpx's own connection pool spends its time in pool bookkeeping above
about 32 connections (encode/httpx#3215); measured here it reached 0.18 of
the ideal throughput at 64 connections, while aiohttp holds 0.9+ at 256. This
transport keeps httpx's request/response objects, timeouts and exceptions, so
the rest of the library (and tests with ``httpx.MockTransport`` or
``httpx.ASGITransport``) never know which one runs.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # imported at the first request (0.15 s of a start; a re-run with every answer stored sends none)
    import aiohttp


def _errors() -> tuple[tuple[type[BaseException], type[httpx.TransportError]], ...]:
    """aiohttp failure -> the httpx exception the rest of the library expects."""
    import aiohttp

    return (
        (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
        (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
        (TimeoutError, httpx.ReadTimeout),
        (aiohttp.ClientConnectorError, httpx.ConnectError),
        (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
        (aiohttp.ClientError, httpx.NetworkError),
    )


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` over one ``aiohttp.ClientSession``.

    ``max_connections`` caps open connections (aiohttp queues the rest).
    The session is made on first use, inside the loop that uses it.
    """

    def __init__(self, max_connections: int = 100) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._no_timeout: aiohttp.ClientTimeout | None = None
        self._proxies: dict[tuple[str, str], str | None] = {}
        self._url_proxies: dict[str, str | None] = {}

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        # The client's own timeout (``_awake``) bounds each attempt; aiohttp's would count time suspended.
        self._no_timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None, sock_read=None)
        connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=300)
        # auto_decompress=False: httpx decodes Content-Encoding itself.
        # trust_env=False: aiohttp would then look up netrc and proxies in a thread on
        # every request (two thread hops each); _proxy() does it once per host instead.
        return aiohttp.ClientSession(
            connector=connector, auto_decompress=False, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
        )

    def _proxy(self, url: httpx.URL) -> str | None:
        """The HTTP(S)_PROXY for ``url`` unless NO_PROXY exempts it, looked up once per host."""
        key = (url.scheme, url.host)
        if key not in self._proxies:
            proxies = urllib.request.getproxies_environment()
            bypass = urllib.request.proxy_bypass_environment(url.host, proxies) if proxies else True  # type: ignore[attr-defined]  # (undocumented, not in typeshed)
            self._proxies[key] = None if bypass else proxies.get(url.scheme)
        return self._proxies[key]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        import aiohttp

        t = request.extensions.get("timeout", {})
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=t.get("pool"),
            sock_connect=t.get("connect"),
            sock_read=t.get("read"),
        )
        try:
            async with self._session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=request.content or None,
                allow_redirects=False,
                timeout=timeout,
                proxy=self._proxy(request.url),
            ) as resp:
                content = await resp.read()
                return httpx.Response(
                    status_code=resp.status,
                    headers=resp.raw_headers,
                    content=content,
                    request=request,
                    extensions={"http_version": b"HTTP/1.1"},
                )
        except Exception as exc:
            raise _mapped(exc, request) from None

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        """The client's hot path: a form POST straight to aiohttp, no httpx objects either way.

        Measured at 256 requests in flight: the httpx Request/Response/Headers around each
        aiohttp request cost about as much CPU as aiohttp itself. Failures raise the same httpx
        exceptions as :meth:`handle_async_request`. The caller bounds the time (see ``_awake``).
        """
        if self._session is None:
            self._session = self._open()
        if url not in self._url_proxies:
            self._url_proxies[url] = self._proxy(httpx.URL(url))
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._no_timeout,
                proxy=self._url_proxies[url],
            ) as resp:
                return Reply(resp.status, resp.headers, await resp.read())  # fmt: skip
        except Exception as exc:
            raise _mapped(exc, None) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class Reply:
    """An answer as the client reads it: status, headers (case-insensitive), body."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code, self.headers, self.content = status_code, headers, content


def _mapped(exc: Exception, request: httpx.Request | None) -> Exception:
    """The httpx exception the rest of the library expects for an aiohttp failure (else ``exc``)."""
    for source, target in _errors():
        if isinstance(exc, source):
            # The message names the failure, not the URL (which holds the key for GET).
            return target(f"{type(exc).__name__}: {_describe(exc)}", request=request)
    return exc


def _describe(exc: BaseException) -> str:
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc.os_error})"
    return str(exc) or "no detail"
