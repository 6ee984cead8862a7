"""The vendor's wire format: build requests, parse answers. Pure functions.

Interface document sections 1 and 2: two endpoints, GET or POST, parameters
``apikey`` and ``mobile``, JSON answers ``{code, reason, result}``. The
service often labels JSON as ``text/html``, so only the Content-Type's charset
is read; numbers it sends as strings (``"12048"``, ``"1"``) become ints and
bools. Every answer the vendor may have charged for is kept: a body in any
shape the document shows (bare keys, trailing commas, a BOM, GBK) is read
leniently when strict JSON fails; an empty or missing result field is None;
and a 2xx body that cannot be read at all but shows ``code: 0`` is
:class:`~qxt_pandas.errors.ChargedUnreadableError` (stored, not retried),
where a body with no code stays a transient fault.

Example::

    >>> req = build_request("status", "k" * 32, "POST", "13972565391")
    >>> req.path, req.params
    ('/ssPhone_Status', None)
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from ..errors import (
    ChargedUnreadableError,
    HttpStatusError,
    UnexpectedResponseError,
    UnparsableResponseError,
    error_for_code,
)
from ..masking import mask_text
from . import _lenient
from ._secret import Secret

__all__ = [
    "DEFAULT_BASE_URL",
    "ENDPOINT_PATHS",
    "SIMULATOR_HEADER",
    "Balance",
    "PhoneStatus",
    "WireRequest",
    "abridge",
    "build_request",
    "decode_body",
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
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([\w.:-]+)", re.IGNORECASE)
#: ``code: 0`` / ``"code":0`` / ``'code' = "0"`` somewhere in a body: the vendor answered, and charged.
_CODE_ZERO = re.compile(r"""(?:^|[{,\s])["']?code["']?\s*[:=]\s*["']?0(?![\d.])""")
_STATUS_FIELDS = frozenset({"Status", "Area", "Is_MNP", "Init_isp", "Now_isp"})


@dataclass(frozen=True, slots=True)
class PhoneStatus:
    """One number's answer (the vendor's ``Mobile, Status, Area, Is_MNP, Init_isp, Now_isp``).

    A field the vendor left empty or out is None: the answer was paid for and is kept as it came.
    """

    mobile: str
    status: str | None
    area: str | None
    is_mnp: bool | None
    init_isp: str | None
    now_isp: str | None


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
    http_status: int,
    body: bytes,
    *,
    mobile: str | None = None,
    secret: Secret | None = None,
    content_type: str | None = None,
) -> PhoneStatus:
    """A ``ssPhone_Status`` answer as :class:`PhoneStatus`, or the typed error it means.

    Every code-0 answer is kept: empty, missing or mangled fields are None (``Mobile``
    defaults to the number asked). ``secret`` is scrubbed from any body quoted in an error;
    ``content_type`` names the body's charset (UTF-8 otherwise; GBK is tried when UTF-8 fails).
    """
    redact = secret or _NO_SECRET
    result = _result(http_status, body, mobile, redact, content_type, charged=True)
    if not _STATUS_FIELDS.intersection(result):  # code 0, charged, but not a status answer at all
        raise _unreadable(body, redact, mobile)
    return PhoneStatus(
        mobile=_text(result.get("Mobile")) or mobile or "",
        status=_text(result.get("Status")),
        area=_text(result.get("Area")),
        is_mnp=_as_bool(result.get("Is_MNP")),
        init_isp=_text(result.get("Init_isp")),
        now_isp=_text(result.get("Now_isp")),
    )


def parse_balance(
    http_status: int, body: bytes, *, secret: Secret | None = None, content_type: str | None = None
) -> Balance:
    """A ``balance`` answer as :class:`Balance`, or the typed error it means."""
    redact = secret or _NO_SECRET
    result = _result(http_status, body, None, redact, content_type, charged=False)
    try:
        return Balance(fee_type=str(result["feeType"]), balance=_as_int(result["balance"]))
    except (KeyError, ValueError) as exc:
        raise _unexpected(f"the balance answer lacks or mangles {exc}", body, redact, None) from None


def decode_body(body: bytes, content_type: str | None = None) -> Any:
    """The value a body holds: strict JSON (fast), else read leniently in its charset; None if unreadable.

    The charset comes from ``content_type``; without one, UTF-8, then GB18030 (a superset of
    GBK) when the bytes are not UTF-8. A BOM (UTF-8 or UTF-16) is honoured.
    """
    try:
        return orjson.loads(body[3:] if body.startswith(b"\xef\xbb\xbf") else body)
    except ValueError:
        pass
    text = _text_of(body, content_type)
    try:
        return json.loads(text)
    except ValueError:
        return _lenient.loads(text)


def _text_of(body: bytes, content_type: str | None) -> str:
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return body.decode("utf-16", errors="replace")
    named = _CHARSET.search(content_type or "")
    tries = [named.group(1)] if named else []
    for charset in (*tries, "utf-8", "gb18030"):
        try:
            if codecs.lookup(charset).name in ("gbk", "gb2312"):
                charset = "gb18030"  # its superset: a GBK body with a rarer character still reads
            return body.decode(charset).lstrip("\ufeff")
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("utf-8", errors="replace").lstrip("\ufeff")


def _result(
    http_status: int, body: bytes, mobile: str | None, redact: Secret, content_type: str | None, *, charged: bool
) -> dict[str, Any]:
    """The ``result`` object of a successful answer; raises for everything else.

    ``charged``: a code-0 answer of this endpoint costs money, so one that cannot be read is
    :class:`ChargedUnreadableError` (kept, not asked again) rather than a transient fault.
    """
    if http_status >= 400:
        raise HttpStatusError(
            f"QXT answered HTTP {http_status} instead of JSON: {abridge(body, redact)}",
            status_code=http_status,
            mobile=mobile,
        )
    data = decode_body(body, content_type)
    if not isinstance(data, dict) or "code" not in data:
        if charged and http_status < 300 and _CODE_ZERO.search(_text_of(body, content_type)):
            raise _unreadable(body, redact, mobile)
        if data is None:
            raise UnparsableResponseError(
                f"QXT's answer is not JSON (HTTP {http_status}, {len(body)} bytes): {abridge(body, redact)}",
                mobile=mobile,
            )
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
        if charged:
            raise _unreadable(body, redact, mobile)
        raise _unexpected("code 0 but no 'result' object", body, redact, mobile)
    return result


def _unreadable(body: bytes, redact: Secret, mobile: str | None) -> ChargedUnreadableError:
    kept = abridge(body, redact)
    return ChargedUnreadableError(
        f"QXT answered code 0 (so it probably charged) but the answer cannot be read: {kept}.",
        reason=kept,
        mobile=mobile,
    )


def _unexpected(what: str, body: bytes, redact: Secret, mobile: str | None) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        f"QXT's answer is not in the documented shape: {what}. It said: {abridge(body, redact)}",
        mobile=mobile,
    )


def abridge(body: bytes, redact: Secret) -> str:
    """The start of a body, on one line, for error messages: the secret removed, numbers masked."""
    text = mask_text(redact.redact(" ".join(_text_of(body, None).split())))
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


def _text(value: Any) -> str | None:
    """A result field as text; None when empty or absent (a paid answer is kept with the gap)."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


_TRUE = frozenset({"1", "true", "是", "y", "yes"})
_FALSE = frozenset({"0", "false", "否", "n", "no"})


def _as_bool(value: Any) -> bool | None:
    """``Is_MNP`` as a bool; None when empty, absent or unrecognised."""
    text = _text(value)
    if text is None:
        return None
    text = text.lower()
    return True if text in _TRUE else False if text in _FALSE else None
