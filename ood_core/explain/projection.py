"""A 2-D map of the feature rows (PCA, or t-SNE), subsampled for drawing."""
from __future__ import annotations

import functools
import threading
import time
from typing import Callable

import numpy as np

from .._progress import Progress, StepProgress, stage
from .._validation import check_int, check_matrix


def _pca(X: np.ndarray, random_state: int, step: StepProgress | None = None) -> np.ndarray:
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


# t-SNE progress. scikit-learn's TSNE has no callback, but its gradient descent calls one module-level
# objective function (``_kl_divergence_bh``, or ``_kl_divergence`` for method="exact") once per
# iteration. Both are wrapped once, transparently: the wrapper counts a call for the current thread when
# that thread is inside ``_tsne`` with a progress callback, and otherwise only forwards it. The count is
# the real iteration number (the coordinates are unchanged); the descent may stop before ``max_iter``
# when it converges, and the stage then jumps to done. Without those private names (another
# scikit-learn), the map is still drawn, with progress at the start and the end only.
_OBJECTIVES = ("_kl_divergence_bh", "_kl_divergence")
_iteration = threading.local()
_install_lock = threading.Lock()
TSNE_MAX_ITER = 1000  # scikit-learn's default number of iterations; progress counts them
_REPORT_EVERY_S = 0.25


def _counted(objective: Callable) -> Callable:
    @functools.wraps(objective)
    def counted(*args, **kwargs):
        tick = getattr(_iteration, "tick", None)
        if tick is not None:
            tick()
        return objective(*args, **kwargs)

    counted._ood_counted = True
    return counted


def _count_tsne_iterations() -> bool:
    """Wrap scikit-learn's t-SNE objectives once; False when this scikit-learn lacks them."""
    try:
        from sklearn.manifold import _t_sne
    except ImportError:
        return False
    with _install_lock:
        if not all(callable(getattr(_t_sne, name, None)) for name in _OBJECTIVES):
            return False
        for name in _OBJECTIVES:
            objective = getattr(_t_sne, name)
            if not getattr(objective, "_ood_counted", False):
                setattr(_t_sne, name, _counted(objective))
    return True


def _tsne(X: np.ndarray, random_state: int, step: StepProgress | None = None) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = X.shape[0]
    if n < 5:
        raise ValueError(f"features needs at least 5 rows for method='tsne'; got {n}")
    perplexity = float(min(30.0, (n - 1) / 3))
    tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, learning_rate="auto",
                random_state=random_state)  # max_iter: the default, TSNE_MAX_ITER
    if step is None or not _count_tsne_iterations():
        return tsne.fit_transform(X)
    done, last = 0, time.monotonic()

    def tick() -> None:  # once per gradient-descent iteration, reported at most 4 times a second
        nonlocal done, last
        done += 1
        now = time.monotonic()
        if now - last >= _REPORT_EVERY_S:
            last = now
            step(min(done, TSNE_MAX_ITER - 1), TSNE_MAX_ITER)

    _iteration.tick = tick
    try:
        return tsne.fit_transform(X)
    finally:
        _iteration.tick = None


# Projection methods: name -> function(features, random_state, step progress or None) -> (n, 2)
# coordinates. A method may report ``step(done, total)`` while it works (t-SNE: its iterations).
PROJECTIONS: dict[str, Callable[[np.ndarray, int, StepProgress | None], np.ndarray]] = {
    "pca": _pca, "tsne": _tsne}
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
    perplexity ``min(30, (m - 1) / 3)``; slow: 10-30 s for 1,800 rows on 2 busy cores). With
    ``max_points`` smaller than the number of rows, a subsample of ``max_points`` rows drawn
    without replacement by ``numpy.random.default_rng(random_state)`` is projected.
    ``normalize=True`` L2-normalises rows first (the cosine geometry the feature scorer uses
    when there are more than 3 features). Deterministic for a given ``random_state``.
    ``progress(stage, done, total)`` is called with ``stage=method``: PCA (0, 1) before and (1, 1)
    after; t-SNE (0, 1000) before, ``(iteration, 1000)`` at most every 0.25 s during its gradient
    descent (the iterations scikit-learn has run; the neighbour search before them, about a
    tenth of the time, shows as 0) and (1000, 1000) after, also when it stopped early.

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
    total = TSNE_MAX_ITER if method == "tsne" else 1
    if step is not None:
        step(0, total)
    coords = PROJECTIONS[method](X, random_state, step)
    if step is not None:
        step(total, total)
    return np.asarray(coords, dtype=np.float32), index_drawn
