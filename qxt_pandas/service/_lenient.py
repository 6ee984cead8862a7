"""JSON as a lenient server writes it: what ``json.loads`` refuses but a person reads at once.

The vendor's own document prints its answers with bare keys
(``{code: 0, reason: "Succ", result: {Mobile: "139…", …}}``) and a trailing
comma (``"balance": "12048",}``); a server written from that document may
well send exactly that. Every paid answer in such a shape must be kept, so
when strict JSON fails this reads: bare keys, single- or double-quoted
strings, trailing commas, ``True``/``None`` spellings, and unquoted scalar
values up to the next ``,``, ``}`` or ``]``. Anything else is ``None``.

Example::

    >>> loads("{code: 0, reason: 'Succ', result: {Is_MNP: 1,},}")
    {'code': 0, 'reason': 'Succ', 'result': {'Is_MNP': 1}}
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["loads"]

_SPACE = re.compile(r"\s*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$")
_BARE = re.compile(r"[^\s:,{}\[\]'\"]+")  # a bare key
_SCALAR = re.compile(r"[^,{}\[\]\n]+")  # an unquoted value, up to the next delimiter or line end
_LITERALS = {"true": True, "false": False, "null": None, "none": None}
_DEPTH = 32


class _Invalid(Exception):
    pass


def loads(text: str) -> dict[str, Any] | list[Any] | None:
    """The object or array ``text`` holds, read leniently; None when even that fails (or junk follows)."""
    start = _skip(text, 0)
    if text[start : start + 1] not in ("{", "["):
        return None
    try:
        value, end = _value(text, start, 0)
    except (_Invalid, IndexError, RecursionError):
        return None
    return value if _skip(text, end) == len(text) else None


def _skip(text: str, at: int) -> int:
    return _SPACE.match(text, at).end()  # type: ignore[union-attr]  # \s* always matches


def _value(text: str, at: int, depth: int) -> tuple[Any, int]:
    if depth > _DEPTH:
        raise _Invalid
    char = text[at]
    if char == "{":
        return _object(text, at + 1, depth)
    if char == "[":
        return _array(text, at + 1, depth)
    if char in "\"'":
        return _string(text, at)
    match = _SCALAR.match(text, at)
    if match is None:
        raise _Invalid
    word = match.group().strip()
    if not word:
        raise _Invalid
    if word.lower() in _LITERALS:
        return _LITERALS[word.lower()], match.end()
    if _NUMBER.match(word):
        return json.loads(word), match.end()
    return word, match.end()


def _object(text: str, at: int, depth: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    at = _skip(text, at)
    while text[at] != "}":
        if text[at] in "\"'":
            key, at = _string(text, at)
        else:
            match = _BARE.match(text, at)
            if match is None:
                raise _Invalid
            key, at = match.group(), match.end()
        at = _skip(text, at)
        if text[at] != ":":
            raise _Invalid
        result[key], at = _value(text, _skip(text, at + 1), depth + 1)
        at = _separator(text, at, "}")
    return result, at + 1


def _array(text: str, at: int, depth: int) -> tuple[list[Any], int]:
    result: list[Any] = []
    at = _skip(text, at)
    while text[at] != "]":
        value, at = _value(text, at, depth + 1)
        result.append(value)
        at = _separator(text, at, "]")
    return result, at + 1


def _separator(text: str, at: int, closing: str) -> int:
    """After a member: a comma (a trailing one too) or the closing bracket; where the next thing starts."""
    at = _skip(text, at)
    if text[at] == ",":
        return _skip(text, at + 1)
    if text[at] != closing:
        raise _Invalid
    return at


def _string(text: str, at: int) -> tuple[str, int]:
    quote, out, i = text[at], [], at + 1
    while text[i] != quote:
        if text[i] == "\\":
            escape = text[i + 1]
            if escape == "u":
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append({"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}.get(escape, escape))
            i += 2
        elif text[i] == "\n":
            raise _Invalid
        else:
            out.append(text[i])
            i += 1
    return "".join(out), i + 1
