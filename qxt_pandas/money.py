"""Money in yuan: what a query costs, and what a plan or a run comes to.

The vendor's balance counts queries (可查询的次数), not yuan, and says nothing of
the price: that is in the customer's contract. So a price is given, never guessed:
``price=0.05`` (the accessor, ``plan()``), ``--price 0.05`` (the command and the
console) or ``$QXT_PRICE``. It is kept as an exact :class:`~decimal.Decimal`, so
2,016 queries at ¥0.05 are ¥100.80, not ¥100.80000000000001.

Only answers with code 0 are charged; "no information" (-4) and the vendor's
invalid codes are not, so a plan's cost is an upper bound ("at most").

Example::

    price = parse_price("0.05")
    yuan(cost(2_016, price))   # '¥100.80'
"""

from __future__ import annotations

import decimal
import numbers
import os
from decimal import Decimal

__all__ = ["MOST_PRICE", "cost", "parse_price", "price_from_env", "yuan"]

#: The highest price per query taken: more is surely a slip (fen for yuan, a total for a price).
MOST_PRICE = Decimal(100)
_FEN = Decimal("0.01")


def parse_price(price: Decimal | float | str | None, name: str = "price") -> Decimal | None:
    """A price per query in yuan, exactly: ``'0.05'``, ``0.05``, ``'¥0.05'``; None stays None.

    Refused (ValueError): negative, not a number, more than :data:`MOST_PRICE`.
    """
    if price is None:
        return None
    if isinstance(price, bool) or not isinstance(price, (Decimal, numbers.Real, str)):
        raise ValueError(f"{name}={price!r}: give the price of one query in yuan, e.g. 0.05")
    text = str(price).strip().lstrip("¥￥").replace("元", "").strip() if isinstance(price, str) else repr(price)
    try:
        value = Decimal(text) if not isinstance(price, Decimal) else price
    except decimal.InvalidOperation:
        raise ValueError(f"{name}={price!r}: give the price of one query in yuan, e.g. 0.05") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{name}={price!r}: a price is a number of yuan >= 0, e.g. 0.05")
    if value > MOST_PRICE:
        raise ValueError(f"{name}={price!r}: more than ¥{MOST_PRICE} a query; give the price of ONE query in yuan "
                         "(e.g. 0.05 for 5 fen)")  # fmt: skip
    return value


def price_from_env() -> Decimal | None:
    """``$QXT_PRICE`` as a price (None when unset or empty); a bad value is a ValueError naming the variable."""
    return parse_price(os.environ.get("QXT_PRICE", "").strip() or None, name="QXT_PRICE")


def cost(queries: int, price: Decimal) -> Decimal:
    """What ``queries`` come to at ``price``, to the fen."""
    return (price * queries).quantize(_FEN, rounding=decimal.ROUND_HALF_UP)


def yuan(amount: Decimal) -> str:
    """``¥1,234.50``; a price finer than a fen keeps its digits (``¥0.035``)."""
    if amount == amount.quantize(_FEN) or abs(amount) >= 1:
        return f"¥{amount.quantize(_FEN, rounding=decimal.ROUND_HALF_UP):,}"
    return f"¥{amount.normalize():f}"
