"""Benchmark: FeatureScorer's exact blocked search against a scikit-learn cosine reference.

N fit rows and N/5 queries of 1280-d float32 features: CIFAR-10's own (the default model's features
of the first N training and N/5 test images, bench/_cifar_features.py) and clustered synthetic data
(non-negative, concentrated: every similarity close to every other). The reference is what
cleanlab does: ``NearestNeighbors(metric="cosine")``, ``kneighbors()`` on the fit set and on
the queries, then the same exp(-d/median) transform. FeatureScorer runs as it does by default (on a
CPU with fast bfloat16 products, bfloat16 candidates re-ranked exactly: ood_core/_neighbors_prefilter.py)
and with the plain float32 search alone. Prints a markdown table with the time of each, the
speed-ups, the max score difference, and the float32 GEMM work per second each reaches as a share
of this machine's float32 GEMM rate: the GEMM rate (2048 x 1280 blocks) and both searches are
timed in alternating rounds and the median of each kept, so background load hits all alike.

    python bench/knn.py                          # N = 5,000 and 20,000, both kinds of data
    python bench/knn.py --sizes 2000 --data synthetic   # quick
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import ood_core._neighbors_prefilter as prefilter
from ood_core import FeatureScorer


def clustered(n: int, d: int, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    centers = rng.normal(size=(n_clusters, d)).astype(np.float32)
    X = centers[rng.integers(0, n_clusters, n)] + 0.6 * rng.normal(size=(n, d)).astype(np.float32)
    return np.abs(X)  # non-negative, like pooled CNN activations


def gemm_gflops(n: int = 2048, d: int = 1280, repeats: int = 5) -> float:
    A = torch.randn(n, d)
    B = torch.randn(n, d)
    A @ B.T
    t0 = time.perf_counter()
    for _ in range(repeats):
        A @ B.T
    dt = (time.perf_counter() - t0) / repeats
    return 2 * n * n * d / dt / 1e9


def reference_scores(X: np.ndarray, Q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k, metric="cosine").fit(X)
    d_fit = nn.kneighbors()[0].mean(axis=1)
    d_q = nn.kneighbors(Q)[0].mean(axis=1)
    scale = max(np.median(d_fit), 1e-6)
    return np.exp(-d_fit / scale), np.exp(-d_q / scale)


def timed_fit_score(X: np.ndarray, Q: np.ndarray, k: int, plain: bool) -> tuple[float, np.ndarray, np.ndarray]:
    """Seconds for FeatureScorer's fit_score and score (``plain``: the float32 search alone)."""
    applies = prefilter.applies
    if plain:
        prefilter.applies = lambda *a: False
    try:
        t0 = time.perf_counter()
        fs = FeatureScorer(k=k)
        fit_scores = fs.fit_score(X)
        q_scores = fs.score(Q)
        return time.perf_counter() - t0, fit_scores, q_scores
    finally:
        prefilter.applies = applies


def datasets(kinds: list[str], sizes: list[int], dim: int, rng: np.random.Generator):
    """(kind, fit rows, query rows) for each kind of data and size."""
    for kind in kinds:
        if kind == "cifar":
            from _cifar_features import cifar_features

            train, _, test, _ = cifar_features()
        for n in sizes:
            if kind == "cifar":
                yield "CIFAR-10 (lite2 features)", train[:n], test[:n // 5]
            else:
                yield "synthetic (clustered)", clustered(n, dim, 50, rng), clustered(n // 5, dim, 60, rng)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000], help="fit-set sizes (default: 5000 20000)")
    parser.add_argument("--data", default="cifar,synthetic", help="comma-separated: cifar, synthetic (default: both)")
    parser.add_argument("--dim", type=int, default=1280, help="synthetic feature dimension (default: 1280)")
    parser.add_argument("--k", type=int, default=10, help="neighbours (default: 10)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of GEMM and both searches (default: 3)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"torch threads: {torch.get_num_threads()}; median of {args.rounds} alternating rounds; "
          f"bfloat16 prefilter used here: {prefilter.bfloat16_is_fast()}")
    print()
    print("| data | fit N | queries | sklearn cosine (s) | plain float32 search (s) | FeatureScorer (s) | vs sklearn | "
          "vs plain | max abs score diff | GEMM GFLOP/s | share of the GEMM rate: plain, FeatureScorer |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind, X, Q in datasets(args.data.split(","), args.sizes, args.dim, rng):
        n = len(X)
        t0 = time.perf_counter()
        ref_fit, ref_q = reference_scores(X, Q, args.k)
        t_ref = time.perf_counter() - t0
        times, plain_times, rates = [], [], []
        for _ in range(args.rounds):
            rates.append(gemm_gflops(d=X.shape[1]))
            t, fit_scores, q_scores = timed_fit_score(X, Q, args.k, plain=False)
            times.append(t)
            t, plain_fit, plain_q = timed_fit_score(X, Q, args.k, plain=True)
            plain_times.append(t)
        t_ours, t_plain, rate = float(np.median(times)), float(np.median(plain_times)), float(np.median(rates))
        diff = max(np.abs(fit_scores - ref_fit).max(), np.abs(q_scores - ref_q).max(),
                   np.abs(plain_fit - ref_fit).max(), np.abs(plain_q - ref_q).max())
        # symmetric fit: half of n*n dot products; queries: len(Q) * n
        gflop = 2 * X.shape[1] * (n * n / 2 + len(Q) * n) / 1e9
        print(f"| {kind} | {n:,} | {len(Q):,} | {t_ref:.2f} | {t_plain:.2f} | {t_ours:.2f} | {t_ref / t_ours:.1f}x | "
              f"{t_plain / t_ours:.2f}x | {diff:.1e} | {rate:.0f} | {gflop / t_plain / rate:.0%}, "
              f"{gflop / t_ours / rate:.0%} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
