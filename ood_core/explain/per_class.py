"""Class-conditional thresholds: one percentile threshold per fit class, and the counts they flag."""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from .._validation import check_int, check_labels, check_same_length, check_vector
from ..thresholds import percentile_threshold


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
    min_rows = check_int(min_rows, "min_rows", 1)
    if n_classes is None:
        n_classes = int(y.max()) + 1
    else:
        n_classes = check_int(n_classes, "n_classes", 1)
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
