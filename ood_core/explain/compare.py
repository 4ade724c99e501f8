"""Whether the two scorers agree: quadrants of flags, a rank-averaged score, AUROC side by side."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .._validation import check_number, check_same_length, check_vector
from ..thresholds import ood_metrics

QUADRANTS = ("both", "feature_only", "prediction_only", "neither")


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
    ff = f < check_number(feature_threshold, "feature_threshold")
    pf = p < check_number(pred_threshold, "pred_threshold")
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
