"""A plain per-row Python reading of the normalization rules in docs/numbers.md.

Not used by the library. It is the baseline that benchmarks/normalize_numbers.py
times against the vectorized ``normalize_mobiles``, and the oracle that the
property tests compare it with: two independent readings of the same rules.
It shares only the data tables (prefixes, placeholders, reason names).
"""

from __future__ import annotations

import math
import re
import unicodedata

from qxt_pandas.numbers import IOT_PREFIXES, MOBILE_PREFIXES, PLACEHOLDERS

_A = re.ASCII  # the vectorized path uses RE2, whose \d and \s are ASCII
_DECORATION = re.compile(
    "[\\s\\-‐‑‒–—―−.·•()\\[\\]{}（）【】_~/\\\\'\"\u200b\u200c\u200d\u2060\ufeff]", _A
)  # fmt: skip


def normalize_one(value: object) -> tuple[str | None, str | None]:
    """``(mobile, None)`` for a valid number, ``(None, reason)`` for anything else."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, "empty"
    if isinstance(value, bool):
        return None, "not a number"
    if isinstance(value, int):
        if value < 0:
            return None, "not a number"
        text = str(value)
    elif isinstance(value, float):
        if not math.isfinite(value) or value < 0 or value != math.floor(value):
            return None, "not a number"
        if value >= 1e18:
            return None, "wrong length"
        text = str(int(value))
    else:
        text = str(value)
    if re.fullmatch(r"1[3-9]\d{9}", text, _A):
        return _classify(text)
    return _clean(text)


def _clean(text: str) -> tuple[str | None, str | None]:
    s = unicodedata.normalize("NFKC", text).strip()
    s = re.sub(r"^(\d+)\.0*$", r"\1", s, flags=_A)
    if s.lower() in PLACEHOLDERS:
        return None, "empty"
    fraction = re.fullmatch(r"\d{7,}\.\d*[1-9]\d*", s, _A) is not None
    m = re.fullmatch(r"\+?(\d)(?:\.(\d*))?[eE]\+?(\d+)", s, _A)
    if m:
        lead, fraction_digits, places = m.group(1), m.group(2) or "", int(m.group(3))
        if len(fraction_digits) < places:
            return None, "digits lost in a spreadsheet"
        if not fraction_digits[places:].strip("0"):
            s = lead + fraction_digits[:places]
    if re.search(r"\d{7,}\D+\d{7,}", s, _A):
        return None, "several numbers"
    d = _DECORATION.sub("", s)
    plus = d.startswith("+")
    d = d[1:] if plus else d
    if re.fullmatch(r"\d{2,}[*xX#?]{2,}\d{2,}", d, _A):
        return None, "masked"
    if fraction or re.search(r"[^0-9]", d):
        return None, "not a number"
    if plus and not d.startswith("86"):
        return None, "foreign number"
    if not plus and d.startswith("00") and not d.startswith("0086"):
        return None, "foreign number"
    if not d:
        return None, "empty"
    if (plus and d.startswith("86")) or (not plus and d.startswith("86") and len(d) == 13):
        d = d[2:]
    elif not plus and d.startswith("0086"):
        d = d[4:]
    return _classify(d)


def _classify(d: str) -> tuple[str | None, str | None]:
    n, prefix = len(d), d[:3]
    if n == 11 and prefix in MOBILE_PREFIXES:
        return d, None
    if n in (11, 13) and prefix in IOT_PREFIXES:
        return None, "IoT number"
    if d.startswith("0"):
        return None, "landline"
    if (3 <= n <= 6 and d[:1] in ("1", "9")) or (n == 10 and prefix in ("400", "800")):
        return None, "service number"
    if n in (7, 8):
        return None, "landline"
    if n == 11 and d.startswith("1"):
        return None, "not a mobile prefix"
    return None, "wrong length"
