"""Views of an Analysis (duck-typed): to become methods of ``Analysis``; this module then goes."""
from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_int
from ..scorers import FeatureScorer
from .neighbours import explain_neighbours


def explain_item(analysis, position: int, k: int | None = None,
                 threshold: float | None = None) -> dict[str, Any]:
    """:func:`explain_neighbours` for the item at ``position`` (an index into ``analysis.ids``).

    A fit item is explained as a fit row (its own entry excluded); any other item as a query
    row. Adds ``positions``: the neighbours as indices into ``analysis.ids`` (for images, labels
    and ids), ``position`` and ``is_fit``.
    """
    n = len(analysis.ids)
    position = check_int(position, "position", 0, n - 1)
    hits = np.flatnonzero(np.asarray(analysis.fit_index) == position)
    fit_position = int(hits[0]) if len(hits) else None
    scorer: FeatureScorer = analysis.feature_scorer
    k_eff = scorer.k_ if k is None else k
    needs_row = fit_position is None or (isinstance(k_eff, (int, np.integer)) and k_eff > scorer.k_)
    x = analysis.features[position] if needs_row else None
    result = explain_neighbours(scorer, x, fit_position=fit_position, k=k, threshold=threshold)
    result["positions"] = np.asarray(analysis.fit_index, dtype=np.int64)[result["indices"]]
    result["position"] = position
    result["is_fit"] = fit_position is not None
    return result


def predicted_classes(analysis, which: str = "query") -> np.ndarray | None:
    """Predicted class index (into ``analysis.class_names``) of each query (or fit) item: the
    argmax of its pred_probs mapped through ``analysis.pred_classes``; None without pred_probs.

    ``which``: ``"query"`` (default) or ``"fit"`` (the out-of-sample fit predictions).
    """
    if which not in ("query", "fit"):
        raise ValueError(f"which must be 'query' or 'fit'; got {which!r}")
    P = analysis.query_pred_probs if which == "query" else analysis.fit_pred_probs
    if P is None:
        return None
    columns = analysis.pred_classes if analysis.pred_classes is not None else np.arange(P.shape[1])
    return np.asarray(columns, dtype=np.int64)[np.argmax(P, axis=1)]


def item_scores(analysis, scorer: str = "feature") -> np.ndarray:
    """One score per item of ``analysis.ids`` (float64, ``(N,)``): the fit score of a fit item,
    the query score of a query item (the same value when fit and query are the same items), NaN
    for an item in neither set. ``scorer``: ``"feature"`` or ``"prediction"``."""
    fit_scores, query_scores = analysis.scores(scorer)
    out = np.full(len(analysis.ids), np.nan)
    out[np.asarray(analysis.query_index, dtype=np.int64)] = query_scores
    out[np.asarray(analysis.fit_index, dtype=np.int64)] = fit_scores
    return out
