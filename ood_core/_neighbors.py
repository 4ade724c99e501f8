"""Exact k-nearest-neighbour search: blocked matrix products plus a running top-k.

Memory stays bounded by ``block_size**2`` similarities (plus the ``n x k`` result), never
``n x n``. For the fit set the Gram matrix is symmetric, so each off-diagonal block is
computed once and serves both its rows and its columns, halving the matrix-product cost.
Runs on CUDA when available (``device="auto"``), on the CPU otherwise.
"""
from __future__ import annotations

import logging
import math
from typing import Callable

import numpy as np
import torch

from . import _neighbors_prefilter

logger = logging.getLogger(__name__)

METRICS = ("cosine", "euclidean")
# Default block edge: a block of similarities is block_size**2 floats (16 MiB in float32).
DEFAULT_BLOCK_SIZE = 2048
# Interleaved groups a block's rows or columns are cut into before the top-k (see _block_topk).
GROUPS = 16


def resolve_metric(metric: str, n_features: int) -> str:
    """``"auto"`` is cosine for more than 3 features and Euclidean otherwise (SCORING.md)."""
    if metric == "auto":
        return "cosine" if n_features > 3 else "euclidean"
    if metric not in METRICS:
        raise ValueError(f"metric must be 'auto', 'cosine' or 'euclidean'; got {metric!r}")
    return metric


def _power_of_two(magnitude: torch.Tensor) -> torch.Tensor:
    """An even power of two near each (finite, non-negative) ``magnitude``; 1 for zero.

    Dividing by it is exact (only the exponent changes), so results on ordinary data are
    bit-identical to unscaled ones, and square roots scale exactly too.
    """
    info = torch.finfo(magnitude.dtype)
    low, high = math.ceil(math.log2(info.tiny)), math.floor(math.log2(info.max)) - 1  # float32: -126, 126
    _, exponent = torch.frexp(magnitude)
    exponent = (exponent + exponent % 2).clamp(low + low % 2, high - high % 2)  # finite, never zero
    scale = torch.ldexp(torch.ones_like(magnitude), exponent)
    return torch.where(magnitude > 0, scale, torch.ones_like(magnitude))


def prepare(X: np.ndarray, metric: str, device: torch.device) -> torch.Tensor:
    """Move rows to ``device``; for cosine, L2-normalise them (a zero row stays zero).

    Each row is first divided by a power of two near its largest absolute value, so the
    norm neither overflows (values >= 1e155 in float64, 1e19 in float32) nor underflows.
    """
    X = np.ascontiguousarray(X)
    if not X.flags.writeable:  # a read-only memmap: torch wants memory it may write
        X = X.copy()
    T = torch.from_numpy(X).to(device)
    if metric == "cosine":
        T = T / _power_of_two(T.abs().amax(dim=1, keepdim=True))
        norms = torch.linalg.vector_norm(T, dim=1, keepdim=True)
        norms[norms == 0] = 1.0
        T = T / norms
    return T


def _closeness(A: torch.Tensor, B: torch.Tensor, metric: str) -> torch.Tensor:
    """Larger is closer: cosine similarity, or minus the Euclidean distance (computed exactly)."""
    if metric == "cosine":
        return A @ B.T
    # Distances are computed on the block scaled by a power of two and scaled back, so squaring
    # huge coordinates (>= 1e155 in float64) does not overflow to inf.
    c = _power_of_two(torch.maximum(A.abs().amax(), B.abs().amax())) if A.numel() and B.numel() else 1.0
    # Euclidean is only the default for <= 3 features: exact differences are cheap there,
    # and avoid the cancellation of |a|^2 + |b|^2 - 2ab. For wide data use the GEMM identity.
    mode = "donot_use_mm_for_euclid_dist" if A.shape[1] <= 8 else "use_mm_for_euclid_dist"
    return -torch.cdist(A / c, B / c, compute_mode=mode) * c


def _to_distance(closeness: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":
        return (1.0 - closeness).clamp_(0.0, 2.0)
    return -closeness


def _merge(best_v: torch.Tensor, best_i: torch.Tensor, cand_v: torch.Tensor, cand_i: torch.Tensor, k: int):
    """Keep the k largest of (best, candidates) per row."""
    v = torch.cat([best_v, cand_v], dim=1)
    i = torch.cat([best_i, cand_i], dim=1)
    top_v, pos = torch.topk(v, k, dim=1, largest=True, sorted=False)
    return top_v, torch.gather(i, 1, pos)


def _block_topk(S: torch.Tensor, col0: int, k: int):
    """Candidates for the k largest of each row of ``S``, with their column + ``col0``: the k
    largest themselves for a narrow block, else the members of the k best groups (``_merge``
    keeps the k best of them and the running best in one top-k).

    Wide blocks are first cut into ``GROUPS`` interleaved column groups (column ``j`` is in group
    ``j % (m / GROUPS)``, so a group maximum is an elementwise maximum of contiguous slabs, at memory
    speed). The k largest values of a row lie in its k groups with the largest maxima (a value of a
    group left out has k group maxima at least as large beside it, so it ties with the k-th largest),
    hence only k groups per row are searched: a few percent of the block instead of all of it."""
    n, m = S.shape
    kk = min(k, m)
    width = m // GROUPS
    if m % GROUPS or width <= 2 * kk:
        v, pos = torch.topk(S, kk, dim=1, largest=True, sorted=False)
        return v, pos + col0
    group_max = S.view(n, GROUPS, width).amax(dim=1)  # (n, width): group j holds columns j + width * t
    _, groups = torch.topk(group_max, kk, dim=1, largest=True, sorted=False)
    cols = (groups.unsqueeze(2) + _offsets(width, S.device)).reshape(n, kk * GROUPS)
    return torch.gather(S, 1, cols), cols + col0


def _block_topk_columns(S: torch.Tensor, row0: int, k: int):
    """``_block_topk(S.T, row0, k)`` without copying the transposed block: the group maxima over
    interleaved row groups are elementwise maxima of contiguous row slabs, and only the k best
    groups of each column are gathered."""
    n, m = S.shape
    kk = min(k, n)
    height = n // GROUPS
    if n % GROUPS or height <= 2 * kk:
        St = S.T.contiguous()
        v, pos = torch.topk(St, kk, dim=1, largest=True, sorted=False)
        return v, pos + row0
    group_max = S.view(GROUPS, height, m).amax(dim=0).T.contiguous()  # (m, height)
    _, groups = torch.topk(group_max, kk, dim=1, largest=True, sorted=False)
    rows = (groups.unsqueeze(2) + _offsets(height, S.device)).reshape(m, kk * GROUPS)
    return torch.gather(S.T, 1, rows), rows + row0


def _offsets(width: int, device) -> torch.Tensor:
    return torch.arange(GROUPS, device=device) * width


def knn(
    fit: torch.Tensor,
    k: int,
    metric: str,
    query: torch.Tensor | None = None,
    block_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    prefilter: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest fit rows of each query row (``query=None``: the fit rows, self excluded).

    ``fit`` and ``query`` come from :func:`prepare`. Returns ``(distances, indices)`` as
    NumPy arrays of shape ``(n_query, k)``, each row sorted by distance, ties by index.
    When several rows tie at the k-th distance, which of them is returned is unspecified
    (the distances, and so the scores, are the same either way).

    ``prefilter``: find cosine candidates with bfloat16 products and re-rank them exactly
    (:mod:`._neighbors_prefilter`; the same neighbours, about 3x faster where bfloat16 is fast).
    None (the default) uses it on CPUs where it pays, True wherever it can run, False never.
    """
    bs = int(block_size or DEFAULT_BLOCK_SIZE)
    if bs < 1:
        raise ValueError(f"block_size must be a positive integer; got {block_size}")
    self_query = query is None
    Q = fit if self_query else query
    if prefilter is None:
        prefilter = _neighbors_prefilter.applies(fit, query, k, metric)
    elif prefilter:  # wherever it can run
        prefilter = (metric == "cosine" and fit.device.type == "cpu" and 0 < k <= fit.shape[0] - self_query
                     and _neighbors_prefilter.bfloat16_accumulates_in_float32())
    found = _neighbors_prefilter.knn_prefiltered(fit, k, query, bs, progress) if prefilter else None
    best_v, best_i = found if found is not None else _plain_search(fit, Q, k, metric, self_query, bs, progress)
    return _sorted_neighbors(best_v, best_i, metric)


def _plain_search(fit, Q, k, metric, self_query, bs, progress):
    """The k largest closeness values of each row of ``Q`` and their fit rows, block by block."""
    n_fit, n_q = fit.shape[0], Q.shape[0]
    dev, dtype = fit.device, fit.dtype
    best_v = torch.full((n_q, k), -torch.inf, dtype=dtype, device=dev)
    best_i = torch.full((n_q, k), -1, dtype=torch.int64, device=dev)
    starts_q = list(range(0, n_q, bs))
    starts_f = list(range(0, n_fit, bs))
    total = len(starts_q) * (len(starts_q) + 1) // 2 if self_query else len(starts_q) * len(starts_f)
    done = 0
    with torch.inference_mode():
        for qi, q0 in enumerate(starts_q):
            q1 = min(q0 + bs, n_q)
            # Symmetric fit set: only blocks on or right of the diagonal are computed.
            cols = starts_f[qi:] if self_query else starts_f
            for f0 in cols:
                f1 = min(f0 + bs, n_fit)
                S = _closeness(Q[q0:q1], fit[f0:f1], metric)
                if self_query and f0 == q0:
                    S.fill_diagonal_(-torch.inf)  # a row is never its own neighbour
                v, i = _block_topk(S, f0, k)
                best_v[q0:q1], best_i[q0:q1] = _merge(best_v[q0:q1], best_i[q0:q1], v, i, k)
                if self_query and f0 != q0:
                    # The same block, read by columns, holds these rows' closeness to rows q0:q1.
                    v, i = _block_topk_columns(S, q0, k)
                    best_v[f0:f1], best_i[f0:f1] = _merge(best_v[f0:f1], best_i[f0:f1], v, i, k)
                done += 1
                if progress is not None:
                    progress(done, total)
    return best_v, best_i


def _sorted_neighbors(best_v: torch.Tensor, best_i: torch.Tensor, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices as NumPy arrays, each row sorted by distance, ties by index."""
    dist = _to_distance(best_v, metric).cpu().numpy()
    idx = best_i.cpu().numpy()
    order = np.lexsort((idx, dist), axis=1) if dist.size else np.zeros_like(idx)
    dist = np.take_along_axis(dist, order, axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    return dist, idx
