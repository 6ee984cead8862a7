"""Charts whose Chinese labels show everywhere: SVG with text left as text, for the browser to draw.

A chart drawn to pixels needs a font with CJK glyphs on the machine that draws
it; most servers and CI machines have none, and every label here (正常, 空号,
中国移动 …) is Chinese. So the report's charts are SVG whose labels are
``<text>`` in a font stack the reader's browser has (PingFang, YaHei, Noto Sans
CJK …). For a raster chart of your own, :func:`cjk_font` finds a CJK font this
machine has for matplotlib, or says there is none.

Example::

    svg = bars("Status", {"正常": 1890, "空号": 160})
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["CJK_FONTS", "FONT_STACK", "bars", "cjk_font", "table_html"]

#: CJK fonts in order of preference, by the names matplotlib knows them by.
CJK_FONTS = ("Microsoft YaHei", "PingFang SC", "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC",
             "SimHei", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Heiti SC", "Arial Unicode MS")  # fmt: skip
#: The CSS font stack for text in charts and pages: the reader's CJK font first, whatever the system.
FONT_STACK = ("system-ui, -apple-system, 'PingFang SC', 'Microsoft YaHei', 'Noto Sans CJK SC', 'Noto Sans SC', "
              "'Source Han Sans SC', 'WenQuanYi Micro Hei', sans-serif")  # fmt: skip
_COLORS = ("#2f6fb0", "#d9822b", "#3a9a5b", "#b8413c", "#7b5ea7", "#8c6d46", "#c25a94", "#6b7b8c")


def top_with_others(counts: Mapping[str, int], top: int) -> dict[str, int]:
    """The ``top`` largest of ``counts``, then the rest summed as 其他 others (so shares stay of the whole)."""
    items = sorted(counts.items(), key=lambda kv: -kv[1])
    rest = sum(n for _, n in items[top:])
    return dict(items[:top]) | ({"其他 others": rest} if rest else {})


def bars(title: str, counts: Mapping[str, int], *, top: int | None = None) -> str:
    """A horizontal bar chart of ``counts`` (largest first) as an inline SVG element."""
    items = list(top_with_others(counts, top).items()) if top else sorted(counts.items(), key=lambda kv: -kv[1])
    total = sum(n for _, n in items) or 1
    row, label_w, bar_w, pad = 26, 150, 300, 8
    height = 30 + row * max(len(items), 1)
    out = [f'<svg viewBox="0 0 {label_w + bar_w + 110} {height}" '
           f'role="img" aria-label="{html.escape(title)}" style="width:100%;max-width:560px;height:auto;'
           f'font-family:{html.escape(FONT_STACK)}">',
           f'<text x="0" y="18" font-size="15" font-weight="600">{html.escape(title)}</text>']  # fmt: skip
    largest = max((n for _, n in items), default=1) or 1
    for i, (label, n) in enumerate(items):
        y = 30 + i * row
        width = max(1.0, bar_w * n / largest)
        out += [
            f'<text x="{label_w - pad}" y="{y + 17}" font-size="13" text-anchor="end">{html.escape(str(label))}</text>',
            f'<rect x="{label_w}" y="{y + 4}" width="{width:.1f}" height="{row - 8}" rx="2" '
            f'fill="{_COLORS[i % len(_COLORS)]}"/>',
            f'<text x="{label_w + width + pad}" y="{y + 17}" font-size="12">{n:,} ({n / total:.1%})</text>',
        ]
    if not items:
        out.append('<text x="0" y="46" font-size="13">-</text>')
    out.append("</svg>")
    return "".join(out)


def table_html(rows: Sequence[tuple[object, ...]], header: tuple[str, ...] | None = None) -> str:
    """A plain HTML table (values escaped)."""
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


_rescanned = False  # the font cache was rebuilt once in this process


def _cjk_in(manager: Any) -> str | None:
    have = {font.name for font in manager.ttflist}
    return next((name for name in CJK_FONTS if name in have), None)


def cjk_font() -> str | None:
    """The name of a CJK font matplotlib can use on this machine, or None (with a warning saying what to do)."""
    try:
        from matplotlib import font_manager
    except ImportError:
        return None
    found = _cjk_in(font_manager.fontManager)
    global _rescanned
    if found is None and not _rescanned:  # matplotlib's font cache may predate a font installed since: rescan once
        _rescanned = True
        font_manager.fontManager = font_manager.FontManager()
        found = _cjk_in(font_manager.fontManager)
    if found is None:
        warnings.warn(
            "No CJK font on this machine: a matplotlib chart would show Chinese labels as empty boxes. Use the "
            "report's SVG charts (the browser draws their text), or install one, e.g. apt install fonts-noto-cjk.",
            UserWarning,
            stacklevel=2,
        )
    return found
