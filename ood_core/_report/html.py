"""The pieces of the HTML report: escaping, inline thumbnails, item cards, tables and the page shell.

Every string that comes from the data (file names, class names, the source's description, details)
goes through :func:`esc`; images are inlined as ``data:image/png;base64`` URIs and the page's
Content-Security-Policy forbids loading anything else, so the file makes no outside request.
"""
from __future__ import annotations

import base64
import io
import logging
from html import escape
from typing import Any, Iterable

logger = logging.getLogger(__name__)

THUMBNAIL_SIDE = 96  # pixels, longer side
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#222;
padding:0 16px}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:4px}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.items{display:flex;flex-wrap:wrap;gap:10px}.item{flex:0 0 120px;width:120px;margin:0;font-size:12px;
overflow-wrap:anywhere}
.item img,.item .noimg{width:96px;height:96px;object-fit:contain;background:#eee;display:block;
image-rendering:pixelated}
.noimg{display:flex;align-items:center;justify-content:center;color:#888}
.set{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start;border:1px solid #eee;padding:6px;margin:6px 0}
.set>.note{flex:0 0 110px}
.badge{background:#d62728;color:#fff;border-radius:3px;padding:0 4px;font-size:11px}
.kept{background:#2ca02c}.note{color:#555;font-size:13px}.reason{color:#555;font-size:13px;max-width:900px}
"""


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML element content and quoted attributes."""
    return escape(str(value), quote=True)


def thumbnail_uri(items, position: int, side: int = THUMBNAIL_SIDE) -> str | None:
    """A ``data:image/png;base64,...`` URI of item ``position`` of the image set ``items`` reduced to
    ``side`` pixels (longer side); None when there are no images or it cannot be decoded."""
    if items is None:
        return None
    try:
        img = items.load_image(int(position))
    except Exception as exc:  # noqa: BLE001 - one unreadable image costs its thumbnail only
        logger.info("no thumbnail for item %s (%s)", position, exc)
        return None
    img = img.convert("RGB")
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def item_card(analysis, position: int, lines: Iterable[str], badge: str = "", badge_class: str = "") -> str:
    """A figure of one item: its thumbnail, its id, then ``lines`` (plain text, escaped here)."""
    uri = thumbnail_uri(analysis.items, position)
    item_id = analysis.ids[int(position)]
    img = (f'<img src="{uri}" alt="{esc(item_id)}" width="96" height="96">' if uri is not None
           else '<div class="noimg">no image</div>')
    mark = f' <span class="badge {esc(badge_class)}">{esc(badge)}</span>' if badge else ""
    text = "".join(f"<br>{esc(line)}" for line in lines if line)
    shown = esc(item_id).replace("/", "/<wbr>")  # a long path breaks after a folder, not inside a name
    return f'<figure class="item">{img}<figcaption><b>{shown}</b>{mark}{text}</figcaption></figure>'


def table(header: list[str], rows: list[list[Any]], numeric: set[int] = frozenset(),
          row_attrs: list[str] | None = None) -> str:
    """An HTML table; cells escaped; columns in ``numeric`` right-aligned; ``row_attrs`` (trusted
    attribute text, e.g. ``data-issue="dark"`` built with :func:`esc`) per row."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for r, row in enumerate(rows):
        attrs = f" {row_attrs[r]}" if row_attrs else ""
        cells = "".join(f'<td class="n">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr{attrs}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, body: str) -> str:
    """The whole document: no script, no outside resource, a policy that forbids fetching any."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")
