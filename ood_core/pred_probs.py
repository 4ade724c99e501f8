"""Out-of-sample predicted probabilities for the fit set, from a classifier on its features."""
from __future__ import annotations

import logging
import warnings
from typing import Callable, Sequence

import numpy as np

from ._validation import check_labels, check_matrix, check_same_length

logger = logging.getLogger(__name__)

# Inverse regularisation strengths tried by cross-validation. On 1280-d image embeddings strong
# regularisation is what works (DESIGN.md: C=1e-3 gives pred_probs AUROC 0.81, C=1 gives 0.52).
DEFAULT_CS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)


def _log_loss(P: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(P[np.arange(len(y)), y], 1e-15, None))))


def _classifier(C: float, random_state: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000, tol=1e-4, random_state=random_state)


def out_of_sample_pred_probs(
    features,
    labels,
    *,
    n_splits: int = 5,
    Cs: Sequence[float] = DEFAULT_CS,
    random_state: int = 0,
    progress: Callable[[int, int], None] | None = None,
):
    """Predicted class probabilities for each fit row from a model that never saw that row.

    A logistic regression is cross-validated by stratified ``n_splits``-fold over the
    inverse regularisation strengths ``Cs``; the ``C`` with the lowest held-out log loss
    wins, its held-out probabilities are the fit set's ``pred_probs``, and a classifier
    with that ``C`` is refitted on the whole fit set to score new data
    (``classifier.predict_proba(features)``; ``classifier.C`` is the chosen value).

    Returns ``(fit_pred_probs, classifier)``; columns follow classes ``0..n_classes-1``.
    """
    from sklearn.model_selection import StratifiedKFold

    X = check_matrix(features, "features")
    y = check_labels(labels)
    check_same_length(X, "features", y, "labels")
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise ValueError(f"n_splits must be an integer >= 2; got {n_splits!r}")
    Cs = [float(c) for c in Cs]
    if not Cs or any(not np.isfinite(c) or c <= 0 for c in Cs):
        raise ValueError(f"Cs must be a non-empty list of positive numbers; got {Cs!r}")
    n_classes = int(y.max()) + 1
    counts = np.bincount(y, minlength=n_classes)
    missing = np.flatnonzero(counts == 0)
    if len(missing):
        raise ValueError(
            f"labels must contain every class 0..{n_classes - 1}; class(es) {missing.tolist()} have no row. "
            "Re-number the classes so that none is empty"
        )
    if n_classes < 2:
        raise ValueError("labels must contain at least 2 classes to train a classifier")
    small = np.flatnonzero(counts < n_splits)
    if len(small):
        raise ValueError(
            f"each class needs at least n_splits={n_splits} rows for stratified cross-validation; "
            f"class {int(small[0])} has {int(counts[small[0]])}. Lower n_splits or add examples"
        )
    folds = list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state).split(X, y))
    held_out = {c: np.zeros((len(y), n_classes)) for c in Cs}
    total = len(folds) * len(Cs) + 1
    done = 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*did not converge.*")
        for train, test in folds:
            for C in Cs:
                clf = _classifier(C, random_state).fit(X[train], y[train])
                held_out[C][test] = clf.predict_proba(X[test])
                done += 1
                if progress is not None:
                    progress(done, total)
        losses = {C: _log_loss(P, y) for C, P in held_out.items()}
        best = min(Cs, key=lambda c: (losses[c], c))
        logger.info("out-of-sample log loss by C: %s; chose C=%g", losses, best)
        classifier = _classifier(best, random_state).fit(X, y)
    if progress is not None:
        progress(total, total)
    classifier.cv_log_loss_ = losses
    return held_out[best], classifier
