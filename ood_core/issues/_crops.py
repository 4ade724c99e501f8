"""Crop- and scale-tolerant comparison of two pictures from small grayscale thumbnails.

A light crop moves a 64-bit perceptual hash by 10-20 bits (CIFAR-10, a 10% crop), as far as two
distinct pictures can lie, so hashes alone miss it. Here each image keeps a :data:`THUMB` x
:data:`THUMB` grayscale thumbnail (:data:`THUMB` ** 2 bytes, computed in the decoding pass with the hashes
by :func:`~._image_pass.image_records`), and a candidate pair (from the neighbour search and the hash
buckets: never all pairs) is verified by :func:`crop_similarity`: the region of one thumbnail that a
crop hypothesis keeps (each side's share 1.0, 0.95, 0.9, 0.85 or 0.8, at the start, centre or end of
the axis: 13 per axis, 169 in all, in both directions) is resampled to the full thumbnail and
compared with the other thumbnail by normalized cross-correlation (NCC) of the gradients of the
blurred pictures (horizontal and vertical differences after a [1, 2, 1] blur: plain brightness
correlates well between any two smooth pictures, raw differences suffer from the sub-pixel
misalignment a grid of hypotheses leaves). The pair's similarity is the best NCC over the hypotheses.

Cost: 256 bytes kept per image (256 MB at 1M images, kept with the other statistics in the run
folder); about 0.05 ms of one CPU core per candidate pair, 0.33 ms per CIFAR-10 image with its ~7.5
candidates (bench/near_duplicates.py): 2% of the whole lite0 96 px analysis there, 0.4% of the
default lite2 160 px embedding (89.6 ms per image, bench/issue_stats.py).
"""
from __future__ import annotations

import numpy as np

THUMB = 16  # thumbnail side, pixels: 256 bytes per image
SCALES = (1.0, 0.95, 0.9, 0.85, 0.8)  # share of each side a crop hypothesis keeps
_CHUNK = 512  # pairs compared at once (about 40 MB of float32 work arrays)


def _axis_variants(n: int) -> np.ndarray:
    """Bilinear resampling matrices (V, n, n): ``R @ x`` stretches the part of ``x`` (a length-``n``
    signal over [0, 1]) that one hypothesis keeps back to length ``n``."""
    hyps = [(1.0, 0.0)] + [(s, o) for s in SCALES[1:] for o in (0.0, (1 - s) / 2, 1 - s)]
    out = np.zeros((len(hyps), n, n), dtype=np.float32)
    for v, (s, o) in enumerate(hyps):
        x = (o + s * (np.arange(n) + 0.5) / n) * n - 0.5  # input coordinate of each output pixel centre
        x = np.clip(x, 0, n - 1)
        lo = np.floor(x).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        w = (x - lo).astype(np.float32)
        out[v, np.arange(n), lo] += 1 - w
        out[v, np.arange(n), hi] += w
    return out


def _blur(n: int) -> np.ndarray:
    """The (n, n) matrix of a [1, 2, 1] / 4 blur with edge pixels repeated."""
    out = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        for d, w in ((-1, 0.25), (0, 0.5), (1, 0.25)):
            out[i, min(max(i + d, 0), n - 1)] += w
    return out


_R = _axis_variants(THUMB)
_L = _blur(THUMB)
_D = (np.eye(THUMB, k=1) - np.eye(THUMB))[:-1].astype(np.float32)  # (n - 1, n): differences
_S = _L @ _R  # (V, n, n): resample, then blur
_G = _D @ _L @ _R  # (V, n - 1, n): resample, blur, then differences
_GTG = np.matmul(np.swapaxes(_G, 1, 2), _G).reshape(len(_R), -1)  # (V, n * n)
_STS = np.matmul(np.swapaxes(_S, 1, 2), _S).reshape(len(_R), -1)


def _unit(g: np.ndarray) -> np.ndarray:
    """Rows of ``g`` (..., m) centred to unit norm; a (nearly) flat row gives zeros."""
    g = g - g.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(g, axis=-1, keepdims=True)
    return np.where(norm > 1e-2 * np.sqrt(g.shape[-1]), g / np.maximum(norm, 1e-12), 0.0)


def _crop_gradients(t: np.ndarray, variants: slice = slice(None)) -> np.ndarray:
    """Gradients of the blurred crops of images ``t`` (P, n, n): (P, V, V, 2 n (n - 1)) for every
    (row, column) hypothesis, or (P, 1, 1, ...) with ``variants=slice(0, 1)`` (the whole picture)."""
    S, G = _S[variants], _G[variants]
    gx = np.matmul(np.matmul(S[None], t[:, None])[:, :, None], np.swapaxes(G, 1, 2)[None, None])
    gy = np.matmul(np.matmul(G[None], t[:, None])[:, :, None], np.swapaxes(S, 1, 2)[None, None])
    return np.concatenate([gx.reshape(*gx.shape[:3], -1), gy.reshape(*gy.shape[:3], -1)], axis=-1)


def _one_way(big: np.ndarray, small: np.ndarray) -> np.ndarray:
    """Best NCC, per pair, of ``small`` against every crop hypothesis of ``big`` (both (P, n, n)).

    The crops are never formed: with the target's gradients ``t`` centred to unit norm, a crop's
    NCC is <crop gradients, t> / |crop gradients - their mean|, and both terms split into products of
    (V, n, n) matrices, so a pair costs O(V n^3 + V^2 n^2) instead of O(V^2 n^3)."""
    p, m = len(big), 2 * THUMB * (THUMB - 1)
    whole = _unit(_crop_gradients(small, slice(0, 1)))[:, 0, 0]
    tx = whole[:, :THUMB * (THUMB - 1)].reshape(p, THUMB, THUMB - 1)
    ty = whole[:, THUMB * (THUMB - 1):].reshape(p, THUMB - 1, THUMB)
    u1 = np.matmul(_S[None], big[:, None])  # (P, V, n, n): rows of each hypothesis, blurred
    u2 = np.matmul(_G[None], big[:, None])  # (P, V, n - 1, n): rows, blurred, differenced
    w1 = np.matmul(tx[:, None], _G[None])  # (P, V, n, n)
    w2 = np.matmul(ty[:, None], _S[None])  # (P, V, n - 1, n)
    num = (np.matmul(u1.reshape(p, len(_R), -1), np.swapaxes(w1.reshape(p, len(_R), -1), 1, 2))
           + np.matmul(u2.reshape(p, len(_R), -1), np.swapaxes(w2.reshape(p, len(_R), -1), 1, 2)))
    m1 = np.matmul(np.swapaxes(u1, 2, 3), u1).reshape(p, len(_R), -1)  # (P, V, n * n)
    m2 = np.matmul(np.swapaxes(u2, 2, 3), u2).reshape(p, len(_R), -1)
    sumsq = m1 @ _GTG.T + m2 @ _STS.T  # (P, V rows, V columns)
    total = u1.sum(axis=2) @ _G.sum(axis=1).T + u2.sum(axis=2) @ _S.sum(axis=1).T
    var = sumsq - total ** 2 / m
    ncc = np.where(var > 1e-4 * m, num / np.sqrt(np.maximum(var, 1e-12)), 0.0)
    return ncc.reshape(p, -1).max(axis=1)


def crop_similarity(thumbs: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each pair (``a[i]``, ``b[i]``) of rows of ``thumbs`` (N, n, n) uint8: the best
    normalized cross-correlation of gradients in [-1, 1] over the crop hypotheses, either picture
    being the crop of the other. 1 for the same picture; a flat picture scores 0."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    out = np.zeros(len(a), dtype=np.float64)
    for s in range(0, len(a), _CHUNK):
        ta = thumbs[a[s:s + _CHUNK]].astype(np.float32)
        tb = thumbs[b[s:s + _CHUNK]].astype(np.float32)
        out[s:s + _CHUNK] = np.maximum(_one_way(ta, tb), _one_way(tb, ta))
    return out
