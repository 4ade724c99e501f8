"""Image grids: thumbnails of analysis items with index, class and score captions, and a "Why?"
button under each that opens the item on the neighbours page."""
from __future__ import annotations

import hashlib
import io
from typing import Sequence

import numpy as np
import streamlit as st
from PIL import Image

import ood_core
from ui import review

THUMB_SIZE = 128  # pixels; small images are upscaled by an integer factor with nearest-neighbour
NEIGHBOURS_PAGE = "pages/neighbours.py"  # where "Why?" leads, relative to app.py
EXPLAIN_KEY = "explain_position"  # session_state: position (into analysis.ids) the neighbours page opens
# Page CSS (app.py injects it once per run): thumbnails stay crisp when the browser scales them,
# and each grid cell is compact (image, caption, small "View" and "Why?" links).
GRID_CSS = """<style>
[data-testid='stImage'] img {image-rendering: pixelated;}
[class*='st-key-thumbgrid'] [data-testid='stColumn'] [data-testid='stVerticalBlock'] {gap: 0;}
[class*='st-key-thumbgrid'] [data-testid='stImageCaption'] {white-space: pre-line; line-height: 1.3;}
[class*='st-key-thumbgrid'] [class*='_why_'], [class*='st-key-thumbgrid'] [class*='_view_'] {align-self: center;}
[class*='st-key-thumbgrid'] [data-testid='stBaseButton-tertiary'] {min-height: 0; padding: 0 0 0.25rem 0;}
[class*='st-key-thumbgrid'] [data-testid='stBaseButton-tertiary'] p {font-size: 0.8rem;}
</style>"""


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


def caption(analysis: ood_core.Analysis, position: int, score: float, badge: str = "") -> str:
    """``#position · score``, then the class (left out when unknown), then the review badge (if any)."""
    lines = [f"#{position} · {score:.3f}", analysis.class_name(position), badge]
    return "\n".join(line for line in lines if line)


def open_explanation(position: int) -> None:
    """Show the item at ``position`` on the neighbours page (stops this run)."""
    st.session_state[EXPLAIN_KEY] = int(position)
    st.switch_page(NEIGHBOURS_PAGE)


def image_grid(analysis: ood_core.Analysis, positions: Sequence[int], scores: Sequence[float], *, columns: int = 8,
               empty_text: str = "Nothing to show.", key: str | None = None, item_marks: dict | None = None) -> None:
    """Draw items at ``positions`` (into ``analysis.ids``) with their scores, ``columns`` per row.

    Each caption carries the image's review badge; under each image "View" opens the large view
    (metadata, neighbours, mark buttons) and "Why?" the neighbours page. ``key`` names the grid's
    buttons (default: derived from ``positions``), so two grids on one page showing the same items
    need different keys.
    """
    positions = np.asarray(positions, dtype=np.int64).reshape(-1)
    if len(positions) == 0:
        st.caption(empty_text)
        return
    if analysis.items is None:  # precomputed features: no pixels to show
        st.dataframe(
            {"position": positions.tolist(), "id": [analysis.ids[p] for p in positions],
             "class": [analysis.class_name(p) for p in positions], "score": list(map(float, scores))},
            hide_index=True,
        )
        return
    key = key or "grid_" + hashlib.blake2b(positions.tobytes(), digest_size=6).hexdigest()
    item_marks = review.marks(analysis) if item_marks is None else item_marks  # read once per page run if given
    chosen = viewed = None
    grid = st.container(key=f"thumbgrid_{key}")
    for start in range(0, len(positions), columns):
        cols = grid.columns(columns)
        for col, pos, score in zip(cols, positions[start:start + columns], scores[start:start + columns]):
            with col:
                st.image(thumbnail(analysis, pos), width="content", output_format="PNG",  # crisp pixels as encoded
                         caption=caption(analysis, pos, float(score), review.badge(item_marks, analysis.ids[pos])))
                if st.button("View", key=f"{key}_view_{pos}", type="tertiary", icon=":material/open_in_full:",
                             help=f"#{pos} ({analysis.ids[pos]}) large, with its metadata and the mark buttons"):
                    viewed = int(pos)
                if st.button("Why?", key=f"{key}_why_{pos}", type="tertiary", icon=":material/manage_search:",
                                     help=f"Open #{pos} ({analysis.ids[pos]}) beside its nearest train images"):
                    chosen = int(pos)
    if chosen is not None:
        open_explanation(chosen)
    if viewed is not None:
        review.item_view(analysis, viewed)


def listing_positions(analysis: ood_core.Analysis, which: str, ranked: np.ndarray) -> np.ndarray:
    """Map indices into the fit (``which="fit"``) or query scores to positions into ``analysis.ids``."""
    index = analysis.fit_index if which == "fit" else analysis.query_index
    return index[np.asarray(ranked, dtype=np.int64)]
