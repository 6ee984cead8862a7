"""Charts whose Chinese labels show everywhere: HTML bars with text left as text, for the browser to draw.

A chart drawn to pixels needs a font with CJK glyphs on the machine that draws
it; most servers and CI machines have none, and every label here (正常, 空号,
中国移动 …) is Chinese. So the report's charts are HTML whose labels are text
in a font stack the reader's browser has (PingFang, YaHei, Noto Sans CJK …),
styled inline (a notebook's output has no style sheet of ours), and whose rows
wrap on a phone instead of shrinking or scrolling. For a raster chart of your
own, :func:`cjk_font` finds a CJK font this machine has for matplotlib, or says
there is none.

Example::

    html = bars("Status", {"正常": 1890, "空号": 160})
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Callable, Mapping, Sequence
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


def bars(title: str, counts: Mapping[str, int], *, top: int | None = None,
         label: Callable[[str], str] = str, ordered: bool = False) -> str:  # fmt: skip
    """A horizontal bar chart of ``counts`` (largest first, unless ``ordered``) as HTML: each row its ``label``
    (text, wrapping on a narrow screen), a bar as long as its share of the largest, the count and its share."""
    if top:
        items = list(top_with_others(counts, top).items())
    else:
        items = list(counts.items()) if ordered else sorted(counts.items(), key=lambda kv: -kv[1])
    total = sum(n for _, n in items) or 1
    largest = max((n for _, n in items), default=1) or 1
    out = [f'<figure class="qxt-bars" style="margin:1rem 0;font-family:{html.escape(FONT_STACK)}">',
           f'<figcaption style="font-weight:600;margin-bottom:.3rem">{html.escape(title)}</figcaption>']  # fmt: skip
    for i, (key, n) in enumerate(items):
        out.append(
            '<div style="display:flex;flex-wrap:wrap;align-items:center;gap:.1rem .6rem;margin:.2rem 0">'
            f'<span style="flex:0 1 11rem;min-width:7rem;overflow-wrap:anywhere">{html.escape(label(str(key)))}</span>'
            '<span style="flex:1 1 8rem;display:flex;align-items:center;gap:.5rem;min-width:8rem">'
            f'<span style="display:inline-block;height:.9rem;width:{max(0.5, 70 * n / largest):.1f}%;border-radius:2px;'
            f'background:{_COLORS[i % len(_COLORS)]}"></span>'
            f'<span style="white-space:nowrap;font-variant-numeric:tabular-nums">{n:,} ({n / total:.1%})</span>'
            "</span></div>"
        )
    if not items:
        out.append("<div>-</div>")
    out.append("</figure>")
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
