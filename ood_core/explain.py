"""Explain and compare (issue 5): why an item is an outlier, and whether the two scorers agree.

Plain functions on arrays and fitted scorers; the dashboard pages only draw what they return.

- :func:`explain_neighbours` / :func:`explain_item`: an item's nearest fit rows, their distances,
  its own mean distance and the distance a threshold corresponds to.
- :func:`project_2d`: a 2-D map of the features (PCA, or t-SNE), subsampled for drawing.
- :func:`quadrants`: which items each scorer flags, and the Spearman correlation of the scores.
- :func:`rank_average`, :func:`rank_average_fit_query`, :func:`compare_auroc`: a combined score and
  the AUROC of each score side by side.
- :func:`per_class_thresholds`, :func:`flag_per_class`, :func:`per_class_counts`,
  :func:`predicted_classes`: class-conditional thresholds.
- :func:`item_scores`, :func:`flag_metrics`: one score per item, and confusion counts of any flag mask.

Scores follow the package contract: in [0, 1], lower = more atypical; an item is flagged when its
score is strictly below the threshold.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np

from ._validation import check_labels, check_matrix, check_same_length, check_vector
from .scorers import FeatureScorer
from .thresholds import ood_metrics, percentile_threshold

Progress = Callable[[str, int, int], None]  # (stage, done, total), as in analysis.py

QUADRANTS = ("both", "feature_only", "prediction_only", "neither")


def _check_int(value: Any, name: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < lo or (hi is not None and value > hi):
        allowed = f"an integer >= {lo}" if hi is None else f"an integer in {lo}..{hi}"
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    return int(value)


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)


# ============================================================================ 1. why this one
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
    if not hasattr(scorer, "fit_scores_"):
        raise RuntimeError("This FeatureScorer is not fitted yet: call fit first, then explain_neighbours")
    n_fit, k_score = scorer.n_fit_, scorer.k_
    if x is None and fit_position is None:
        raise ValueError("pass x (a query item's features) or fit_position (a fit item); got neither")
    if fit_position is not None:
        fit_position = _check_int(fit_position, "fit_position", 0, n_fit - 1)
    k = k_score if k is None else _check_int(k, "k", 1, n_fit - 1 if fit_position is not None else n_fit)
    if threshold is not None:
        threshold = _check_number(threshold, "threshold")
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


def explain_item(analysis, position: int, k: int | None = None,
                 threshold: float | None = None) -> dict[str, Any]:
    """:func:`explain_neighbours` for the item at ``position`` (an index into ``analysis.ids``).

    A fit item is explained as a fit row (its own entry excluded); any other item as a query
    row. Adds ``positions``: the neighbours as indices into ``analysis.ids`` (for images, labels
    and ids), ``position`` and ``is_fit``.
    """
    n = len(analysis.ids)
    position = _check_int(position, "position", 0, n - 1)
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


# ============================================================================ 2. embedding map
def _pca(X: np.ndarray, random_state: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    if not np.any(X - X[0]):  # a single row, or all rows equal: every point at the origin
        return np.zeros((X.shape[0], 2))
    n_comp = min(2, X.shape[0], X.shape[1])
    # Exact either way; the D x D covariance's eigendecomposition is ~10x faster than a full SVD
    # when there are more rows than features (6,000 x 1,280: about a second instead of a minute).
    solver = "covariance_eigh" if X.shape[0] > X.shape[1] else "full"
    coords = PCA(n_components=n_comp, svd_solver=solver, random_state=random_state).fit_transform(X)
    # Fix each axis's sign (the largest |value| positive) so the map does not flip between runs.
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), np.arange(n_comp)])
    coords = coords * np.where(signs == 0, 1.0, signs)
    if n_comp < 2:
        coords = np.hstack([coords, np.zeros((len(X), 2 - n_comp))])
    return coords


def _tsne(X: np.ndarray, random_state: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = X.shape[0]
    if n < 5:
        raise ValueError(f"features needs at least 5 rows for method='tsne'; got {n}")
    perplexity = float(min(30.0, (n - 1) / 3))
    tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, learning_rate="auto",
                random_state=random_state)
    return tsne.fit_transform(X)


# Projection methods: name -> function(features, random_state) -> (n, 2) coordinates.
PROJECTIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {"pca": _pca, "tsne": _tsne}
PROJECTION_TITLES = {"pca": "PCA", "tsne": "t-SNE"}


def project_2d(
    features,
    method: str = "pca",
    random_state: int = 0,
    max_points: int | None = None,
    progress: Progress | None = None,
    *,
    normalize: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates of the feature rows, for drawing a map.

    ``method``: ``"pca"`` (scikit-learn PCA, exact: the covariance's eigendecomposition when there
    are more rows than features, else a full SVD; each axis's sign fixed so that its
    largest absolute coordinate is positive) or ``"tsne"`` (scikit-learn TSNE, ``init="pca"``,
    perplexity ``min(30, (m - 1) / 3)``; slow: minutes for thousands of rows). With
    ``max_points`` smaller than the number of rows, a subsample of ``max_points`` rows drawn
    without replacement by ``numpy.random.default_rng(random_state)`` is projected.
    ``normalize=True`` L2-normalises rows first (the cosine geometry the feature scorer uses
    when there are more than 3 features). Deterministic for a given ``random_state``.
    ``progress(stage, done, total)`` is called with ``stage=method`` before (0, 1) and after (1, 1).

    Returns ``(coords, index_drawn)``: float32 ``(m, 2)`` and the int64 row indices (ascending)
    of ``features`` that ``coords`` belong to (all rows when nothing was subsampled).
    """
    if method not in PROJECTIONS:
        raise ValueError(f"method must be one of {sorted(PROJECTIONS)}; got {method!r}")
    X = check_matrix(features, "features")
    random_state = _check_int(random_state, "random_state", 0)
    n = X.shape[0]
    if max_points is not None:
        max_points = _check_int(max_points, "max_points", 2)
    if max_points is not None and n > max_points:
        rng = np.random.default_rng(random_state)
        index_drawn = np.sort(rng.choice(n, size=max_points, replace=False)).astype(np.int64)
        X = X[index_drawn]
    else:
        index_drawn = np.arange(n, dtype=np.int64)
    X = X.astype(np.float64)
    if normalize:
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        X = X / np.where(norms == 0, 1.0, norms)
    if progress is not None:
        progress(method, 0, 1)
    coords = PROJECTIONS[method](X, random_state)
    if progress is not None:
        progress(method, 1, 1)
    return np.asarray(coords, dtype=np.float32), index_drawn


# ============================================================================ 3. scorer agreement
def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def quadrants(feature_scores, pred_scores, feature_threshold: float, pred_threshold: float) -> dict[str, Any]:
    """Split items by which scorer flags them (flagged = score strictly below its threshold).

    Returns a dict with ``masks`` and ``indices`` (each ``{quadrant: array}`` for the quadrants
    ``"both"``, ``"feature_only"``, ``"prediction_only"``, ``"neither"``; indices ascending),
    ``counts`` (``{quadrant: int}``, summing to ``n``), ``n`` and ``spearman``: Spearman's rank
    correlation of the two score arrays (``scipy.stats.spearmanr``; NaN when either array is
    constant or there are fewer than 2 items).
    """
    f = check_vector(feature_scores, "feature_scores")
    p = check_vector(pred_scores, "pred_scores")
    check_same_length(f, "feature_scores", p, "pred_scores")
    ff = f < _check_number(feature_threshold, "feature_threshold")
    pf = p < _check_number(pred_threshold, "pred_threshold")
    masks = {"both": ff & pf, "feature_only": ff & ~pf, "prediction_only": ~ff & pf, "neither": ~ff & ~pf}
    return {
        "masks": masks,
        "indices": {q: np.flatnonzero(m) for q, m in masks.items()},
        "counts": {q: int(m.sum()) for q, m in masks.items()},
        "n": len(f),
        "spearman": _spearman(f, p),
    }


def _score_arrays(arrays: Sequence, name: str) -> list[np.ndarray]:
    if len(arrays) == 0:
        raise ValueError(f"{name} needs at least one score array; got none")
    out = [check_vector(a, f"{name}[{i}]") for i, a in enumerate(arrays)]
    for i, a in enumerate(out[1:], start=1):
        if len(a) != len(out[0]):
            raise ValueError(
                f"{name}[{i}] has {len(a)} values but {name}[0] has {len(out[0])}; every score array "
                "must score the same items"
            )
    return out


def _mid_ecdf(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(count(reference < v) + count(reference == v) / 2) / len(reference), for each v."""
    ref = np.sort(reference)
    below = np.searchsorted(ref, values, side="left")
    at_or_below = np.searchsorted(ref, values, side="right")
    return (below + 0.5 * (at_or_below - below)) / len(ref)


def rank_average(*score_arrays) -> np.ndarray:
    """Combine scores of the same items by averaging their ranks.

    Each array's values become mid-ranks within that array,
    ``u = (rankdata(s, "average") - 0.5) / n``, which lie in ``(0, 1)``; the result is the mean
    of the ``u`` over the arrays. Lower = more atypical, as for the scorers. The result equals
    ``rank_average_fit_query(arrays, arrays)[0]`` (every array is its own reference).
    """
    from scipy.stats import rankdata

    arrays = _score_arrays(score_arrays, "score_arrays")
    n = len(arrays[0])
    return np.mean([(rankdata(a, method="average") - 0.5) / n for a in arrays], axis=0)


def rank_average_fit_query(fit_scores_list: Sequence, query_scores_list: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Rank-average scores so that a fit-set percentile threshold applies to the query set.

    For each scorer ``j`` the reference is its fit scores ``F_j``; every value ``s`` (fit or
    query) becomes its mid-rank empirical CDF under ``F_j``:
    ``u_j(s) = (count(F_j < s) + count(F_j == s) / 2) / len(F_j)``, in ``[0, 1]``. The combined
    score is the mean of ``u_j`` over the scorers. Fit and query items go through the same
    function, so ``percentile_threshold(fit_combined, p)`` flags about ``p`` % of a clean fit set
    and the query items are judged against the same reference. On the fit set this equals
    :func:`rank_average`. Lower = more atypical.

    Returns ``(fit_combined, query_combined)``.
    """
    fits = _score_arrays(fit_scores_list, "fit_scores_list")
    queries = _score_arrays(query_scores_list, "query_scores_list")
    if len(fits) != len(queries):
        raise ValueError(
            f"fit_scores_list has {len(fits)} score arrays but query_scores_list has {len(queries)}; "
            "pass one fit and one query array per scorer, in the same order"
        )
    fit_combined = np.mean([_mid_ecdf(f, f) for f in fits], axis=0)
    query_combined = np.mean([_mid_ecdf(f, q) for f, q in zip(fits, queries)], axis=0)
    return fit_combined, query_combined


def compare_auroc(is_ood, **named_scores) -> dict[str, float]:
    """AUROC of each named score ("out" positive, ``-score`` as output), via :func:`ood_metrics`.

    Example: ``compare_auroc(is_ood, feature=fs, prediction=ps, rank_average=ra)``.
    """
    if not named_scores:
        raise ValueError("compare_auroc needs at least one named score array, e.g. feature=scores")
    truth = np.asarray(is_ood)
    result: dict[str, float] = {}
    for name, scores in named_scores.items():
        s = check_vector(scores, name)
        if truth.ndim == 1:
            check_same_length(s, name, truth, "is_ood")
        result[name] = ood_metrics(s, truth)["auroc"]
    return result


# ============================================================================ 4. per-class view
def per_class_thresholds(fit_scores, fit_labels, percentile: float, n_classes: int | None = None,
                         *, min_rows: int = 2) -> np.ndarray:
    """``numpy.percentile`` of the fit scores within each fit class (labels ``0..n_classes-1``).

    A class with fewer than ``min_rows`` fit rows gets the global threshold
    ``percentile_threshold(fit_scores, percentile)`` instead: with a warning naming the class
    when it has 1..min_rows-1 rows, silently when it has none (typically a class present only
    in the query set; its row count shows in :func:`per_class_counts`). ``n_classes`` defaults
    to ``max(fit_labels) + 1``.

    Returns float64 ``(n_classes,)``.
    """
    s = check_vector(fit_scores, "fit_scores")
    y = check_labels(fit_labels, name="fit_labels")
    check_same_length(y, "fit_labels", s, "fit_scores")
    global_thr = percentile_threshold(s, percentile)
    min_rows = _check_int(min_rows, "min_rows", 1)
    if n_classes is None:
        n_classes = int(y.max()) + 1
    else:
        n_classes = _check_int(n_classes, "n_classes", 1)
        if y.max() >= n_classes:
            raise ValueError(f"fit_labels must lie in 0..{n_classes - 1} (n_classes={n_classes}); found {y.max()}")
    counts = np.bincount(y, minlength=n_classes)
    thresholds = np.full(n_classes, global_thr)
    for c in np.flatnonzero(counts >= min_rows):
        thresholds[c] = np.percentile(s[y == c], float(percentile))
    few = np.flatnonzero((counts > 0) & (counts < min_rows))
    if len(few):
        detail = ", ".join(f"class {c} ({counts[c]} row{'s' if counts[c] != 1 else ''})" for c in few)
        warnings.warn(
            f"{detail}: fewer than min_rows={min_rows} fit rows, so the global threshold "
            f"{global_thr:.6g} is used for {'it' if len(few) == 1 else 'them'}",
            stacklevel=2,
        )
    return thresholds


def _check_thresholds(class_thresholds) -> np.ndarray:
    t = np.asarray(class_thresholds)
    if t.ndim != 1 or len(t) == 0 or not np.issubdtype(t.dtype, np.number):
        raise ValueError(
            f"class_thresholds must be a non-empty 1-D array of numbers (one per class); got shape {t.shape}"
        )
    return t.astype(np.float64)


def flag_per_class(query_scores, query_classes, class_thresholds) -> np.ndarray:
    """Flag each item against its class's threshold: ``score < class_thresholds[class]``.

    Pass the query items' *predicted* classes (:func:`predicted_classes`). A NaN threshold flags
    nothing.
    """
    s = check_vector(query_scores, "query_scores", min_len=0)
    t = _check_thresholds(class_thresholds)
    c = (check_labels(query_classes, len(t), name="query_classes") if np.size(query_classes)
         else np.empty(0, np.int64))
    check_same_length(c, "query_classes", s, "query_scores")
    return s < t[c]


def per_class_counts(fit_scores, fit_labels, query_scores, query_classes, class_thresholds,
                     class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One record per class: ``class``, ``name``, ``threshold``, ``fit_rows``, ``fit_flagged``,
    ``query_rows``, ``query_flagged``.

    Fit items are counted under their label (the class whose threshold they set), query items
    under their predicted class; flagged = score strictly below the class's threshold.
    """
    t = _check_thresholds(class_thresholds)
    n_classes = len(t)
    fit_flag = flag_per_class(fit_scores, check_labels(fit_labels, n_classes, name="fit_labels"), t)
    fit_y = np.asarray(fit_labels, dtype=np.int64)
    query_flag = flag_per_class(query_scores, query_classes, t)
    query_y = np.asarray(query_classes, dtype=np.int64)
    if class_names is not None and len(class_names) < n_classes:
        raise ValueError(
            f"class_names has {len(class_names)} names but class_thresholds has {n_classes} classes"
        )
    fit_rows = np.bincount(fit_y, minlength=n_classes)
    fit_flagged = np.bincount(fit_y[fit_flag], minlength=n_classes)
    query_rows = np.bincount(query_y, minlength=n_classes)
    query_flagged = np.bincount(query_y[query_flag], minlength=n_classes)
    return [
        {
            "class": c,
            "name": str(class_names[c]) if class_names is not None else str(c),
            "threshold": float(t[c]),
            "fit_rows": int(fit_rows[c]),
            "fit_flagged": int(fit_flagged[c]),
            "query_rows": int(query_rows[c]),
            "query_flagged": int(query_flagged[c]),
        }
        for c in range(n_classes)
    ]


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


# ============================================================================ 5. helpers for views
def item_scores(analysis, scorer: str = "feature") -> np.ndarray:
    """One score per item of ``analysis.ids`` (float64, ``(N,)``): the fit score of a fit item,
    the query score of a query item (the same value when fit and query are the same items), NaN
    for an item in neither set. ``scorer``: ``"feature"`` or ``"prediction"``."""
    fit_scores, query_scores = analysis.scores(scorer)
    out = np.full(len(analysis.ids), np.nan)
    out[np.asarray(analysis.query_index, dtype=np.int64)] = query_scores
    out[np.asarray(analysis.fit_index, dtype=np.int64)] = fit_scores
    return out


def flag_metrics(flagged, is_ood) -> dict[str, float]:
    """Confusion counts of a flag mask against the known truth ("out" positive), for flags that
    do not come from one threshold (e.g. :func:`flag_per_class`).

    Returns ``flagged``, ``tp``, ``fp``, ``tn``, ``fn`` (ints) and ``tpr``, ``fpr``,
    ``precision`` (floats; NaN when their denominator is 0), as :func:`ood_metrics` defines them.
    """
    f = np.asarray(flagged)
    t = np.asarray(is_ood)
    if f.ndim != 1 or f.dtype != bool:
        raise ValueError(f"flagged must be a 1-D boolean array; got dtype {f.dtype}, shape {f.shape}")
    if t.ndim != 1 or t.dtype != bool:
        raise ValueError(f"is_ood must be a 1-D boolean array; got dtype {t.dtype}, shape {t.shape}")
    check_same_length(f, "flagged", t, "is_ood")
    tp = int(np.count_nonzero(f & t))
    fp = int(np.count_nonzero(f & ~t))
    fn = int(np.count_nonzero(~f & t))
    tn = int(np.count_nonzero(~f & ~t))

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    return {"flagged": tp + fp, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "tpr": ratio(tp, tp + fn), "fpr": ratio(fp, fp + tn), "precision": ratio(tp, tp + fp)}
