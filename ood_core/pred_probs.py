"""Out-of-sample predicted probabilities for the fit set, from a classifier on its features."""
from __future__ import annotations

import logging
import warnings
from typing import Callable, Sequence

import numpy as np

from ._progress import StepProgress
from ._validation import check_int, check_labels, check_matrix, check_same_length

logger = logging.getLogger(__name__)

# Inverse regularisation strengths tried by cross-validation. On 1280-d image embeddings strong
# regularisation is what works: on the CIFAR-10 demo split C=1e-3 gives a prediction-score AUROC
# of 0.83, C=1e-2 0.74 and C=1e-1 0.61 (README, "How the classifier is chosen").
DEFAULT_CS: tuple[float, ...] = (1e-4, 1e-3, 1e-2)


def _log_loss(P: np.ndarray, y: np.ndarray) -> float:
    """Held-out log loss (lower is better)."""
    return float(-np.mean(np.log(np.clip(P[np.arange(len(y)), y], 1e-15, None))))


def _error_auroc(P: np.ndarray, y: np.ndarray) -> float:
    """How well the prediction score of held-out rows ranks the classifier's own mistakes
    first (AUROC, higher is better); 0.5 when it makes none or only mistakes."""
    from sklearn.metrics import roc_auc_score

    from .scorers import PredProbScorer

    wrong = P.argmax(axis=1) != y
    if wrong.all() or not wrong.any():
        return 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class absent from y only moves its threshold to 2
        scores = PredProbScorer().fit(P, y).fit_scores_
    return float(roc_auc_score(wrong, -scores))


# Criterion name -> (function of held-out pred_probs and labels, True when larger is better).
SELECTION_CRITERIA: dict[str, tuple[Callable[[np.ndarray, np.ndarray], float], bool]] = {
    "error_auroc": (_error_auroc, True),
    "log_loss": (_log_loss, False),
}


def _fit_predict(X, y, train, test, C: float, random_state: int):
    """One cross-validation fit, on one BLAS thread: the products here are small, and two
    OpenBLAS threads make them several times slower on a 2-core machine."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*did not converge.*")
        clf = LogisticRegression(C=C, max_iter=2000, tol=1e-4, random_state=random_state)
        clf.fit(X if train is None else X[train], y if train is None else y[train])
        return clf if test is None else clf.predict_proba(X[test])


def out_of_sample_pred_probs(
    features,
    labels,
    *,
    n_splits: int = 5,
    Cs: Sequence[float] = DEFAULT_CS,
    select: str = "error_auroc",
    random_state: int = 0,
    n_jobs: int | None = None,
    progress: StepProgress | None = None,
):
    """Predicted class probabilities for each fit row from a model that never saw that row.

    A logistic regression is cross-validated by stratified ``n_splits``-fold over the inverse
    regularisation strengths ``Cs``; the held-out probabilities of each ``C`` are judged by
    ``select``:

    - ``"error_auroc"`` (default): how well the prediction score of the held-out rows ranks
      the classifier's own mistakes first. Uncertainty that flags in-distribution mistakes is
      what an outlier score needs, and it uses the fit labels only.
    - ``"log_loss"``: held-out log loss. It favours the best classifier, which on image
      embeddings is too confident to flag outliers (CIFAR-10 demo: AUROC 0.74 against 0.83).

    The winner's held-out probabilities are the fit set's ``pred_probs``; a classifier with that
    ``C`` is refitted on the whole fit set to score new data (``classifier.predict_proba``;
    ``classifier.C`` is the chosen value, ``classifier.cv_scores_`` the criterion per ``C``).

    ``progress(done, total)`` is called with ``total = len(Cs) * n_splits + 1``: (0, total) at the
    start, after each cross-validation fit, and (total, total) after the final refit.

    Returns ``(fit_pred_probs, classifier)``; columns follow classes ``0..n_classes-1``.
    """
    from joblib import Parallel, delayed
    from sklearn.model_selection import StratifiedKFold

    X = check_matrix(features, "features")
    y = check_labels(labels)
    check_same_length(X, "features", y, "labels")
    n_splits = check_int(n_splits, "n_splits", 2)
    Cs = [float(c) for c in Cs]
    if not Cs or any(not np.isfinite(c) or c <= 0 for c in Cs):
        raise ValueError(f"Cs must be a non-empty list of positive numbers; got {Cs!r}")
    if select not in SELECTION_CRITERIA:
        raise ValueError(f"select must be one of {sorted(SELECTION_CRITERIA)}; got {select!r}")
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
    # Weakest regularisation first: its fits take the most iterations (C=1e-2 about 5x C=1e-4), and
    # starting the longest tasks first leaves no worker idle at the end (same fits, same results).
    tasks = [(C, train, test) for C in sorted(Cs, reverse=True) for train, test in folds]
    total = len(tasks) + 1
    # Small problems are not worth the worker processes' start-up.
    jobs = n_jobs if n_jobs is not None else (1 if X.size < 2_000_000 else 2)
    held_out = {C: np.zeros((len(y), n_classes)) for C in Cs}
    if progress is not None:  # the stage starts now: worker start-up can take seconds before the first fit ends
        progress(0, total)
    results = Parallel(n_jobs=jobs, return_as="generator")(
        delayed(_fit_predict)(X, y, train, test, C, random_state) for C, train, test in tasks
    )
    for done, ((C, _, test), P) in enumerate(zip(tasks, results), start=1):
        held_out[C][test] = P
        if progress is not None:
            progress(done, total)
    criterion, larger_is_better = SELECTION_CRITERIA[select]
    cv_scores = {C: criterion(P, y) for C, P in held_out.items()}
    sign = -1.0 if larger_is_better else 1.0
    best = min(Cs, key=lambda c: (sign * cv_scores[c], c))  # ties: the stronger regularisation
    logger.info("cross-validated %s by C: %s; chose C=%g", select, cv_scores, best)
    classifier = _fit_predict(X, y, None, None, best, random_state)
    if progress is not None:
        progress(total, total)
    classifier.cv_scores_ = cv_scores
    classifier.cv_select_ = select
    return held_out[best], classifier
