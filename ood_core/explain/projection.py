"""A 2-D map of the feature rows (PCA, or t-SNE), subsampled for drawing."""
from __future__ import annotations

from typing import Callable

import numpy as np

from .._progress import Progress, stage
from .._validation import check_int, check_matrix


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
    random_state = check_int(random_state, "random_state", 0)
    n = X.shape[0]
    if max_points is not None:
        max_points = check_int(max_points, "max_points", 2)
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
    step = stage(progress, method)
    if step is not None:
        step(0, 1)
    coords = PROJECTIONS[method](X, random_state)
    if step is not None:
        step(1, 1)
    return np.asarray(coords, dtype=np.float32), index_drawn
