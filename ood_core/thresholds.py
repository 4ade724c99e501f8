"""Percentile thresholds, outlier rankings and evaluation metrics (SCORING.md sections 3-4)."""
from __future__ import annotations

import numpy as np

from ._validation import check_int, check_number, check_same_length, check_vector


def percentile_threshold(fit_scores, percentile: float) -> float:
    """``numpy.percentile(fit_scores, percentile)`` (linear). Items scoring strictly below it are flagged."""
    s = check_vector(fit_scores, "fit_scores")
    try:
        p = check_number(percentile, "percentile")
    except ValueError:
        p = float("nan")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be a number in [0, 100]; got {percentile!r}")
    return float(np.percentile(s, p))


def scored_values(scores, name: str = "fit_scores") -> np.ndarray:
    """The values of ``scores`` that are not NaN, in their order. An issue type leaves the items it
    cannot score NaN (:class:`~ood_core.issues.IssueScores`); a percentile threshold is taken over
    the scored items only, and the unscored ones are counted apart, never flagged. ValueError
    naming ``name`` when no item is scored, or for an infinite value."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {s.shape}")
    kept = s[~np.isnan(s)]
    if len(kept) == 0:
        raise ValueError(f"{name} holds no scored item ({len(s)} item(s), every one NaN = not scored): "
                         "a percentile of them does not exist")
    return check_vector(kept, name)


def flag(scores, threshold: float) -> np.ndarray:
    """Boolean mask of flagged items: score strictly below ``threshold``."""
    return check_vector(scores, "scores") < float(threshold)


def percentile_of(fit_scores, threshold: float) -> float:
    """Share of ``fit_scores`` strictly below ``threshold``, in percent (the inverse view of a threshold)."""
    s = check_vector(fit_scores, "fit_scores")
    return float(100.0 * np.count_nonzero(s < float(threshold)) / len(s))


def rank_outliers(scores, threshold: float | None = None, n: int = 15) -> dict[str, np.ndarray]:
    """Indices of the ``n`` top outliers, the ``n`` most typical items and the ``n`` borderline flagged ones.

    ``top``: lowest scores, ascending. ``bottom``: highest scores, descending. ``borderline``:
    flagged items (score < threshold) with the highest scores, descending (empty without a
    threshold). Ties are broken by index, ascending.
    """
    s = check_vector(scores, "scores", min_len=0)
    n = check_int(n, "n", 0)
    idx = np.arange(len(s))
    ascending = np.lexsort((idx, s))
    descending = np.lexsort((idx, -s))
    if threshold is None:
        borderline = np.empty(0, dtype=np.int64)
    else:
        borderline = descending[s[descending] < float(threshold)][:n]
    return {"top": ascending[:n], "bottom": descending[:n], "borderline": borderline}


def roc_points(scores, is_ood, drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """ROC curve (fpr, tpr) with "out" as the positive class and ``-score`` as the detector output."""
    from sklearn.metrics import roc_curve

    s, truth = _check_eval(scores, is_ood)
    fpr, tpr, _ = roc_curve(truth, -s, drop_intermediate=drop_intermediate)
    return fpr, tpr


def _check_eval(scores, is_ood) -> tuple[np.ndarray, np.ndarray]:
    s = check_vector(scores, "scores")
    t = np.asarray(is_ood)
    if t.ndim != 1:
        raise ValueError(f"is_ood must be 1-D; got shape {t.shape}")
    if t.dtype != bool:
        if not np.issubdtype(t.dtype, np.number) or not np.isin(t, (0, 1)).all():
            raise ValueError("is_ood must be booleans (True = out of distribution) or 0/1")
        t = t.astype(bool)
    check_same_length(s, "scores", t, "is_ood")
    n_out = int(t.sum())
    if n_out == 0 or n_out == len(t):
        raise ValueError(
            f"is_ood must hold both in-distribution and out-of-distribution items; got {n_out} out "
            f"of {len(t)}"
        )
    return s, t


def ood_metrics(scores, is_ood, threshold: float | None = None) -> dict[str, float]:
    """AUROC and FPR at 95% TPR ("out" positive, ``-score`` as output), and at ``threshold``
    (flagged = score < threshold) the TPR, FPR, precision and confusion counts (:func:`flag_metrics`).

    Precision is NaN when nothing is flagged.
    """
    from sklearn.metrics import roc_auc_score

    s, truth = _check_eval(scores, is_ood)
    fpr, tpr = roc_points(s, truth, drop_intermediate=False)
    result: dict[str, float] = {
        "auroc": float(roc_auc_score(truth, -s)),
        # The lowest false-positive rate among operating points that catch >= 95% of the outliers.
        "fpr_at_95_tpr": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
        "n": int(len(s)),
        "n_out": int(truth.sum()),
    }
    if threshold is not None:
        counts = flag_metrics(s < float(threshold), truth)
        result["threshold"] = float(threshold)
        result.update({key: counts[key] for key in ("tpr", "fpr", "precision", "tp", "fp", "tn", "fn")})
    return result


def flag_metrics(flagged, is_ood) -> dict[str, float]:
    """Confusion counts of a flag mask against the known truth ("out" positive), also for flags
    that do not come from one threshold (e.g. :func:`ood_core.explain.flag_per_class`).

    Returns ``flagged``, ``tp``, ``fp``, ``tn``, ``fn`` (ints) and ``tpr``, ``fpr``,
    ``precision`` (floats; NaN when their denominator is 0), as :func:`ood_metrics` reports them.
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
