"""The two outlier scorers of SCORING.md. Both return scores in [0, 1]; lower = more atypical."""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from ._device import resolve_device
from ._progress import StepProgress
from ._index import AUTO_APPROXIMATE_ROWS, INDEX_CHOICES, IndexParams, faiss_available, resolve_index
from ._validation import (check_fitted, check_int, check_labels, check_matrix, check_number, check_pred_probs,
                          check_same_length, check_shape)

# Distances below these count as zero and score exactly 1 (SCORING.md section 1).
ZERO_DISTANCE_TOL = {"cosine": 100 * 1.1e-16, "euclidean": float(np.sqrt(100 * 2.2e-16))}
MIN_SCALE = 1e-6
DEFAULT_K = 10



def _search():
    """The torch neighbour search (``_neighbors``), imported on first use so that importing the
    scorers (and the CLI's ``--help``) does not load torch."""
    from . import _neighbors

    return _neighbors

def _override(params, overrides: dict):
    """``params`` with the fields named in ``overrides`` replaced (each a positive integer)."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(params)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"index_params has unknown key(s) {unknown}; known: {sorted(fields)}")
    return dataclasses.replace(params, **{key: check_int(value, f"index_params[{key!r}]", 1)
                                          for key, value in overrides.items()})


class FeatureScorer:
    """K-nearest-neighbour outlier score on feature vectors (Kuan & Mueller, 2022).

    Scores lie in [0, 1]; lower means more atypical. ``score = exp(-t * d / s)`` where ``d`` is
    the mean distance to the ``k`` nearest fit rows and ``s`` the median of ``d`` over the fit
    set (each fit row's own entry excluded), learned by :meth:`fit`.

    Parameters
    ----------
    k : number of neighbours; ``None`` means ``min(10, n_fit - 1)``.
    t : temperature of the exponential transform (> 0).
    metric : ``"auto"`` (cosine when more than 3 features, else Euclidean), ``"cosine"`` or
        ``"euclidean"``.
    device : ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``; where the exact search runs.
    block_size : rows per block of the exact search; memory is ``block_size**2`` floats.
    index : ``"exact"``, ``"approximate"`` (a faiss index, cosine only; needs the ``scale`` extra)
        or ``"auto"`` (approximate above ``AUTO_APPROXIMATE_ROWS`` fit rows when faiss is installed).
    index_params : overrides of the approximate index's settings (``nlist``, ``nprobe``, ``pq_m``,
        ``k_factor``, ``train_rows``; see :class:`~ood_core._index.IndexParams`).

    ``X`` may be an array, a ``np.memmap`` or :class:`~ood_core.shards.FeatureShards`; the
    approximate search reads it a block at a time, so the fit rows are held in memory once (in
    the index).

    Attributes (after ``fit``): ``k_``, ``metric_``, ``scale_``, ``fit_scores_``,
    ``fit_distances_`` (mean kNN distance per fit row), ``n_features_in_``, ``n_fit_``,
    ``index_`` (how neighbours were searched: ``{"kind": "exact"}`` or the approximate index's
    settings) and ``search_`` (the same in words, for display).
    """

    def __init__(self, k: int | None = None, t: float = 1.0, metric: str = "auto",
                 device: str = "auto", block_size: int | None = None, index: str = "auto",
                 index_params: dict | None = None):
        self.k = k
        self.t = t
        self.metric = metric
        self.device = device
        self.block_size = block_size
        self.index = index
        self.index_params = index_params

    def _check_params(self, n_fit: int) -> int:
        if not check_number(self.t, "t") > 0:
            raise ValueError(f"t must be a positive number; got {self.t!r}")
        if n_fit < 2:
            raise ValueError(f"X needs at least 2 rows to fit a nearest-neighbour scorer; got {n_fit}")
        if self.k is None:
            return min(DEFAULT_K, n_fit - 1)
        try:
            k = check_int(self.k, "k", 1)
        except ValueError:
            raise ValueError(f"k must be a positive integer or None; got {self.k!r}") from None
        if k >= n_fit:
            raise ValueError(
                f"k={k} must be smaller than the number of fit rows ({n_fit}): each row's "
                f"own entry is excluded, so at most {n_fit - 1} neighbours exist"
            )
        return k

    def fit(self, X, progress: StepProgress | None = None) -> "FeatureScorer":
        """Learn the fit set, its neighbour distances and the scale ``scale_``."""
        n, d = check_shape(X, "X")
        self.k_ = self._check_params(n)
        self.metric_ = _search().resolve_metric(self.metric, d)
        kind = resolve_index(self.index, n, self.metric_)
        self.n_features_in_ = d
        self.n_fit_ = n
        if kind == "approximate":
            from ._index import ApproximateIndex, IndexParams

            params = IndexParams.for_size(n, d)
            if self.index_params:
                params = _override(params, self.index_params)
            self.device_ = resolve_device("cpu")
            self._fit_dtype = np.dtype(np.float32)
            self._fit_rows = None
            self._ann = ApproximateIndex(X, params, progress=progress)
            dist, idx = self._ann.search(X, self.k_, exclude_self=True, progress=progress,
                                         progress_offset=n, progress_total=2 * n)
            self.index_ = params.as_dict()
            self.search_ = params.describe()
        else:
            X = check_matrix(X, "X")
            self.device_ = resolve_device(self.device)
            self._fit_dtype = X.dtype
            self._ann = None
            self._fit_rows = _search().prepare(X, self.metric_, self.device_)
            dist, idx = _search().knn(self._fit_rows, self.k_, self.metric_, block_size=self.block_size,
                                      progress=progress)
            self.index_ = {"kind": "exact"}
            self.search_ = "exact"
        self._fit_neighbors = (dist, idx)
        self.fit_distances_ = dist.astype(np.float64).mean(axis=1)
        self.scale_ = float(max(np.median(self.fit_distances_), MIN_SCALE))
        self.fit_scores_ = self._to_scores(self.fit_distances_)
        return self

    def _to_scores(self, mean_distances: np.ndarray) -> np.ndarray:
        scores = np.exp(-float(self.t) * mean_distances / self.scale_)
        scores[mean_distances < ZERO_DISTANCE_TOL[self.metric_]] = 1.0
        return scores

    def _check_query(self, X):
        check_fitted(self, "fit_scores_")
        _, d = check_shape(X, "X")
        if d != self.n_features_in_:
            raise ValueError(
                f"X has {d} features but this FeatureScorer was fitted on "
                f"{self.n_features_in_}; score features from the same embedder"
            )
        return X if self._ann is not None else check_matrix(X, "X")

    def kneighbors(self, X=None, k: int | None = None,
                   progress: StepProgress | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Distances and indices of the nearest fit rows, each row sorted by distance.

        ``X=None`` means the fit set itself, each row's own entry excluded (answered from what
        ``fit`` computed when ``k`` is ``k_``).
        """
        check_fitted(self, "fit_scores_")
        limit = self.n_fit_ - 1 if X is None else self.n_fit_
        k = self.k_ if k is None else check_int(k, "k", 1, limit)
        if X is None:
            if k <= self.k_:
                dist, idx = self._fit_neighbors
                return dist[:, :k].copy(), idx[:, :k].copy()
            if self._ann is not None:
                raise ValueError(f"the fit set's own neighbours beyond k_={self.k_} are not kept by the "
                                 "approximate index; pass the fit rows as X, or fit with a larger k")
            return _search().knn(self._fit_rows, k, self.metric_, block_size=self.block_size, progress=progress)
        X = self._check_query(X)
        if self._ann is not None:
            return self._ann.search(X, k, progress=progress)
        # Queries are searched in the fit set's precision (float32 stays float32).
        Q = _search().prepare(X.astype(self._fit_dtype, copy=False), self.metric_, self.device_)
        return _search().knn(self._fit_rows, k, self.metric_, query=Q, block_size=self.block_size, progress=progress)

    def mean_distances(self, X, progress: StepProgress | None = None) -> np.ndarray:
        """Mean distance of each row of ``X`` to its ``k_`` nearest fit rows."""
        check_fitted(self, "fit_scores_")
        dist, _ = self.kneighbors(X, self.k_, progress=progress)
        return dist.astype(np.float64).mean(axis=1)

    def score(self, X, progress: StepProgress | None = None) -> np.ndarray:
        """Scores of new rows against the fit set (nothing excluded), in [0, 1]."""
        return self._to_scores(self.mean_distances(X, progress=progress))

    def fit_score(self, X, progress: StepProgress | None = None) -> np.ndarray:
        """Fit on ``X`` and return its scores (each row's own entry excluded)."""
        return self.fit(X, progress=progress).fit_scores_.copy()

    def score_to_distance(self, score: float) -> float:
        """The mean neighbour distance that gives ``score`` (inverse of the transform)."""
        check_fitted(self, "fit_scores_")
        if not 0 < score <= 1:
            raise ValueError(f"score must lie in (0, 1]; got {score!r}")
        return float(-np.log(score) * self.scale_ / float(self.t))


# Per-method score of adjusted probabilities q (rows summing to 1).
def _entropy_score(q: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    return 1.0 - (-plogp.sum(axis=1)) / np.log(q.shape[1])


def _least_confidence_score(q: np.ndarray) -> np.ndarray:
    return q.max(axis=1)


PRED_PROB_METHODS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "entropy": _entropy_score,
    "least_confidence": _least_confidence_score,
}
# The prediction-score methods, in display order (for validation, the CLI and the UI).
PRED_SCORE_METHODS: tuple[str, ...] = tuple(PRED_PROB_METHODS)


def confident_thresholds(pred_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class mean of ``pred_probs[:, j]`` over rows labelled ``j`` (2 for an absent class),
    clipped below at 2e-6 (Northcutt et al., 2021)."""
    n_classes = pred_probs.shape[1]
    sums = np.bincount(labels, weights=pred_probs[np.arange(len(labels)), labels], minlength=n_classes)
    counts = np.bincount(labels, minlength=n_classes)
    thresholds = np.full(n_classes, 2.0)
    present = counts > 0
    thresholds[present] = sums[present] / counts[present]
    return np.clip(thresholds, 2e-6, None)


class PredProbScorer:
    """Outlier score from predicted class probabilities (entropy or least confidence).

    Scores lie in [0, 1]; lower means more atypical. With ``adjust=True`` (default) the
    per-class confident thresholds learned by :meth:`fit` are subtracted first, which needs
    labels; with ``adjust=False``, ``fit`` only checks its input and labels are optional.

    Parameters
    ----------
    method : ``"entropy"`` (1 - normalised entropy) or ``"least_confidence"`` (max probability).
    adjust : subtract confident thresholds before scoring.

    Attributes (after ``fit``): ``thresholds_`` (per class, None when ``adjust=False``),
    ``fit_scores_``, ``n_classes_``.
    """

    def __init__(self, method: str = "entropy", adjust: bool = True):
        self.method = method
        self.adjust = adjust

    def _check_params(self) -> None:
        if self.method not in PRED_SCORE_METHODS:
            raise ValueError(f"method must be one of {list(PRED_SCORE_METHODS)}; got {self.method!r}")
        if not isinstance(self.adjust, (bool, np.bool_)):
            raise TypeError(f"adjust must be True or False; got {self.adjust!r}")

    def fit(self, pred_probs, labels=None) -> "PredProbScorer":
        """Learn the per-class confident thresholds from out-of-sample ``pred_probs`` and labels."""
        self._check_params()
        P = check_pred_probs(pred_probs)
        self.n_classes_ = P.shape[1]
        if self.adjust:
            if labels is None:
                raise ValueError("labels are required when adjust=True; pass them or set adjust=False")
            y = check_labels(labels, self.n_classes_)
            check_same_length(P, "pred_probs", y, "labels")
            missing = np.setdiff1d(np.arange(self.n_classes_), y)
            if len(missing):
                warnings.warn(
                    f"labels has no row of class(es) {missing.tolist()} out of {self.n_classes_}; "
                    "their confident threshold is set to 2 as SCORING.md prescribes",
                    stacklevel=2,
                )
            self.thresholds_ = confident_thresholds(P, y)
        else:
            if labels is not None:
                y = check_labels(labels, self.n_classes_)
                check_same_length(P, "pred_probs", y, "labels")
            self.thresholds_ = None
        self.fit_scores_ = self._score(P)
        return self

    def _score(self, P: np.ndarray) -> np.ndarray:
        if self.thresholds_ is not None:
            q = P - self.thresholds_
            q += self.thresholds_.max()
            q /= q.sum(axis=1, keepdims=True)
        else:
            q = P
        return PRED_PROB_METHODS[self.method](q)

    def score(self, pred_probs) -> np.ndarray:
        """Scores of new rows, using the thresholds learned by ``fit``."""
        check_fitted(self, "fit_scores_")
        P = check_pred_probs(pred_probs)
        if P.shape[1] != self.n_classes_:
            raise ValueError(
                f"pred_probs has {P.shape[1]} class columns but this PredProbScorer was fitted on "
                f"{self.n_classes_}"
            )
        return self._score(P)

    def fit_score(self, pred_probs, labels=None) -> np.ndarray:
        """Fit and return the fit set's scores."""
        return self.fit(pred_probs, labels).fit_scores_.copy()


# The index settings are public here, beside the scorer whose `index=` they describe.
__all__ = ["AUTO_APPROXIMATE_ROWS", "DEFAULT_K", "INDEX_CHOICES", "PRED_SCORE_METHODS", "FeatureScorer", "IndexParams",
           "PredProbScorer", "confident_thresholds", "faiss_available"]
