"""What each outcome is called, Chinese first: one table for the console, its reports and split files.

An outcome is a row's vendor ``Status`` when answered (正常, 空号 …), or one of ours
(:func:`~qxt_pandas.results.outcomes`): ``invalid``, ``unknown`` (-4), ``unanswered``,
``unreadable`` and ``no-status``. A person reads each as 中文 · English; a Status
the vendor adds one day, and we do not know, reads as the vendor wrote it.

Example::

    label("unknown")   # '无信息 · no information'
    label("空号")       # '空号 · vacant'
"""

from __future__ import annotations

from collections.abc import Mapping

from ..results import NO_STATUS

__all__ = ["OURS", "STATUSES", "chinese", "label", "ordered"]

#: The vendor's statuses, as the vendor writes them, with their English (the document names 正常, 空号, 停机;
#: batch-check services report the rest).
STATUSES = {
    "正常": "normal",
    "空号": "vacant",
    "停机": "suspended",
    "沉默号": "silent",
    "风险号": "risky",
    "关机": "switched off",
    "销号": "cancelled",
    "库无": "not on record",
    "在网不可用": "in service, unusable",
    "不在网": "not in service",
    "忙": "busy",
    "通话中": "in a call",
}
#: Our own outcomes (never sent, or no usable answer), in the order a summary lists them after the statuses.
OURS = {
    "unknown": ("无信息", "no information (not charged)"),
    NO_STATUS: ("无状态", "no status"),
    "unreadable": ("无法读取", "charged, unreadable"),
    "unanswered": ("未回答", "unanswered: run again"),
    "invalid": ("无效号码", "invalid, not sent"),
}


def chinese(outcome: str) -> str:
    """The outcome's Chinese name: the Status itself, or ours (``invalid`` -> 无效号码)."""
    return OURS[outcome][0] if outcome in OURS else outcome


def label(outcome: str) -> str:
    """``中文 · English`` (the Status alone when its English is not known)."""
    if outcome in OURS:
        return " · ".join(OURS[outcome])
    english = STATUSES.get(outcome)
    return f"{outcome} · {english}" if english else outcome


def ordered(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """``counts`` by outcome as a summary lists them: the vendor's statuses, most first, then ours in a fixed order."""
    statuses = sorted(((k, n) for k, n in counts.items() if k not in OURS), key=lambda kv: (-kv[1], kv[0]))
    return statuses + [(k, counts[k]) for k in OURS if counts.get(k)]
