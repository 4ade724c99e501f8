"""Image grids: thumbnails of analysis items with index, class and score captions, and a "Why?"
button under each that opens the item on the neighbours page."""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import streamlit as st

import ood_core
from ood_dashboard import review
from ood_dashboard.markup import escape
from ood_dashboard.navigation import page_path
from ood_dashboard.state import EXPLAIN_POSITION, grid_key, part_key
from ood_dashboard.thumbnails import grid_thumbnail

# Page CSS (app.py injects it once per run): thumbnails stay crisp when the browser scales them,
# and each grid cell is compact (image, caption, small "View" and "Why?" links). A thumbnail never
# grows past its column (8 columns at 1280 px are narrower than 128 px), and the buttons sit at the
# foot of each cell, so a caption with a review badge (a line more) does not push its buttons out of line.
GRID_CSS = """<style>
[data-testid='stImage'] img {image-rendering: pixelated;}
[class*='st-key-thumbgrid'] [data-testid='stColumn'] [data-testid='stVerticalBlock'] {gap: 0;}
[class*='st-key-thumbgrid'] [data-testid='stImageCaption'] {white-space: pre-line; line-height: 1.3;}
[class*='st-key-thumbgrid'] [data-testid='stImageContainer'] {max-width: 100%; min-width: 0;}
[class*='st-key-thumbgrid'] [data-testid='stElementContainer'][class*='_view_'] {margin-top: auto;}
[class*='st-key-thumbgrid'] [class*='_why_'], [class*='st-key-thumbgrid'] [class*='_view_'] {align-self: center;}
[class*='st-key-thumbgrid'] [data-testid='stBaseButton-tertiary'] {min-height: 0; padding: 0 0 0.25rem 0;}
[class*='st-key-thumbgrid'] [data-testid='stBaseButton-tertiary'] p {font-size: 0.8rem;}
</style>"""



def caption(analysis: ood_core.Analysis, position: int, score: float, badge: str = "") -> str:
    """``#position · score``, then the class (left out when unknown), then the review badge (if any), as
    Markdown (an image caption renders it): the class name escaped (``markup.escape``)."""
    lines = [f"#{position} · {score:.3f}", escape(analysis.class_name(position)), badge]
    return "\n".join(line for line in lines if line)


def open_explanation(position: int) -> None:
    """Show the item at ``position`` on the neighbours page (stops this run)."""
    st.session_state[EXPLAIN_POSITION] = int(position)
    st.switch_page(page_path("neighbours"))


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
    grid = st.container(key=grid_key(key))
    for start in range(0, len(positions), columns):
        cols = grid.columns(columns)
        for col, pos, score in zip(cols, positions[start:start + columns], scores[start:start + columns]):
            with col:
                png, width = grid_thumbnail(analysis, pos)
                st.image(png, width=width, output_format="PNG",  # the browser enlarges small ones, pixelated
                         caption=caption(analysis, pos, float(score), review.badge(item_marks, analysis.ids[pos])))
                if st.button("View", key=part_key(key, f"view_{pos}"), type="tertiary", icon=":material/open_in_full:",
                             help=f"#{pos} ({escape(analysis.ids[pos])}) large, with its metadata and the mark buttons"):
                    viewed = int(pos)
                if st.button("Why?", key=part_key(key, f"why_{pos}"), type="tertiary", icon=":material/manage_search:",
                                     help=f"Open #{pos} ({escape(analysis.ids[pos])}) beside its nearest train images"):
                    chosen = int(pos)
    if chosen is not None:
        open_explanation(chosen)
    if viewed is not None:
        review.item_view(analysis, viewed)


def listing_positions(analysis: ood_core.Analysis, which: str, ranked: np.ndarray) -> np.ndarray:
    """Map indices into the fit (``which="fit"``) or query scores to positions into ``analysis.ids``."""
    index = analysis.fit_index if which == "fit" else analysis.query_index
    return index[np.asarray(ranked, dtype=np.int64)]


# ------------------------------------------------------------------ what depends only on the run
# Orders of a run's scores and its id index, computed once per server and shared by sessions
# (an Analysis is shared by every session that loads it). An entry names its arrays by a key
# (e.g. a scores_id) and is trusted only while the arrays it was built from are the very objects
# given again, so two analyses under one name never mix. A few entries, least recently used
# dropped: a 1,000,000-item run takes about 16 MB per order.
_RUN_CACHE: "OrderedDict[tuple, tuple[tuple, Any]]" = OrderedDict()
_RUN_CACHE_LOCK = threading.Lock()
RUN_CACHE_ENTRIES = 24


def run_cached(key: tuple, sources: tuple, build: Callable[[], Any]) -> Any:
    """``build()``, once per ``key`` while ``sources`` (the arrays it reads) are the same objects."""
    with _RUN_CACHE_LOCK:
        hit = _RUN_CACHE.get(key)
        if hit is not None and len(hit[0]) == len(sources) and all(a is b for a, b in zip(hit[0], sources)):
            _RUN_CACHE.move_to_end(key)
            return hit[1]
    value = build()
    with _RUN_CACHE_LOCK:
        _RUN_CACHE[key] = (sources, value)
        _RUN_CACHE.move_to_end(key)
        while len(_RUN_CACHE) > RUN_CACHE_ENTRIES:
            _RUN_CACHE.popitem(last=False)
    return value


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False  # shared by sessions: nobody may sort it in place
    return array


@dataclass(frozen=True)
class Ranking:
    """The scores of one set in order, sorted once per run so that a threshold change costs a
    binary search instead of a sort. Equal scores are ordered by index, as in
    :func:`ood_core.rank_outliers`. Unscored items (an issue type's NaN) sort last and are in no
    listing, percentile or count: ``scored`` of the ``len`` items have a score."""

    ascending: np.ndarray  # indices into the scores, lowest score first (the unscored last)
    values: np.ndarray  # the scores in that order (non-decreasing, then the NaN of the unscored)
    scores: np.ndarray  # the scores themselves
    scored: int  # how many have a score: the first ``scored`` of ``ascending``
    _descending: list = field(default_factory=list, repr=False, compare=False)  # built on first use

    @classmethod
    def of(cls, scores: np.ndarray) -> "Ranking":
        scores = np.asarray(scores, dtype=np.float64)
        ascending = np.argsort(scores, kind="stable")
        return cls(_frozen(ascending), _frozen(scores[ascending]), scores, int(np.count_nonzero(~np.isnan(scores))), [])

    def __len__(self) -> int:
        return len(self.values)

    @property
    def unscored(self) -> np.ndarray:
        """Indices of the unscored items, in index order."""
        return np.sort(self.ascending[self.scored:])

    @property
    def descending(self) -> np.ndarray:
        """Indices, highest score first (equal scores by index, ascending; the unscored last)."""
        if not self._descending:
            self._descending.append(_frozen(np.argsort(-self.scores, kind="stable")))
        return self._descending[0]

    def count_below(self, threshold: float) -> int:
        """How many scores lie strictly below ``threshold`` (the flagged count)."""
        return int(np.searchsorted(self.values[:self.scored], float(threshold), side="left"))

    def percentile_threshold(self, percentile: float) -> float:
        """:func:`ood_core.percentile_threshold` of these scores, to the bit (``numpy.percentile``
        of the sorted values picks the same order statistics), without its sort."""
        return ood_core.percentile_threshold(self.values[:self.scored], percentile)

    def listing(self, which: str, threshold: float | None) -> np.ndarray:
        """Indices in the order of :func:`ood_core.rank_outliers`'s ``which`` (``top``, ``bottom``
        or ``borderline``), all the scored ones (take the first n): a view, not a copy."""
        if which == "top":
            return self.ascending[:self.scored]
        if which == "bottom":
            return self.descending[:self.scored]
        if which == "borderline":
            if threshold is None:
                return self.ascending[:0]
            # descending order puts the scores >= threshold first; the flagged ones follow
            return self.descending[self.scored - self.count_below(threshold):self.scored]
        raise ValueError(f"which must be 'top', 'bottom' or 'borderline'; got {which!r}")


def ranking(analysis: ood_core.Analysis, scorer: str, which: str) -> Ranking:
    """The :class:`Ranking` of ``scorer``'s ``which`` ("fit" or "query") scores, once per run."""
    fit_scores, query_scores = analysis.scores(scorer)
    scores = fit_scores if which == "fit" else query_scores
    return run_cached(("ranking", analysis.scores_id(scorer), which), (scores,), lambda: Ranking.of(scores))


def item_ranking(analysis: ood_core.Analysis, scorer: str) -> Ranking:
    """The :class:`Ranking` of :meth:`ood_core.Analysis.item_scores` (one score per item of ``ids``,
    NaN, sorted last, for items in neither set), once per run."""
    fit_scores, query_scores = analysis.scores(scorer)
    return run_cached(("item_ranking", analysis.scores_id(scorer)), (fit_scores, query_scores, analysis.ids),
                      lambda: Ranking.of(analysis.item_scores(scorer)))


def _id_positions(analysis: ood_core.Analysis) -> dict[str, int]:
    return run_cached(("id_positions", analysis.run_id), (analysis.ids,),
                      lambda: {item: p for p, item in enumerate(analysis.ids)})


#: Review codes of :func:`review_codes`: 0 for an item without a mark, then one per verdict.
REVIEW_CODES = {"unreviewed": 0, **{v: i for i, v in enumerate(ood_core.VERDICTS, start=1)}}


def review_codes(analysis: ood_core.Analysis, item_marks: dict) -> np.ndarray:
    """One code per item of ``analysis.ids`` (:data:`REVIEW_CODES`): 0 unreviewed, else its verdict.
    Costs the number of marks, not of items (the id index is built once per run)."""
    codes = np.zeros(len(analysis.ids), dtype=np.int8)
    if item_marks:
        index = _id_positions(analysis)
        for item, mark in item_marks.items():
            position = index.get(item)
            if position is not None:
                codes[position] = REVIEW_CODES[mark.verdict]
    return codes


def review_mask(positions: np.ndarray, codes: np.ndarray, which: str) -> np.ndarray:
    """Which of ``positions`` the review filter ``which`` (``ood_dashboard.review.FILTERS``) shows, as
    :func:`ood_dashboard.review.shown`, vectorised."""
    if which == "all":
        return np.ones(len(positions), dtype=bool)
    return codes[np.asarray(positions, dtype=np.int64)] == REVIEW_CODES[which]


def listing_page(analysis: ood_core.Analysis, scorer: str, which_set: str, listing: str, threshold: float, n: int,
                 codes: np.ndarray | None = None, shown: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` items of a grid: ``(indices into the set's scores, positions into ids)`` in
    the order of ``ood_core.rank_outliers(scores, threshold)[listing]``, keeping only those the
    review filter ``shown`` shows (``codes``: :func:`review_codes`). Reads only what it shows."""
    order = ranking(analysis, scorer, which_set).listing(listing, threshold)
    index = np.asarray(analysis.fit_index if which_set == "fit" else analysis.query_index, dtype=np.int64)
    if shown == "all" or codes is None:
        ranked = np.asarray(order[:n], dtype=np.int64)
        return ranked, index[ranked]
    want, kept, start, step = REVIEW_CODES[shown], [], 0, max(4 * n, 1024)
    while start < len(order) and sum(map(len, kept)) < n:  # a chunk at a time, growing: stop once n are found
        chunk = np.asarray(order[start:start + step], dtype=np.int64)
        kept.append(chunk[codes[index[chunk]] == want])
        start, step = start + step, step * 4
    ranked = np.concatenate(kept)[:n] if kept else np.empty(0, dtype=np.int64)
    return ranked, index[ranked]
