"""The vendor's wire format: build requests, parse answers. Pure functions.

Interface document sections 1 and 2: two endpoints, GET or POST, parameters
``apikey`` and ``mobile``, JSON answers ``{code, reason, result}``. The
service often labels JSON as ``text/html``, so the Content-Type is ignored;
numbers it sends as strings (``"12048"``, ``"1"``) become ints and bools.

Example::

    >>> req = build_request("status", "k" * 32, "POST", "13972565391")
    >>> req.path, req.params
    ('/ssPhone_Status', None)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from ._secret import Secret
from .errors import (
    HttpStatusError,
    UnexpectedResponseError,
    UnparsableResponseError,
    error_for_code,
)

__all__ = [
    "DEFAULT_BASE_URL",
    "ENDPOINT_PATHS",
    "SIMULATOR_HEADER",
    "Balance",
    "PhoneStatus",
    "WireRequest",
    "build_request",
    "parse_balance",
    "parse_status",
]

DEFAULT_BASE_URL = "https://ps.szqxt.com"
#: The header by which the bundled simulator says what it is (the vendor never sends it), so that
#: a checkpoint of simulated answers is never used against a real service on the same host.
SIMULATOR_HEADER = "x-qxt-simulator"
ENDPOINT_PATHS = {"status": "/ssPhone_Status", "balance": "/balance"}
Endpoint = Literal["status", "balance"]
Method = Literal["GET", "POST"]

_ABRIDGE = 160
_NO_SECRET = Secret("")


@dataclass(frozen=True, slots=True)
class PhoneStatus:
    """One number's answer (the vendor's ``Mobile, Status, Area, Is_MNP, Init_isp, Now_isp``)."""

    mobile: str
    status: str
    area: str
    is_mnp: bool
    init_isp: str
    now_isp: str


@dataclass(frozen=True, slots=True)
class Balance:
    """The account: ``fee_type`` 预付费 (prepaid) or 后付费 (postpaid); ``balance`` in queries."""

    fee_type: str
    balance: int


@dataclass(frozen=True, slots=True)
class WireRequest:
    """What to send: query ``params`` for GET, form ``data`` for POST."""

    method: Method
    path: str
    params: dict[str, str] | None = field(repr=False)  # they hold the key
    data: dict[str, str] | None = field(repr=False)


def build_request(endpoint: Endpoint, apikey: str, method: Method = "POST", mobile: str | None = None) -> WireRequest:
    """The request for ``endpoint``; with POST the key travels in the body, not the URL."""
    fields = {"apikey": apikey}
    if endpoint == "status":
        if mobile is None:
            raise ValueError("the status endpoint needs a mobile number")
        fields["mobile"] = mobile
    path = ENDPOINT_PATHS[endpoint]
    if method == "POST":
        return WireRequest("POST", path, None, fields)
    if method == "GET":
        return WireRequest("GET", path, fields, None)
    raise ValueError(f"method must be 'GET' or 'POST', not {method!r}")


def parse_status(
    http_status: int, body: bytes, *, mobile: str | None = None, secret: Secret | None = None
) -> PhoneStatus:
    """A ``ssPhone_Status`` answer as :class:`PhoneStatus`, or the typed error it means.

    ``secret`` is scrubbed from any body quoted in an error message.
    """
    redact = secret or _NO_SECRET
    result = _result(http_status, body, mobile, redact)
    try:
        return PhoneStatus(
            mobile=str(result["Mobile"]),
            status=str(result["Status"]),
            area=str(result["Area"]),
            is_mnp=_as_bool(result["Is_MNP"]),
            init_isp=str(result["Init_isp"]),
            now_isp=str(result["Now_isp"]),
        )
    except (KeyError, ValueError) as exc:
        raise _unexpected(f"the status answer lacks or mangles {exc}", body, redact, mobile) from None


def parse_balance(http_status: int, body: bytes, *, secret: Secret | None = None) -> Balance:
    """A ``balance`` answer as :class:`Balance`, or the typed error it means."""
    redact = secret or _NO_SECRET
    result = _result(http_status, body, None, redact)
    try:
        return Balance(fee_type=str(result["feeType"]), balance=_as_int(result["balance"]))
    except (KeyError, ValueError) as exc:
        raise _unexpected(f"the balance answer lacks or mangles {exc}", body, redact, None) from None


def _result(http_status: int, body: bytes, mobile: str | None, redact: Secret) -> dict[str, Any]:
    """The ``result`` object of a successful answer; raises for everything else."""
    if http_status >= 400:
        raise HttpStatusError(
            f"QXT answered HTTP {http_status} instead of JSON: {abridge(body, redact)}",
            status_code=http_status,
            mobile=mobile,
        )
    try:
        data = orjson.loads(body[3:] if body.startswith(b"\xef\xbb\xbf") else body)  # BOM: as utf-8-sig
    except (UnicodeDecodeError, ValueError):
        raise UnparsableResponseError(
            f"QXT's answer is not JSON (HTTP {http_status}, {len(body)} bytes): {abridge(body, redact)}",
            mobile=mobile,
        ) from None
    if not isinstance(data, dict) or "code" not in data:
        raise _unexpected("the answer has no 'code'", body, redact, mobile)
    try:
        code = _as_int(data["code"])
    except ValueError:
        raise _unexpected("the answer's 'code' is not a number", body, redact, mobile) from None
    reason = data.get("reason")
    reason = None if reason is None else str(reason)
    if code != 0:
        raise error_for_code(code, reason, mobile=mobile)
    result = data.get("result")
    if not isinstance(result, dict):
        raise _unexpected("code 0 but no 'result' object", body, redact, mobile)
    return result


def _unexpected(what: str, body: bytes, redact: Secret, mobile: str | None) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        f"QXT's answer is not in the documented shape: {what}. It said: {abridge(body, redact)}",
        mobile=mobile,
    )


def abridge(body: bytes, redact: Secret) -> str:
    """The start of a body, on one line, for error messages (secret removed)."""
    text = redact.redact(" ".join(body.decode("utf-8", errors="replace").split()))
    if len(text) > _ABRIDGE:
        text = text[:_ABRIDGE] + f"… ({len(body)} bytes)"
    return repr(text) if text else "(empty body)"


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        number = float(text)  # "12048.0"; raises ValueError for junk
        if not number.is_integer():
            raise ValueError(value) from None
        return int(number)


def _as_bool(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true"):
        return True
    if text in ("0", "false"):
        return False
    raise ValueError(f"Is_MNP={value!r}")
