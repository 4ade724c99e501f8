"""Approximate nearest-neighbour search (faiss) for the feature score on large fit sets.

The index is an inverted file over a coarse k-means (``IVF``), each list scanned with 4-bit
product-quantisation codes by SIMD ("fast scan"), and the best ``k_factor * k`` candidates
re-ranked by their exact inner product with the stored rows (``RFlat``). Rows are L2-normalised
first, so inner product = cosine similarity and distances are ``1 - similarity``, as the exact
search gives. Why this index (measured in ``bench/scale.py``, README "Scale"): a flat IVF scans
lists at ~9 GFLOP/s here against ~130 for the exact search's GEMM, so at 1M rows it is no faster
than exact search on these cores; fast-scan codes make the scan ~10x cheaper and the re-ranking
keeps the distances exact; HNSW takes too long to build at 1280 dimensions on 2 cores.

The index holds the only in-memory copy of the fit rows (float32); rows are read from the source
(an array, a memmap or :class:`~ood_core.shards.FeatureShards`) a block at a time.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from .shards import DEFAULT_BLOCK_ROWS, blocks

logger = logging.getLogger(__name__)

INDEX_CHOICES = ("auto", "exact", "approximate")
# "auto" searches exactly up to this many fit rows and approximately above (bench/scale.py: at
# 100k x 1280 the exact fit + score takes about 2 minutes here, the approximate one about 15 s).
AUTO_APPROXIMATE_ROWS = 100_000
_INSTALL = "pip install 'ood-explorer[scale]'  (or: pip install faiss-cpu)"


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError:
        raise ImportError(f"index='approximate' needs faiss, which is not installed: {_INSTALL}") from None
    return faiss


def resolve_index(index: str, n_fit: int, metric: str) -> str:
    """``"exact"`` or ``"approximate"`` for ``index`` (one of :data:`INDEX_CHOICES`)."""
    if index not in INDEX_CHOICES:
        raise ValueError(f"index must be one of {list(INDEX_CHOICES)}; got {index!r}")
    if index == "approximate":
        if metric != "cosine":
            raise ValueError("index='approximate' searches cosine distances (features with more than 3 "
                             "columns); with 3 or fewer use index='exact'")
        _faiss()
        return "approximate"
    if index == "exact" or metric != "cosine" or n_fit <= AUTO_APPROXIMATE_ROWS:
        return "exact"
    if not faiss_available():
        logger.warning("%d fit rows: an approximate index would be much faster, but faiss is not installed "
                       "(%s); searching exactly", n_fit, _INSTALL)
        return "exact"
    return "approximate"


@dataclass(frozen=True)
class IndexParams:
    """Settings of the approximate index (see the module docstring)."""

    nlist: int  # coarse lists (k-means centroids)
    nprobe: int  # lists scanned per query
    pq_m: int  # product-quantiser sub-vectors (4 bits each)
    k_factor: int  # candidates re-ranked exactly = k_factor * k
    train_rows: int  # rows the k-means and the quantiser are trained on (a seeded sample)

    @classmethod
    def for_size(cls, n_fit: int, dim: int) -> "IndexParams":
        """Defaults measured on clustered data (bench/scale.py): ~2 sqrt(N) lists (a power of two, at
        least 30 training rows each), 1/32 of them probed (at least 32), codes of 8 dimensions for
        wide features (1 for 64 columns or fewer, 2 up to 256, 4 up to 512), 24 x k candidates
        re-ranked exactly."""
        nlist = 2 ** round(math.log2(max(2 * math.sqrt(n_fit), 1)))
        nlist = int(max(1, min(nlist, 8192, n_fit // 30 or 1)))
        nprobe = int(min(nlist, max(32, nlist // 32)))
        per_code = 1 if dim <= 64 else 2 if dim <= 256 else 4 if dim <= 512 else 8
        pq_m = max(m for m in range(1, dim // per_code + 1) if dim % m == 0)
        train_rows = int(min(n_fit, max(30 * nlist, 10_000), 100_000))
        return cls(nlist=nlist, nprobe=nprobe, pq_m=pq_m, k_factor=24, train_rows=train_rows)

    @property
    def factory(self) -> str:
        return f"IVF{self.nlist},PQ{self.pq_m}x4fs,RFlat"

    def details(self) -> str:
        return (f"faiss {self.factory}, nprobe={self.nprobe}, k_factor={self.k_factor}; "
                f"trained on {self.train_rows:,} rows")

    def describe(self) -> str:
        return f"approximate ({self.details()})"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": "approximate", "library": f"faiss {_faiss().__version__}", "factory": self.factory,
                **asdict(self), "details": self.details()}


def _normalised(block: np.ndarray, start: int = 0, name: str = "X") -> np.ndarray:
    """Rows scaled to unit length as the exact search does (a zero row stays zero), float32;
    ValueError naming the first row (``start`` + its place in the block) that is not finite."""
    import torch

    from ._neighbors import prepare

    block = np.asarray(block)
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float64)
    finite = np.isfinite(block).all(axis=1)
    if not finite.all():
        row = start + int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name} row {row} holds a non-finite value (NaN or inf); drop or fix that row")
    return prepare(block, "cosine", torch.device("cpu")).to(torch.float32).numpy()


class ApproximateIndex:
    """A faiss index over the fit rows; :meth:`search` answers k-nearest-neighbour queries."""

    def __init__(self, fit, params: IndexParams | None = None, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None,
                 block_rows: int = DEFAULT_BLOCK_ROWS):
        faiss = _faiss()
        n, dim = fit.shape
        self.params = params or IndexParams.for_size(n, dim)
        self.n_fit, self.block_rows = n, block_rows
        self.timings: dict[str, float] = {}  # seconds per phase: train, add, search (summed over calls)
        clock = time.perf_counter()
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, self.params.train_rows, replace=False))
        train = _normalised(np.asarray(fit[sample]))  # an array, a memmap or FeatureShards (a copy of those rows)
        index = faiss.index_factory(dim, self.params.factory, faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter = 10
        ivf.cp.seed = seed
        # faiss warns on stderr below 39 training rows per centroid; the sample has 30 per list by
        # design (measured: enough), and a small fit set trains its 16-centroid PQ codebooks on fewer
        ivf.cp.min_points_per_centroid = 5
        faiss.downcast_index(ivf).pq.cp.min_points_per_centroid = 1
        index.train(train)
        del train
        self.timings["train"] = time.perf_counter() - clock
        clock = time.perf_counter()
        done = 0
        for block in blocks(fit, block_rows):
            index.add(_normalised(block, done))
            done += len(block)
            if progress is not None:
                progress(done, 2 * n)  # adding is the first half of fitting, the self-search the second
        self.timings["add"] = time.perf_counter() - clock
        ivf.nprobe = self.params.nprobe
        faiss.downcast_index(index).k_factor = float(self.params.k_factor)
        self._index = index

    def search(self, X, k: int, exclude_self: bool = False,
               progress: Callable[[int, int], None] | None = None,
               progress_offset: int = 0, progress_total: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Distances (``1 - cosine similarity``) and fit indices of the ``k`` nearest fit rows of each
        row of ``X``, sorted by distance then index. ``exclude_self``: ``X`` is the fit set, and
        each row's own entry is left out by index (an exact duplicate elsewhere still counts)."""
        clock = time.perf_counter()
        n = X.shape[0]
        want = k + 1 if exclude_self else k
        dist = np.empty((n, k), dtype=np.float32)
        idx = np.empty((n, k), dtype=np.int64)
        start = 0
        for block in blocks(X, self.block_rows):
            Q = _normalised(block, start)
            sim, nb = self._index.search(Q, want)
            missing = (nb < 0).any(axis=1)
            if missing.any():  # too few rows in the probed lists: probe every list for these rows
                sim[missing], nb[missing] = self._search_all(Q[missing], want)
            if exclude_self:
                own = nb == np.arange(start, start + len(block))[:, None]
                keep = np.argsort(own, axis=1, kind="stable")[:, :k]  # own entry (or the k+1-th) last
                sim, nb = np.take_along_axis(sim, keep, 1), np.take_along_axis(nb, keep, 1)
            d = np.clip(1.0 - sim, 0.0, 2.0)
            order = np.lexsort((nb, d), axis=1)
            dist[start:start + len(block)] = np.take_along_axis(d, order, 1)
            idx[start:start + len(block)] = np.take_along_axis(nb, order, 1)
            start += len(block)
            if progress is not None:
                progress(progress_offset + start, progress_total or n)
        self.timings["search"] = self.timings.get("search", 0.0) + time.perf_counter() - clock
        return dist, idx

    def _search_all(self, Q: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
        ivf = _faiss().extract_index_ivf(self._index)
        ivf.nprobe = ivf.nlist
        try:
            return self._index.search(Q, want)
        finally:
            ivf.nprobe = self.params.nprobe
