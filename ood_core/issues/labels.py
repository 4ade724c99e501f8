"""Label issues by confident learning (Northcutt et al., JAIR 2021) on out-of-sample pred_probs.

Each class ``j`` has a confident threshold ``t_j``: the mean probability of class ``j`` over the fit
items labelled ``j`` (their mean self-confidence; :func:`~ood_core.scorers.confident_thresholds`).
An item is *confidently* of class ``j`` when ``p_j >= t_j``; its confident class is the most
probable of those. Confident learning counts the fit items whose confident class is not their given
class (the off-diagonal of the confident joint): that count is the estimated number of label errors.

The score ranks items (lower = more likely mislabelled): ``"self_confidence"`` is ``p_given``;
``"normalized_margin"`` is ``(p_given - max_other + 1) / 2``. The default threshold is set so that as
many fit items are flagged as confident learning estimates are mislabelled.
"""
from __future__ import annotations

import numpy as np

from ..scorers import confident_thresholds
from ._registry import IssueScores, IssueType, issue_family

RANK_BY = ("self_confidence", "normalized_margin")


@issue_family(
    "label",
    IssueType("label", "Label issues", "label", float("nan"),
              "set per run: the fit score below which as many fit items fall as confident learning counts "
              "items confidently predicted as another class (per-class thresholds = mean self-confidence)",
              "the given class disagrees with the out-of-sample predicted probabilities"),
)
def label_issues(analysis, rank_by: str = "self_confidence") -> dict[str, IssueScores]:
    """The ``label`` type over ``analysis.ids``: fit items by their out-of-sample pred_probs, query
    items with a class the classifier knows by the classifier fitted on the fit set (out of sample
    for them too); NaN for every other item."""
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}; got {rank_by!r}")
    n = len(analysis.ids)
    scores, detail = np.full(n, np.nan), [""] * n
    if analysis.fit_pred_probs is None:
        return {"label": IssueScores("label", scores, float("nan"), detail, {
            "unavailable": "no pred_probs: the fit set needs class labels of at least 2 classes"})}
    classes = np.asarray(analysis.pred_classes, dtype=np.int64)
    fit_index = np.asarray(analysis.fit_index, dtype=np.int64)
    P_fit = np.asarray(analysis.fit_pred_probs, dtype=np.float64)
    y_fit = np.searchsorted(classes, analysis.labels[fit_index])
    thresholds = confident_thresholds(P_fit, y_fit)
    positions, P, y = [fit_index], [P_fit], [y_fit]
    if not analysis.same_set and analysis.query_pred_probs is not None:
        q = np.asarray(analysis.query_index, dtype=np.int64)
        known = np.isin(analysis.labels[q], classes)
        positions.append(q[known])
        P.append(np.asarray(analysis.query_pred_probs, dtype=np.float64)[known])
        y.append(np.searchsorted(classes, analysis.labels[q[known]]))
    positions, P, y = np.concatenate(positions), np.concatenate(P), np.concatenate(y)
    rows = np.arange(len(y))
    given = P[rows, y]
    others = P.copy()
    others[rows, y] = -np.inf
    likely = np.argmax(others, axis=1)
    best_other = others[rows, likely]
    score = given if rank_by == "self_confidence" else (given - best_other + 1.0) / 2.0
    confident = np.where(P >= thresholds, P, -np.inf)
    confident_class = np.argmax(confident, axis=1)
    off_diagonal = np.isfinite(confident[rows, confident_class]) & (confident_class != y)
    likely = np.where(off_diagonal, confident_class, likely)
    n_fit = len(fit_index)
    n_cl = int(off_diagonal[:n_fit].sum())
    threshold = _threshold_for_count(score[:n_fit], n_cl)
    scores[positions] = np.clip(score, 0.0, 1.0)
    names = analysis.class_names
    for pos, s, yy, ll, pg, pl in zip(positions, score, y, likely, given, P[rows, likely]):
        detail[pos] = (f"likely {names[classes[ll]]} (p={pl:.2f}); given {names[classes[yy]]} (p={pg:.2f})")
    info = {"rank_by": rank_by, "confident_thresholds": {names[c]: float(t) for c, t in zip(classes, thresholds)},
            "estimated_label_errors_in_fit": n_cl,
            "confident_joint_off_diagonal": [int(p) for p in positions[off_diagonal]]}
    return {"label": IssueScores("label", scores, threshold, detail, info)}


def _threshold_for_count(scores: np.ndarray, count: int) -> float:
    """A threshold under which exactly ``count`` of ``scores`` fall (barring ties): halfway between
    the ``count``-th and the next lowest score."""
    s = np.sort(scores)
    if count <= 0:
        return float(s[0]) if len(s) else 0.0
    if count >= len(s):
        return float(np.nextafter(s[-1], np.inf))
    return float((s[count - 1] + s[count]) / 2.0)
