"""A holder for the API key that never shows its value by accident."""

from __future__ import annotations

import hashlib
from collections.abc import MutableMapping
from typing import Any, NoReturn
from urllib.parse import quote, quote_plus


class Secret:
    """Wraps a secret string; ``repr``/``str`` show ``'***'``, ``reveal()`` the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    @classmethod
    def wrap(cls, value: Secret | str) -> Secret:
        """``value`` as a Secret, surrounding whitespace stripped (a key pasted from a file)."""
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str):
            raise TypeError(f"the API key must be a str, not {type(value).__name__}")
        return cls(value.strip().lstrip("\ufeff").strip())  # a key file saved with a BOM (Windows Notepad)

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        """``text`` with the secret, plain or URL-encoded, replaced by ``***``."""
        if self._value:
            for form in {self._value, quote(self._value, safe=""), quote_plus(self._value)}:
                text = text.replace(form, "***")
        return text

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("the API key is not pickled; pass it to each process instead")

    def __dask_tokenize__(self) -> tuple[str, str]:
        # Dask names tasks by a hash of their arguments: a keyed digest, never the key.
        return ("qxt-secret", hashlib.blake2b(self._value.encode(), key=b"qxt-pandas", digest_size=8).hexdigest())


def hide_key(options: MutableMapping[str, Any]) -> None:
    """Wrap ``options["apikey"]`` (and ``"store_key"``) in place, so that no frame holding the mapping shows them."""
    for name in ("apikey", "store_key"):
        if isinstance(options.get(name), str):
            options[name] = Secret.wrap(options[name])
