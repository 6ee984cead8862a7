"""A holder for the API key that never shows its value by accident."""

from __future__ import annotations

from urllib.parse import quote, quote_plus


class Secret:
    """Wraps a secret string; ``repr``/``str`` show ``'***'``, ``reveal()`` the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with the secret, plain or URL-encoded, replaced by ``***``."""
        if self._value:
            for form in {self._value, quote(self._value, safe=""), quote_plus(self._value)}:
                text = text.replace(form, "***")
        return text

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("the API key is not pickled; pass it to each process instead")
