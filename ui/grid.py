"""Image grids: thumbnails of analysis items with index, class and score captions."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import streamlit as st
from PIL import Image

from ood_core.analysis import Analysis

THUMB_SIZE = 96  # pixels; small images are upscaled by an integer factor with nearest-neighbour


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
def _thumbnail(identity: str, position: int, _items) -> Image.Image:
    return upscale(_items.load_image(position))


def thumbnail(analysis: Analysis, position: int) -> Image.Image:
    """The grid thumbnail of the item at ``position`` (cached per source and item)."""
    return _thumbnail(analysis.items.identity, int(position), analysis.items)


def caption(analysis: Analysis, position: int, score: float) -> str:
    name = analysis.class_name(position)
    return f"#{position} · {name} · {score:.3f}" if name else f"#{position} · {score:.3f}"


def image_grid(analysis: Analysis, positions: Sequence[int], scores: Sequence[float], *, columns: int = 8,
               empty_text: str = "Nothing to show.") -> None:
    """Draw items at ``positions`` (into ``analysis.ids``) with their scores, ``columns`` per row."""
    if len(positions) == 0:
        st.caption(empty_text)
        return
    if analysis.items is None:  # precomputed features: no pixels to show
        st.dataframe(
            {"position": list(map(int, positions)), "id": [analysis.ids[p] for p in positions],
             "class": [analysis.class_name(p) for p in positions], "score": list(map(float, scores))},
            hide_index=True,
        )
        return
    for start in range(0, len(positions), columns):
        cols = st.columns(columns)
        for col, pos, score in zip(cols, positions[start:start + columns], scores[start:start + columns]):
            with col:
                st.image(thumbnail(analysis, pos), caption=caption(analysis, pos, float(score)),
                         width="content")


def listing_positions(analysis: Analysis, which: str, ranked: np.ndarray) -> np.ndarray:
    """Map indices into the fit (``which="fit"``) or query scores to positions into ``analysis.ids``."""
    index = analysis.fit_index if which == "fit" else analysis.query_index
    return index[np.asarray(ranked, dtype=np.int64)]
