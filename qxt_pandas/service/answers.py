"""One number's answer as runs keep it: the record, its Arrow schema, and which codes are stored and charged.

The engine makes them from the vendor's replies, the stores keep them (``Answer.line`` is a journal line),
the pipeline turns them into result columns. Plain data, so they cross threads, processes and stores.

Example::

    Answer("13972565391", 0, "正常", checked_at=time.time()).line()
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from ..errors import CHARGED_UNREADABLE

__all__ = ["ANSWER_SCHEMA", "PAID_CODES", "STORED_CODES", "TEXT_FIELDS", "Answer", "answers_table"]

#: Codes the vendor charges for: its answers (0), and answers that showed code 0 but could not be read.
PAID_CODES = frozenset({0, CHARGED_UNREADABLE})
#: Codes that are answers about the number itself, kept so they are never asked again.
#: (1 is not: it usually means the request, not the number, was wrong.)
STORED_CODES = frozenset({0, -2, -3, -4, CHARGED_UNREADABLE})
ANSWER_SCHEMA = pa.schema(
    [
        ("mobile", pa.string()),
        ("code", pa.int16()),
        ("Status", pa.string()),
        ("Area", pa.string()),
        ("Is_MNP", pa.bool_()),
        ("Init_isp", pa.string()),
        ("Now_isp", pa.string()),
        ("reason", pa.string()),
        ("checked_at", pa.float64()),  # seconds since the epoch, UTC
    ]
)
_KEYS = ANSWER_SCHEMA.names
#: The text fields of an answer (what a store must be able to hold, what a journal line must carry as text).
TEXT_FIELDS = ("Status", "Area", "Init_isp", "Now_isp", "reason")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL, and surrogates that are not half of a pair in UTF-8


@dataclass(frozen=True, slots=True)
class Answer:
    """One number's answer as stored: the vendor's fields, its code and reason, and when."""

    mobile: str
    code: int
    Status: str | None = None
    Area: str | None = None
    Is_MNP: bool | None = None
    Init_isp: str | None = None
    Now_isp: str | None = None
    reason: str | None = None
    checked_at: float = 0.0

    def line(self) -> bytes:
        """The journal line: JSON with the keys in schema order (orjson: this runs per answer, 0.2 µs not 3)."""
        return orjson.dumps(
            {
                "mobile": self.mobile,
                "code": self.code,
                "Status": self.Status,
                "Area": self.Area,
                "Is_MNP": self.Is_MNP,
                "Init_isp": self.Init_isp,
                "Now_isp": self.Now_isp,
                "reason": self.reason,
                "checked_at": self.checked_at,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in _KEYS)

    def storable(self) -> Answer:
        """This answer with text every store can hold: a NUL or a lone surrogate (which PostgreSQL and
        JSON refuse) becomes U+FFFD, the same in every store, so no answer is ever a reason to pay again."""
        odd: dict[str, Any] = {k: _UNSTORABLE.sub("\ufffd", t) for k in TEXT_FIELDS
                               if (t := getattr(self, k)) and _UNSTORABLE.search(t)}  # fmt: skip
        return dataclasses.replace(self, **odd) if odd else self


def answers_table(answers: Iterable[Answer]) -> pa.Table:
    """A list of answers as a table in :data:`ANSWER_SCHEMA` (a column at a time: a run's answers can be millions)."""
    answers = answers if isinstance(answers, list) else list(answers)
    return pa.table([pa.array([getattr(a, f.name) for a in answers], type=f.type) for f in ANSWER_SCHEMA],
                    schema=ANSWER_SCHEMA)  # fmt: skip
