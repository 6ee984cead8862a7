"""The shapes an answer may come in: strict JSON, or what the vendor's own document shows.

The interface document prints its answers with bare keys, and a server
written from it may answer that way; a real answer for a 空号 may leave Area
and the carriers empty; a Chinese server may send GBK. The simulator answers
in any of these (``Simulator(shape=...)``, ``--shape``), so tests and the
notebook can show that each is kept and paid for once:

==============  ====================================================================
``json``        strict JSON, UTF-8 (the default)
``document``    as the document prints it: bare keys, one field a line
``empty``       empty fields: Area, Is_MNP and carriers of non-正常 answers; Status of
                numbers ending in 0
``gbk``         strict JSON encoded in GBK, ``charset=GBK`` in the Content-Type
``unreadable``  code-0 answers broken by a PHP warning mid-body: charged, unreadable
``mixed``       each number in one of the above (by its last digit)
``hostile``     values a database refuses: a NUL (``\u0000``) in Area of numbers ending in 3, a
                lone surrogate (``\udc80``) in it for those ending in 7; valid JSON, ASCII-escaped
==============  ====================================================================
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["SHAPES", "render"]

SHAPES = ("json", "document", "empty", "gbk", "unreadable", "mixed", "hostile")
_MIXED = ("empty", "document", "json", "gbk", "json", "document", "empty", "gbk", "json", "unreadable")
_PHP_WARNING = (
    "<br />\n<b>Warning</b>:  mysqli_fetch_assoc() expects parameter 1 to be mysqli_result in <b>/www/api.php"
)


def render(body: dict[str, Any], shape: str, content_type: str) -> tuple[bytes, str]:
    """The bytes and Content-Type of ``body`` (``{code, reason, result}``) answered in ``shape``."""
    result = body.get("result")
    mobile = str(result.get("Mobile", "")) if isinstance(result, dict) else ""
    if shape == "mixed":
        shape = _MIXED[int(mobile[-1])] if mobile[-1:].isdigit() else "json"
    if shape == "gbk":
        return json.dumps(body, ensure_ascii=False).encode("gbk"), "text/html;charset=GBK"
    if shape == "document":
        return _document(body).encode(), content_type
    if shape == "empty" and isinstance(result, dict):
        body = {**body, "result": _emptied(result)}
    if shape == "hostile" and isinstance(result, dict) and mobile[-1:] in ("3", "7"):
        odd = "\x00" if mobile.endswith("3") else "\udc80"
        body = {**body, "result": {**result, "Area": f"{result.get('Area', '')}{odd}x"}}
        return json.dumps(body).encode(), content_type
    text = json.dumps(body, ensure_ascii=False)
    if shape == "unreadable" and body.get("code") == 0 and '"Status"' in text:  # status answers only
        cut = text.index('"Status"')
        text = text[:cut] + _PHP_WARNING + text[cut:]
    return text.encode(), content_type


def _emptied(result: dict[str, Any]) -> dict[str, Any]:
    emptied = dict(result)
    if emptied.get("Status") != "正常":
        emptied.update(Area="", Is_MNP="", Init_isp="", Now_isp="")
    if str(emptied.get("Mobile", "")).endswith("0"):
        emptied["Status"] = ""
        emptied.pop("Now_isp", None)  # a field left out altogether, too
    return emptied


def _document(body: dict[str, Any], indent: str = "") -> str:
    """``body`` as section 1.3 prints it: ``{`` then ``key: "value",`` a line each, keys bare."""
    lines = []
    for key, value in body.items():
        shown = _document(value, indent + "  ") if isinstance(value, dict) else json.dumps(value, ensure_ascii=False)
        lines.append(f"{indent}{key}: {shown}")
    return "{\n" + ",\n".join(lines) + "\n" + indent[:-2] + "}"
