"""Numbers as people see them: ``139****5391`` in every message, unless asked otherwise.

A number is personal information. Messages, warnings, progress lines, log
records, error texts and reports show it masked; errors keep the whole number
in ``.mobile`` for code that handles them, and output files (the user's own
data) keep whole numbers unless ``--mask-output``. ``show_numbers=True`` (or
``--show-numbers``) shows them whole while that call runs.

Example::

    >>> mask("13972565391")
    '139****5391'
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

__all__ = ["mask", "mask_text", "numbers_shown"]

#: An 11-digit mobile number inside text (not part of a longer run of digits).
MOBILE_IN_TEXT = re.compile(r"(?<!\d)(1\d{2})\d{4}(\d{4})(?!\d)")
_shown = 0  # calls running with show_numbers=True (process-wide)


def mask(mobile: str) -> str:
    """One number as messages show it: ``139****5391`` (``****`` for anything shorter than 8 characters)."""
    if _shown:
        return mobile
    return mobile[:3] + "****" + mobile[-4:] if len(mobile) >= 8 else "****"


def mask_text(text: str) -> str:
    """``text`` with every mobile number in it masked."""
    return text if _shown else MOBILE_IN_TEXT.sub(r"\1****\2", text)


@contextlib.contextmanager
def numbers_shown(enabled: bool = True) -> Iterator[None]:
    """Show numbers whole in messages while the block runs (``show_numbers=True``)."""
    global _shown
    _shown += bool(enabled)
    try:
        yield
    finally:
        _shown -= bool(enabled)
