"""Thumbnails of analysis items: small images enlarged crisply (integer factors, nearest-neighbour),
encoded once per source and item and shared by the grids, the large view and the pages."""
from __future__ import annotations

import io
import threading
from collections import OrderedDict

import streamlit as st
from PIL import Image

import ood_core

THUMB_SIZE = 128  # pixels; small images are upscaled by an integer factor with nearest-neighbour


def upscale(image: Image.Image, size: int = THUMB_SIZE) -> Image.Image:
    """Enlarge a small image by the largest integer factor that keeps it within ``size``, with
    nearest-neighbour so 32 px pixels stay crisp; large images are shrunk to fit."""
    w, h = image.size
    side = max(w, h)
    if side < size:
        factor = max(size // side, 1)
        return image.resize((w * factor, h * factor), Image.NEAREST)
    if side > size:
        image = image.copy()
        image.thumbnail((size, size), Image.LANCZOS)
    return image


@st.cache_resource(max_entries=20_000, show_spinner=False)
def _thumbnail_png(identity: str, position: int, _items) -> bytes:
    buf = io.BytesIO()
    upscale(_items.load_image(position)).save(buf, format="PNG")
    return buf.getvalue()


def thumbnail(analysis: ood_core.Analysis, position: int) -> bytes:
    """The grid thumbnail of the item at ``position`` as PNG bytes (for ``st.image``), cached per
    source and item: a rerun neither decodes nor re-encodes it."""
    return _thumbnail_png(analysis.items.identity, int(position), analysis.items)


_GRID_THUMBS: "OrderedDict[tuple[str, int], tuple[bytes, int]]" = OrderedDict()
_GRID_THUMBS_LOCK = threading.Lock()
GRID_THUMB_ENTRIES = 20_000


def grid_thumbnail(analysis: ood_core.Analysis, position: int) -> tuple[bytes, int]:
    """``(PNG bytes, width to draw it at)`` of a grid cell: a small image at its own size, drawn
    :func:`upscale`'s integer factor larger by the browser (pixelated, see ``GRID_CSS``), so a grid of
    new images costs a few small encodings; a large one shrunk to fit. Cached per source and item
    (a plain LRU: a cell costs a dictionary lookup on a rerun)."""
    key = (analysis.items.identity, int(position))
    with _GRID_THUMBS_LOCK:
        hit = _GRID_THUMBS.get(key)
        if hit is not None:
            _GRID_THUMBS.move_to_end(key)
            return hit
    image = analysis.items.load_image(int(position))
    side = max(image.size)
    if side > THUMB_SIZE:
        image = upscale(image)
    factor = max(THUMB_SIZE // side, 1) if side < THUMB_SIZE else 1
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    value = (buf.getvalue(), image.size[0] * factor)
    with _GRID_THUMBS_LOCK:
        _GRID_THUMBS[key] = value
        while len(_GRID_THUMBS) > GRID_THUMB_ENTRIES:
            _GRID_THUMBS.popitem(last=False)
    return value
