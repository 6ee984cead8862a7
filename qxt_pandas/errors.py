"""The exception tree and the vendor's code table.

Every failure the library raises is a :class:`QxtError`. Each carries data,
not just a sentence: ``code`` (the vendor's code, or ``None`` for failures that
never reached the vendor), ``reason`` (the vendor's own text), and, for
per-number answers, ``mobile``. Three class attributes sort them:

- ``retryable``: a transient fault; the client retries it with backoff.
- ``terminal``: the whole run must stop (bad key, IP not allowed, no balance).
- per-number answers (:class:`NumberError`) are neither: they belong on the
  number's row.

Example::

    try:
        client.status("13972565391")
    except qxt_pandas.InsufficientBalanceError as exc:
        print(exc.code, exc.reason)   # -5 当前余额不足...
"""

from __future__ import annotations

from typing import Any

from .masking import mask

__all__ = [
    "CHARGED_UNREADABLE",
    "VENDOR_CODES",
    "ChargedUnreadableError",
    "CheckpointError",
    "ColumnConflictError",
    "ConfigurationError",
    "ConnectionFailedError",
    "HttpStatusError",
    "InsufficientBalanceError",
    "InvalidApiKeyError",
    "InvalidMobileError",
    "InvalidRequestError",
    "IpNotAllowedError",
    "MissingApiKeyError",
    "MobileLengthError",
    "NoInformationError",
    "NumberError",
    "QxtError",
    "ServerBusyError",
    "TerminalError",
    "TransientError",
    "UnexpectedResponseError",
    "UnknownCodeError",
    "UnparsableResponseError",
    "error_for_code",
]


class QxtError(Exception):
    """Root of every error this library raises."""

    retryable: bool = False
    terminal: bool = False
    #: The service is overloaded and said so (-8, HTTP 429/503): ask again later, not a failure of the number.
    busy: bool = False
    #: A sign of overload for the concurrency controller (busy, 502/504, refused/reset/timed out).
    pushes_back: bool = False
    default_hint: str = ""
    #: How many requests the client made before raising this (1 = no retry).
    attempts: int = 1
    #: Seconds the service asked to wait (``Retry-After``), if it did.
    retry_after: float | None = None
    #: Raised before any paid query of the run (reading the balance): messages then say nothing was paid.
    paid_nothing: bool = False

    def __init__(
        self,
        message: str | None = None,
        *,
        code: int | None = None,
        reason: str | None = None,
        mobile: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.mobile = mobile
        self.hint = self.default_hint if hint is None else hint
        if message is None:
            message = self._describe()
        if self.hint:
            message = f"{message} {self.hint}"
        self.message = message
        super().__init__(message)

    def _describe(self) -> str:
        parts = [f"QXT answered code {self.code}"]
        if self.reason:
            parts.append(f"({self.reason})")
        if self.mobile:
            parts.append(f"for {mask(self.mobile)}")  # .mobile keeps it whole
        return " ".join(parts) + "."

    def __reduce__(self) -> tuple[Any, ...]:  # keep the keyword data through pickling (processes, Dask)
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))


def _rebuild(cls: type[QxtError], args: tuple[Any, ...], state: dict[str, Any]) -> QxtError:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class ConfigurationError(QxtError):
    """The library was set up wrongly; nothing was sent."""


class MissingApiKeyError(ConfigurationError):
    """No API key was given and ``QXT_APIKEY`` is not set."""

    default_hint = "Pass apikey=... or set the QXT_APIKEY environment variable; no request was sent."


class CheckpointError(ConfigurationError):
    """The checkpoint cannot be used (another service's answers, a file in the way, damage)."""


class ColumnConflictError(ConfigurationError):
    """The frame already has columns the check would add."""


class TerminalError(QxtError):
    """An answer that stops the whole run: retrying or going on cannot help.

    When it stops a check, ``answered`` and ``remaining`` count the numbers answered (and
    saved) and those not asked, and ``partial`` holds the result columns so far (or None).
    """

    terminal = True
    answered: int | None = None
    remaining: int | None = None
    partial: Any = None  # a pandas DataFrame; errors does not import pandas


class StoreUnavailableError(TerminalError):
    """The answer store cannot take answers (a database gone, read-only or refusing; a full disk): the run
    stops asking, and what it received is kept (in the store, or spilled on this machine: ``spilled``)."""

    #: A fault that may pass by itself (a lost connection, a read-only moment): retried within the patience.
    transient: bool = False
    #: Answers paid for that went to a spill file on this machine (moved into the store by the next run).
    spilled: int = 0
    #: Answers paid for that could be written neither to the store nor to a spill file: only in the results.
    unsaved: int = 0


class InvalidApiKeyError(TerminalError):
    """Code -1: the vendor does not know this API key."""

    default_hint = "Check the key in QXT_APIKEY: it must be the key shown in your QXT account (32 characters)."


class IpNotAllowedError(TerminalError):
    """Code -9: this machine's public IP is not on the account's allow-list."""

    default_hint = (
        "Ask QXT to add this machine's public IP address to the account's "
        "allow-list, or run from a machine that is on it."
    )


class InsufficientBalanceError(TerminalError):
    """Code -5: the prepaid balance cannot pay for this query."""

    default_hint = (
        "Top up the account with QXT, then run again: answers already received are kept and not paid for twice."
    )


class NumberError(QxtError):
    """A per-number answer: this number has no status, the run goes on."""


class InvalidRequestError(NumberError):
    """Code 1: a parameter was missing or malformed (key length, number)."""


class MobileLengthError(NumberError):
    """Code -2: the number does not have the length of a mobile number."""


class InvalidMobileError(NumberError):
    """Code -3: the vendor does not accept this as a mobile number."""


class NoInformationError(NumberError):
    """Code -4: the vendor found nothing for this number."""


#: The library's code (not the vendor's) for an answer that showed code 0 but could not be read.
CHARGED_UNREADABLE = -101


class ChargedUnreadableError(NumberError):
    """A 2xx answer that shows ``code: 0`` but cannot be read: the vendor probably charged for it.

    Not retried, and kept in the checkpoint as "charged, unreadable" (``code`` -101, ``reason``
    the body abridged, key and numbers masked), so no later run pays for it again unless asked
    to (``retry_unreadable=True``, ``--retry-unreadable``).
    """

    default_hint = (
        "It is kept as 'charged, unreadable' and not asked again; pass retry_unreadable=True "
        "(--retry-unreadable) to ask such numbers again on purpose."
    )

    def __init__(self, message: str | None = None, *, reason: str | None = None, mobile: str | None = None) -> None:
        super().__init__(message, code=CHARGED_UNREADABLE, reason=reason, mobile=mobile)


class TransientError(QxtError):
    """A fault that may pass: retried with backoff, then reported."""

    retryable = True


class ServerBusyError(TransientError):
    """Code -8: the vendor's system error, 'try again later'."""

    busy = True
    pushes_back = True


class HttpStatusError(QxtError):
    """The service answered with an HTTP error status instead of JSON."""

    def __init__(self, message: str | None = None, *, status_code: int, **kw: Any) -> None:
        self.status_code = status_code
        super().__init__(message, **kw)

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status_code >= 500 or self.status_code == 429

    @property
    def busy(self) -> bool:  # type: ignore[override]
        return self.status_code in (429, 503)

    @property
    def pushes_back(self) -> bool:  # type: ignore[override]
        return self.status_code in (429, 502, 503, 504)


class ConnectionFailedError(TransientError):
    """The request did not complete: refused, reset, or timed out (``kind``: httpx's name for it, e.g.
    ``ConnectError`` for a refused connection, ``ReadTimeout``)."""

    pushes_back = True
    kind = ""


class UnparsableResponseError(TransientError):
    """The body could not be read and shows no code 0 (an HTML error page, a truncated body)."""


class UnexpectedResponseError(QxtError):
    """A readable answer outside the documented shape (no ``code``; a balance without its fields).

    Not retried within the run: the same answer would come again.
    """


class UnknownCodeError(QxtError):
    """A code the vendor's table does not list; ``code`` keeps it raw."""


#: The vendor's table (interface document, section 3): code -> (class, meaning).
VENDOR_CODES: dict[int, tuple[type[QxtError], str]] = {
    1: (InvalidRequestError, "请求参数缺失, apikey 长度不对, 手机号码长度不对或有误"),
    -1: (InvalidApiKeyError, "apikey 信息不匹配 (用户信息不正确)"),
    -2: (MobileLengthError, "查询的手机号码长度不对"),
    -3: (InvalidMobileError, "请填写正确的手机号码"),
    -4: (NoInformationError, "未查询到相关信息"),
    -5: (InsufficientBalanceError, "当前余额不足发起本次查询请求"),
    -8: (ServerBusyError, "系统错误, 请稍候再试"),
    -9: (IpNotAllowedError, "ip 地址鉴权失败"),
}


def error_for_code(code: int, reason: str | None = None, *, mobile: str | None = None) -> QxtError:
    """The exception for a non-zero vendor code (unknown codes keep their value).

    Example::

        >>> error_for_code(-5, "余额不足").terminal
        True
    """
    cls = VENDOR_CODES.get(code, (UnknownCodeError, ""))[0]
    return cls(code=code, reason=reason, mobile=mobile)
