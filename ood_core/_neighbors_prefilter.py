"""Exact cosine k-nearest-neighbour search on CPUs whose bfloat16 matrix products are fast.

Each block of similarities is first computed in bfloat16 (about 3x the float32 rate where the CPU
has bfloat16 instructions); only the entries that can still be among a row's k nearest are then
computed in the input precision, so the neighbours are the plain search's.

Why nothing is missed: a bfloat16 similarity ``s~`` differs from the float32 one ``s`` by at most
``eps = error_bound(d)``. Each block's rows (and, for the symmetric fit set, its columns) are cut
into interleaved groups; a row keeps the k largest group maxima it has met, each the ``s~`` of a
distinct entry. If the k-th of them is ``m``, k entries have ``s >= m - eps``, so the row's k-th
nearest has ``s >= m - eps`` and each of its k nearest has ``s~ >= m - 2 eps`` (for rows with no
negative entry, also ``s~ >= m * relative_floor(d)``, usually the higher): entries below that
floor are dropped (only groups whose maximum reaches it are looked into), the rest kept as
candidates. ``m`` only grows, so the final floor prunes the candidates again, and the survivors are
compared in the input precision. A block where many entries pass (concentrated or duplicated rows) is
computed exactly and keeps only each row's k best; if most blocks do, the search gives way to the
plain one (:func:`knn_prefiltered` returns None).
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Callable

import torch

logger = logging.getLogger(__name__)

UNIT_ROUNDOFF = 2.0 ** -8  # bfloat16: 8 significant bits, rounded to nearest
# Interleaved groups a block's columns are cut into (the plain search's GROUPS).
GROUPS = 16
# Searches smaller than this many similarities are quick either way and use the plain path.
MIN_WORK = 2 ** 24
# Candidates are computed exactly in chunks of this many (row, fit row) pairs.
RERANK_CHUNK = 2048
# A block where more than this share of entries are candidates is computed whole in float32 (a
# candidate's exact product, two gathered rows, costs as much as about 60 entries of a float32 block).
DENSE_SHARE = 1 / 64
# When more than this share of the blocks searched so far were computed whole, the plain search
# takes over (the rest would cost a bfloat16 and a float32 product each).
GIVE_WAY = 0.5
# Candidates kept before they are pruned with the thresholds of the moment (12 bytes each).
CANDIDATE_BUDGET = 16 * 2 ** 20


def error_bound(d: int) -> float:
    """Largest ``|s~ - s|`` for rows of unit norm and ``d`` features, ``s~`` the bfloat16 product
    and ``s`` the float32 one: each factor rounded to bfloat16 (``(2u + u^2) * sum|x_i y_i|``, at
    most ``2u + u^2`` by Cauchy-Schwarz), the ``d`` exact products summed in float32
    (``gamma_d * (1 + u)^2``), the sum rounded to bfloat16 (``u`` times its size), and the float32
    product's own summation (``gamma_d``); with 1% and 1e-6 to spare for rows whose norm is 1 only
    to float32 rounding."""
    u, f32 = UNIT_ROUNDOFF, 2.0 ** -24
    gamma = d * f32 / (1 - d * f32)
    inner = (2 * u + u * u) + gamma * (1 + u) ** 2
    return 1.01 * (inner + u * (1 + inner) + gamma) + 1e-6


def relative_floor(d: int) -> float:
    """For rows with no negative entry (every product term >= 0): ``s~`` lies within
    ``s * [(1-u)^3 (1-g), (1+u)^3 (1+g)]`` of the true product ``s`` (each factor and the sum rounded
    to bfloat16, ``g = gamma_d`` the float32 sum's share) and the float32 product within
    ``s * [1-g, 1+g]``; so ``s~ / s_float32`` lies in ``[L, H]`` and a row's k nearest have
    ``s~ >= m * L / H`` (``m`` as in the module docstring). Returns ``L / H`` (about 0.976 for
    1280 features: a floor 2.4% below ``m``, against ``m - 0.024`` from :func:`error_bound`)."""
    u, f32 = UNIT_ROUNDOFF, 2.0 ** -24
    gamma = d * f32 / (1 - d * f32)
    low = (1 - u) ** 3 * (1 - gamma) / (1 + gamma)
    high = (1 + u) ** 3 * (1 + gamma) / (1 - gamma)
    return 0.999 * low / high


@functools.cache
def bfloat16_accumulates_in_float32() -> bool:
    """Whether this CPU's bfloat16 matrix products sum in float32 (as :func:`error_bound` assumes):
    checked on a sum that bfloat16 accumulation gets wrong (1 + 1279 * 2^-12)."""
    x = torch.full((1, 1280), 2.0 ** -12)
    x[0, 0] = 1.0
    got = float((x.bfloat16() @ torch.ones(1280, 1, dtype=torch.bfloat16)).float())
    return abs(got - (1 + 1279 * 2.0 ** -12)) <= 2 * UNIT_ROUNDOFF


@functools.cache
def bfloat16_is_fast() -> bool:
    """Whether the prefilter pays here: bfloat16 products summed in float32, at least 1.5x the
    float32 rate (timed once per process, about 0.1 s)."""
    if not bfloat16_accumulates_in_float32():
        logger.info("bfloat16 products here do not accumulate in float32; exact search only")
        return False
    a, b = torch.randn(512, 1280), torch.randn(2048, 1280)

    def best(p, q) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            p @ q.T
            times.append(time.perf_counter() - t0)
        return min(times)

    ab, bb = a.bfloat16(), b.bfloat16()
    best(ab, bb)  # first call: kernel selection
    ratio = best(a, b) / best(ab, bb)
    logger.info("bfloat16 products %.1fx the float32 rate here", ratio)
    return ratio >= 1.5


def applies(fit: torch.Tensor, query: torch.Tensor | None, k: int, metric: str) -> bool:
    """Whether the prefiltered search is worth it: cosine, on the CPU, a large enough search, k
    neighbours available in every row, and fast bfloat16 products."""
    n_q = fit.shape[0] if query is None else query.shape[0]
    available = fit.shape[0] - (1 if query is None else 0)
    return (metric == "cosine" and fit.device.type == "cpu" and fit.dtype in (torch.float32, torch.float64)
            and 0 < k <= available and n_q * fit.shape[0] >= MIN_WORK and bfloat16_is_fast())


class _Candidates:
    """(row, fit row, bfloat16 similarity) triples that may be among a row's k nearest."""

    def __init__(self) -> None:
        self.parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.size = 0
        self.dense_blocks = 0  # blocks computed whole because many entries passed

    def add(self, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor) -> None:
        self.parts.append((rows.to(torch.int32), cols.to(torch.int32), values.float()))
        self.size += rows.numel()

    def prune(self, floor: torch.Tensor) -> None:
        """Drop the candidates below their row's floor, leaving one part."""
        rows, cols, values = (torch.cat(p) for p in zip(*self.parts))
        keep = values >= floor[rows.long()]
        self.parts = [(rows[keep], cols[keep], values[keep])]
        self.size = self.parts[0][0].numel()


def _group_maxima(S: torch.Tensor, by_columns: bool, k: int) -> tuple[torch.Tensor, int]:
    """Maxima of the interleaved groups of each row of ``S`` (``by_columns``: of each column), as
    float32 ``(rows, width)``, and the number of groups: entry ``j`` is in group ``j % width``
    (no grouping where fewer than 2k groups would be left). Elementwise maxima of contiguous slabs:
    a reduction over a strided bfloat16 axis is 20x slower."""
    n, m = S.shape
    length = n if by_columns else m
    groups = GROUPS if length % GROUPS == 0 and length // GROUPS >= 2 * k else 1
    if by_columns:
        return S.view(groups, n // groups, m).amax(dim=0).T.float(), groups
    slabs = S.view(n, groups, m // groups)
    group_max = slabs[:, 0].clone()
    for t in range(1, groups):
        torch.maximum(group_max, slabs[:, t], out=group_max)
    return group_max.float(), groups


def _collect_rows(S: torch.Tensor, run_v: torch.Tensor, floor_of: Callable, row0: int, col0: int, k: int,
                  exact_block: Callable[[], torch.Tensor], out: _Candidates, by_columns: bool = False) -> None:
    """Keep the entries of the bfloat16 block ``S`` that may be among their row's k nearest
    (``by_columns``: the rows are ``S``'s columns, their candidates its rows).

    ``run_v`` holds the rows' running k largest group maxima (entries of earlier blocks), updated
    here: the k-th of them is at most the row's k-th largest entry, so the floor it sets is safe.
    Only groups whose maximum reaches the floor are searched. When many entries pass (duplicated
    rows) the block is computed exactly and only each row's k best are kept: no other entry can
    be among its k nearest."""
    group_max, groups = _group_maxima(S, by_columns, k)
    if by_columns:
        S = S.T
    n, m = S.shape
    width = m // groups
    top = torch.topk(torch.cat([run_v, group_max], dim=1), min(k, k + width), dim=1, sorted=False).values
    run_v.copy_(top[:, :k])
    floor = floor_of(run_v.amin(dim=1))
    gi, gj = (group_max >= floor[:, None]).nonzero(as_tuple=True)
    cols = (gj.unsqueeze(1) + torch.arange(groups) * width)  # (candidate groups, groups)
    rows = gi.unsqueeze(1).expand_as(cols)
    values = S[rows, cols]
    keep = (values.float() >= floor[gi].unsqueeze(1)) & (values > -torch.inf)
    if int(keep.sum()) > S.numel() * DENSE_SHARE:
        out.dense_blocks += 1
        E = exact_block()
        best = torch.topk(E, min(k, m), dim=1, sorted=False).indices
        out.add(torch.arange(n).repeat_interleave(best.shape[1]) + row0, best.reshape(-1) + col0,
                S.gather(1, best).reshape(-1))
        return
    out.add(rows[keep] + row0, cols[keep] + col0, values[keep])


def _exact_top_k(fit: torch.Tensor, Q: torch.Tensor, kept: _Candidates, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k largest exact similarities among its candidates, and their fit rows."""
    rows, cols, _ = kept.parts[0]
    rows, cols = rows.long(), cols.long()
    values = torch.empty(rows.numel(), dtype=fit.dtype)
    buf_q = torch.empty(RERANK_CHUNK, fit.shape[1], dtype=fit.dtype)  # reused: fresh memory per chunk
    buf_f = torch.empty_like(buf_q)  # would cost more in page faults than the products
    for s in range(0, rows.numel(), RERANK_CHUNK):
        e = min(s + RERANK_CHUNK, rows.numel())
        a, b = buf_q[:e - s], buf_f[:e - s]
        torch.index_select(Q, 0, rows[s:e], out=a)
        torch.index_select(fit, 0, cols[s:e], out=b)
        torch.sum(a.mul_(b), dim=1, out=values[s:e])
    n = Q.shape[0]
    counts = torch.bincount(rows, minlength=n)
    if int(counts.min()) < k:  # each row keeps at least its k best bfloat16 entries
        raise RuntimeError(f"prefiltered search kept {int(counts.min())} candidates for a row; expected >= {k}")
    by_value = torch.argsort(values, descending=True, stable=True)
    order = by_value[torch.argsort(rows[by_value], stable=True)]  # grouped by row, largest first
    take = order[((torch.cumsum(counts, 0) - counts)[:, None] + torch.arange(k)).reshape(-1)]
    return values[take].view(n, k), cols[take].view(n, k)


def _exact(A: torch.Tensor, B: torch.Tensor, diagonal: bool) -> torch.Tensor:
    E = A @ B.T
    if diagonal:
        E.fill_diagonal_(-torch.inf)
    return E


def knn_prefiltered(fit: torch.Tensor, k: int, query: torch.Tensor | None, block_size: int,
                    progress: Callable[[int, int], None] | None = None):
    """The k largest cosine similarities of each query row (``None``: the fit rows, self excluded)
    and their fit rows, as ``(values, indices)`` tensors; None when the similarities prove too
    concentrated to prefilter (most of the first blocks computed exactly anyway)."""
    self_query = query is None
    Q = fit if self_query else query
    n_fit, n_q = fit.shape[0], Q.shape[0]
    two_eps = 2 * error_bound(fit.shape[1])
    if bool(fit.min() >= 0) and (self_query or bool(Q.min() >= 0)):  # e.g. pooled CNN features
        ratio = relative_floor(fit.shape[1])

        def floor_of(m: torch.Tensor) -> torch.Tensor:
            return torch.maximum(m - two_eps, m * ratio)
    else:
        def floor_of(m: torch.Tensor) -> torch.Tensor:
            return m - two_eps
    fit_blocks: dict[int, torch.Tensor] = {}  # bfloat16 copies, made on first use (none if it gives way early)
    query_blocks: dict[int, torch.Tensor] = fit_blocks if self_query else {}

    def bfloat16_block(rows: torch.Tensor, blocks: dict, start: int) -> torch.Tensor:
        if start not in blocks:
            blocks[start] = rows[start:start + block_size].bfloat16()
        return blocks[start]
    run_v = torch.full((n_q, k), -torch.inf)  # each row's k largest group maxima so far (bfloat16)
    kept = _Candidates()
    starts_q, starts_f = list(range(0, n_q, block_size)), list(range(0, n_fit, block_size))
    total = len(starts_q) * (len(starts_q) + 1) // 2 if self_query else len(starts_q) * len(starts_f)
    done = 0
    with torch.inference_mode():
        for qi, q0 in enumerate(starts_q):
            q1 = min(q0 + block_size, n_q)
            for f0 in (starts_f[qi:] if self_query else starts_f):
                f1 = min(f0 + block_size, n_fit)
                S = bfloat16_block(Q, query_blocks, q0) @ bfloat16_block(fit, fit_blocks, f0).T
                diagonal = self_query and f0 == q0
                if diagonal:
                    S.fill_diagonal_(-torch.inf)

                _collect_rows(S, run_v[q0:q1], floor_of, q0, f0, k,
                              lambda: _exact(Q[q0:q1], fit[f0:f1], diagonal), kept)
                if self_query and not diagonal:  # the same block, read by columns, serves rows f0:f1
                    _collect_rows(S, run_v[f0:f1], floor_of, f0, q0, k,
                                  lambda: _exact(fit[f0:f1], Q[q0:q1], False), kept, by_columns=True)
                if kept.dense_blocks > GIVE_WAY * (done + 1):
                    # Similarities too concentrated for bfloat16 to sort out (most blocks so far
                    # computed twice): the plain search costs less.
                    logger.info("prefilter: %d of %d blocks dense; searching the plain way", kept.dense_blocks, done + 1)
                    return None
                if kept.size > CANDIDATE_BUDGET:
                    kept.prune(floor_of(run_v.amin(dim=1)))
                done += 1
                if progress is not None:
                    progress(done, total)
        kept.prune(floor_of(run_v.amin(dim=1)))
        return _exact_top_k(fit, Q, kept, k)
