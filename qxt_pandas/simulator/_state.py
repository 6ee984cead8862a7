"""Accounts, fault rates and the billing ledger of the simulator."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

PREPAID = "预付费"
POSTPAID = "后付费"

#: Keys of the two accounts every simulator has unless told otherwise (32 characters,
#: as the vendor's keys are). They are public: they open only the simulator.
DEMO_APIKEY = "5imu1a7ed0000000000000000000demo"
DEMO_POSTPAID_APIKEY = "5imu1a7ed00000000000000postpaid0"


@dataclass
class Account:
    """A simulated account. ``allowed_ips=None`` accepts every client address."""

    apikey: str
    fee_type: str = PREPAID
    balance: int = 1_000_000
    allowed_ips: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.fee_type not in (PREPAID, POSTPAID):
            raise ValueError(f"fee_type must be {PREPAID!r} or {POSTPAID!r}")
        if self.allowed_ips is not None:
            self.allowed_ips = frozenset(self.allowed_ips)

    def __repr__(self) -> str:  # the simulator's keys are test data, but keep the habit
        return f"Account(apikey='{self.apikey[:4]}…', fee_type={self.fee_type!r}, balance={self.balance})"


@dataclass(frozen=True)
class Faults:
    """Per-request probabilities of each injected fault (each 0..1).

    - ``busy``: a ``-8`` answer (not charged).
    - ``http_error``: HTTP 500/502/503 with an HTML body (not charged).
    - ``truncated``: an answer cut short before its code (charged, lost in transit; nothing in
      what arrives shows the charge, so the client may retry it).
    - ``reset``: the connection dropped after the headers (charged, lost).
    - ``hang``: no answer until the client gives up (charged, lost).

    ``endpoints`` limits them to ``"status"`` or ``"balance"`` requests.
    """

    busy: float = 0.0
    http_error: float = 0.0
    truncated: float = 0.0
    reset: float = 0.0
    hang: float = 0.0
    endpoints: frozenset[str] = frozenset({"status", "balance"})

    @classmethod
    def mixed(cls, total: float, endpoints: frozenset[str] = frozenset({"status", "balance"})) -> Faults:
        """Every kind of fault, ``total`` of all requests between them."""
        each = total / 5
        return cls(each, each, each, each, each, endpoints)

    def pick(self, draw: float) -> str | None:
        """The fault for a uniform ``draw`` in [0, 1), or ``None``."""
        for kind in ("busy", "http_error", "truncated", "reset", "hang"):
            draw -= getattr(self, kind)
            if draw < 0:
                return kind
        return None


@dataclass(frozen=True)
class Charge:
    """One paid query. ``delivered=False`` when a fault lost the answer on the way."""

    apikey: str
    mobile: str
    delivered: bool


@dataclass
class Ledger:
    """Every paid query, in order; safe to read from another thread."""

    _charges: list[Charge] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, charge: Charge) -> None:
        with self._lock:
            self._charges.append(charge)

    @property
    def charges(self) -> list[Charge]:
        with self._lock:
            return list(self._charges)

    def paid(self, apikey: str | None = None, *, delivered_only: bool = False) -> Counter[str]:
        """How many times each number was paid for (by one key, or all)."""
        return Counter(
            c.mobile
            for c in self.charges
            if (apikey is None or c.apikey == apikey) and (c.delivered or not delivered_only)
        )

    def paid_twice(self, apikey: str | None = None) -> dict[str, int]:
        """Numbers whose answer was delivered and paid for more than once: should be empty."""
        return {m: n for m, n in self.paid(apikey, delivered_only=True).items() if n > 1}

    def __len__(self) -> int:
        return len(self.charges)

    def clear(self) -> None:
        with self._lock:
            self._charges.clear()
