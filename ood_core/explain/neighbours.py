"""Why an item is an outlier: its nearest fit rows and the distance a threshold corresponds to."""
from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_fitted, check_int, check_matrix, check_number
from ..scorers import FeatureScorer


def explain_neighbours(
    scorer: FeatureScorer,
    x=None,
    *,
    fit_position: int | None = None,
    k: int | None = None,
    threshold: float | None = None,
) -> dict[str, Any]:
    """The nearest fit rows of one item, and how its mean distance compares with a threshold.

    The item is either a query row ``x`` (its features, shape ``(D,)`` or ``(1, D)``; nothing is
    excluded) or the fit row at ``fit_position`` (its own entry excluded by index, as in
    :meth:`FeatureScorer.fit`). Only :meth:`FeatureScorer.kneighbors` is used; nothing is refitted.
    For a fit row, ``k`` up to ``scorer.k_`` is answered from what ``fit`` stored; a larger ``k``
    needs that row's features as ``x`` too (one query row is searched, then the row itself dropped).

    Parameters
    ----------
    scorer : a fitted FeatureScorer.
    x : the item's feature row (query item), or the fit row's features (only for ``k > scorer.k_``).
    fit_position : position of the item in the fit set.
    k : neighbours to list (default ``scorer.k_``).
    threshold : a feature-score threshold in (0, 1]; its distance is returned too.

    Returns
    -------
    dict with ``indices`` (int64, ``(k,)``, positions in the fit set, nearest first; ties by
    index), ``distances`` (float64, ``(k,)``), ``mean_distance`` (mean distance to the
    ``scorer.k_`` nearest fit rows: the ``d`` of the score), ``score``, ``k``, ``k_score``
    (``scorer.k_``), ``metric``, ``fit_position`` (or None), ``threshold``,
    ``threshold_distance`` (``scorer.score_to_distance(threshold)``: items whose mean distance
    exceeds it are flagged) and ``flagged`` (``score < threshold``); the last three are None
    without a threshold.
    """
    if not isinstance(scorer, FeatureScorer):
        raise TypeError(f"scorer must be a FeatureScorer; got {type(scorer).__name__}")
    check_fitted(scorer, "fit_scores_")
    n_fit, k_score = scorer.n_fit_, scorer.k_
    if x is None and fit_position is None:
        raise ValueError("pass x (a query item's features) or fit_position (a fit item); got neither")
    if fit_position is not None:
        fit_position = check_int(fit_position, "fit_position", 0, n_fit - 1)
    k = k_score if k is None else check_int(k, "k", 1, n_fit - 1 if fit_position is not None else n_fit)
    if threshold is not None:
        threshold = check_number(threshold, "threshold")
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must lie in (0, 1] (a feature-score threshold); got {threshold!r}")

    row = None
    if x is not None:
        row = check_matrix(np.asarray(x).reshape(1, -1) if np.ndim(x) == 1 else x, "x")
        if row.shape[0] != 1:
            raise ValueError(f"x must be one item's features, shape (D,) or (1, D); got shape {row.shape}")
        if row.shape[1] != scorer.n_features_in_:
            raise ValueError(
                f"x has {row.shape[1]} features but the scorer was fitted on {scorer.n_features_in_}"
            )

    if fit_position is not None:
        mean_distance = float(scorer.fit_distances_[fit_position])
        score = float(scorer.fit_scores_[fit_position])
        if k <= k_score:
            dist, idx = scorer.kneighbors(None, k_score)
            dist, idx = dist[fit_position, :k], idx[fit_position, :k]
        elif row is None:
            raise ValueError(
                f"k={k} is larger than the scorer's k_={k_score}: for a fit item pass its features as "
                "x too, so that one row is searched instead of the whole fit set"
            )
        else:
            dist, idx = scorer.kneighbors(row, k + 1)
            dist, idx = dist[0], idx[0]
            keep = idx != fit_position
            if keep.all():  # the row itself fell outside the k + 1 (exact duplicates tie with it)
                keep[-1] = False
            dist, idx = dist[keep], idx[keep]
    else:
        dist, idx = scorer.kneighbors(row, max(k, k_score))
        dist, idx = dist[0], idx[0]
        mean_distance = float(dist[:k_score].astype(np.float64).mean())
        score = float(scorer.score(row)[0])
        dist, idx = dist[:k], idx[:k]

    result: dict[str, Any] = {
        "indices": np.asarray(idx, dtype=np.int64),
        "distances": np.asarray(dist, dtype=np.float64),
        "mean_distance": mean_distance,
        "score": score,
        "k": int(k),
        "k_score": int(k_score),
        "metric": scorer.metric_,
        "fit_position": fit_position,
        "threshold": threshold,
        "threshold_distance": None if threshold is None else scorer.score_to_distance(threshold),
        "flagged": None if threshold is None else bool(score < threshold),
    }
    return result
