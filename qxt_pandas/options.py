"""Every option of a check, validated once, in one place, before any request.

The accessor, the command, Dask and Spark all build a :class:`CheckOptions`;
its ``__post_init__`` refuses a value that would re-pay, run wild or hang
(``max_age=-5``, ``concurrency=0``, ``rate=nan``, ``timeout=-1`` …) with a
``ValueError`` naming the option and what is allowed. The API key is wrapped
in a :class:`~qxt_pandas.service._secret.Secret` here, so no repr, traceback local or
log line can show it.

Example::

    options = CheckOptions(checkpoint="runs/crm.qxt", concurrency=32, max_age="90d")
    options.max_age          # 7776000.0 (seconds)
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

import httpx
import pandas as pd

from .money import parse_price, price_from_env
from .service._secret import Secret, hide_key
from .service.client import DEFAULT_BACKOFF, DEFAULT_RETRIES, DEFAULT_TIMEOUT, AsyncClient, check_base_url
from .service.concurrency import AUTO, MAX_CONCURRENCY, Adaptive, Controller, Fixed
from .service.engine import DEFAULT_PATIENCE

__all__ = ["PROGRESS_STYLES", "CheckOptions", "parse_age", "store_key", "with_options"]

#: What ``progress=`` accepts, and the style each means.
PROGRESS_STYLES = {True: "bar", False: "off", "bar": "bar", "log": "log", "json": "json", "off": "off"}


@dataclass(frozen=True)
class CheckOptions:
    """Every option of a check, with the defaults the accessor and the command share.

    ``max_age`` is stored in seconds whatever form it was given in.
    """

    apikey: Secret | str | None = None
    base_url: str | None = None
    concurrency: int | str = AUTO  # "auto": adapt to the service's push-back; an int: fixed
    max_concurrency: int = MAX_CONCURRENCY  # the ceiling of "auto"
    rate: float | None = None
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    checkpoint: str | os.PathLike[str] | None = None
    max_age: timedelta | float | str | None = None
    budget: int | None = None
    progress: bool | str = True  # True/"bar", "log" (plain lines, for ETL logs), "json" (for programs), False/"off"
    patience: float = DEFAULT_PATIENCE  # seconds of nothing but push-back before a run stops asking
    retry_unreadable: bool = False  # ask again numbers stored as "charged, unreadable" (they are paid again)
    store_key: Secret | str | None = None  # keep numbers in the store only as keyed hashes (keyed.py)
    retention: timedelta | float | str | None = None  # answers older than this are removed, never served
    show_numbers: bool = False  # messages show numbers whole (default masked: 139****5391)
    mask_output: bool = False  # the checked column and qxt_mobile as text, every number masked (139****5391)
    price: Decimal | float | str | None = None  # yuan per query (default $QXT_PRICE): plans and runs show yuan
    transport: httpx.AsyncBaseTransport | None = None  # e.g. SimulatorTransport, for tests

    def __post_init__(self) -> None:
        if self.apikey is not None and not isinstance(self.apikey, Secret):
            object.__setattr__(self, "apikey", Secret.wrap(self.apikey))
        object.__setattr__(self, "store_key", store_key(self.store_key))
        object.__setattr__(self, "price", price_from_env() if self.price is None else parse_price(self.price))
        checked = {
            "concurrency": self.concurrency if self.concurrency == AUTO else _whole_or_auto(self.concurrency),
            "max_concurrency": _whole("max_concurrency", self.max_concurrency, minimum=1, maximum=MOST_IN_FLIGHT),
            "patience": _real("patience", self.patience, "a number of seconds > 0"),
            "retries": _whole("retries", self.retries, minimum=0, maximum=MOST_RETRIES),
            "budget": None if self.budget is None else _whole("budget", self.budget, minimum=0),
            "rate": None
            if self.rate is None
            else _real("rate", self.rate, f"requests per second >= {LEAST_RATE}, or None", least=LEAST_RATE),
            "timeout": _real("timeout", self.timeout, "a number of seconds > 0"),
            "backoff": _real("backoff", self.backoff, "a number of seconds >= 0", zero=True),
            "max_age": parse_age(self.max_age),
            "retention": parse_age(self.retention, name="retention"),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        for flag in ("show_numbers", "mask_output"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag}={getattr(self, flag)!r}: use True or False")
        if not isinstance(self.retry_unreadable, bool):
            raise ValueError(f"retry_unreadable={self.retry_unreadable!r}: use True or False")
        if not isinstance(self.progress, (bool, str)) or self.progress not in PROGRESS_STYLES:
            raise ValueError(f"progress={self.progress!r}: use True, False, 'bar', 'log', 'json' or 'off'")
        if self.checkpoint is not None and not isinstance(self.checkpoint, (str, os.PathLike)):
            raise ValueError(f"checkpoint={self.checkpoint!r}: use a directory path (str or pathlib.Path) or None")
        if self.checkpoint is not None and str(self.checkpoint).strip() == "":
            raise ValueError("checkpoint='': an empty path would make the working directory the checkpoint; "
                             "name a directory (e.g. 'runs/crm.qxt') or pass None")  # fmt: skip
        if self.transport is not None and not isinstance(self.transport, httpx.AsyncBaseTransport):
            raise ValueError("transport: use an httpx.AsyncBaseTransport (e.g. SimulatorTransport(sim)) or None")
        check_base_url(self.base_url)

    def __repr__(self) -> str:  # apikey hidden
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("apikey", "store_key")}
        return f"CheckOptions({', '.join(f'{k}={v!r}' for k, v in shown.items() if v is not None)})"

    @property
    def unit_price(self) -> Decimal | None:
        """``price`` in yuan per query, exactly (it is held so once constructed); None: no price given."""
        return cast("Decimal | None", self.price)

    @property
    def max_age_seconds(self) -> float | None:
        """``max_age`` in seconds (it is held so once constructed)."""
        return cast("float | None", self.max_age)

    @property
    def retention_seconds(self) -> float | None:
        """``retention`` in seconds (it is held so once constructed)."""
        return cast("float | None", self.retention)

    def __reduce__(self) -> tuple[Any, ...]:
        # Dask and Spark ship options to workers in a pickle; the key goes with them, by design
        # (docs/dask.md says how to keep it in the workers' environment instead).
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("apikey", "store_key"):
            if isinstance(values[name], Secret):
                values[name] = values[name].reveal()
        return (_rebuild, (values,))

    @property
    def adaptive(self) -> bool:
        """Whether the limit on requests in flight adapts to the service (``concurrency="auto"``)."""
        return self.concurrency == AUTO

    def controller(self) -> Controller:
        """A new limit on requests in flight for one run."""
        return Adaptive(maximum=self.max_concurrency) if self.adaptive else Fixed(int(self.concurrency))

    def share(self, tasks: int, index: int = 0) -> CheckOptions:
        """Task ``index`` of ``tasks`` parallel tasks' options: the limits split so that together they keep them.

        With ``"auto"`` each task adapts on its own signals from its share of the ceiling; a
        service that holds less pushes back on all of them, and their limits shrink to add up to it.
        The budget's remainder goes to the first tasks, so the shares add up to the whole budget.
        """
        return replace(
            self,
            concurrency=self.concurrency if self.adaptive else max(1, int(self.concurrency) // tasks),
            max_concurrency=max(1, self.max_concurrency // tasks),
            rate=None if self.rate is None else self.rate / tasks,
            budget=None if self.budget is None else self.budget // tasks + (index % tasks < self.budget % tasks),
            progress=False,
        )

    @property
    def connections(self) -> int:
        """The most requests this run can have in flight (the client's connection pool)."""
        return self.max_concurrency if self.adaptive else int(self.concurrency)

    @property
    def progress_style(self) -> str:
        """``"bar"``, ``"log"`` or ``"off"``."""
        return PROGRESS_STYLES[self.progress]

    def client(self) -> AsyncClient:
        return AsyncClient(
            self.apikey,
            base_url=self.base_url,
            timeout=self.timeout,
            retries=self.retries,
            backoff=self.backoff,
            max_connections=self.connections,
            transport=self.transport,
        )


#: Sane ranges: beyond them a value is a typo that would hang a run or hammer the service.
MOST_IN_FLIGHT = 4096
MOST_RETRIES = 20
LEAST_RATE = 0.01  # requests per second: one every 100 s


def _rebuild(values: dict[str, Any]) -> CheckOptions:
    return CheckOptions(**values)


def _whole_or_auto(value: object) -> int:
    if isinstance(value, str):
        raise ValueError(f"concurrency={value!r}: use 'auto' (adapt to the service) or a whole number "
                         f"from 1 to {MOST_IN_FLIGHT:,}")  # fmt: skip
    return _whole("concurrency", value, minimum=1, maximum=MOST_IN_FLIGHT)


def _whole(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    whole = int(cast(numbers.Integral, value)) if _is_whole(value) else None
    if whole is None or whole < minimum or (maximum is not None and whole > maximum):
        bounds = f"from {minimum} to {maximum:,}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name}={value!r}: use a whole number {bounds}")
    return whole


def _real(name: str, value: object, allowed: str, *, zero: bool = False, least: float = 0.0) -> float:
    if _is_real(value):
        number = float(value)  # type: ignore[arg-type]  # (a numbers.Real)
        if math.isfinite(number) and (number > least or (zero and number == 0) or (least and number == least)):
            return number
    raise ValueError(f"{name}={value!r}: use {allowed}")


def _is_whole(value: object) -> bool:
    """A whole number, numpy's included, and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    """A real number, numpy's included, and not a bool (type checkers do not know numbers.Real)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def store_key(given: Secret | str | None) -> Secret | None:
    """The store key: ``given``, else ``$QXT_STORE_KEY``, else None; refused (ValueError) when too short to be
    a secret. Every command that takes one (check, forget, copy) reads it here, so they all say the same."""
    key = given if given is not None else os.environ.get("QXT_STORE_KEY") or None
    if key is None:
        return None
    secret = Secret.wrap(key)
    if len(secret.reveal().strip()) < 16:
        raise ValueError("store key: use at least 16 characters (an empty key file? a random key: python -c "
                         "'import secrets; print(secrets.token_urlsafe(32))')")  # fmt: skip
    return secret


def parse_age(age: timedelta | float | str | None, name: str = "max_age") -> float | None:
    """Seconds from a timedelta, a number of seconds, or text with its unit: ``'90d'``, ``'12h'``, ``'90m'``,
    ``'45s'``, ``'2w'``.

    Text without a unit is refused: ``--retention 1`` meant a day to its writer and a second to the
    code, and wiped a store. Negative, infinite or NaN ages are refused: they would re-ask (and re-pay)
    every stored answer.
    """
    if age is None:
        return None
    if type(age).__name__ == "timedelta64" or (hasattr(age, "total_seconds") and not isinstance(age, timedelta)):
        age = pd.Timedelta(age).to_pytimedelta()  # numpy timedelta64, pandas Timedelta
    if isinstance(age, timedelta):
        seconds = age.total_seconds()
    elif _is_real(age):
        seconds = float(age)
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(age).lower())
        if not match:
            raise ValueError(f"{name}={age!r}: give an age with its unit, e.g. '30d', '12h', '90m', '45s', '2w'")
        if not match.group(2):
            n = match.group(1)
            raise ValueError(f"{name}={age!r} has no unit: write '{n}d' for days, '{n}h' for hours, '{n}m' for "
                             f"minutes or '{n}s' for seconds")  # fmt: skip
        seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{name}={age!r}: an age must be >= 0 and finite (None: answers never expire)")
    return seconds


def with_options(options: CheckOptions | None = None, **overrides: Any) -> CheckOptions:
    """``options`` with ``overrides``; unknown names are a clear TypeError, bad values a ValueError."""
    hide_key(overrides)  # first: nothing below may raise with the raw key in a frame's locals
    names = {f.name for f in fields(CheckOptions)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(sorted(unknown))}; options are {', '.join(sorted(names))}")
    return replace(options or CheckOptions(), **overrides)
