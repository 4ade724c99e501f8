"""Benchmark for a CUDA machine: lite0 embedding throughput at 128 px and the exact KNN at N = 200k.

Prepared for a session that has a GPU (one short run): prints a markdown table for docs/BENCHMARKS.md
("GPU"), with the CPU figures of the same run where they take seconds.

- Embedding: ``--images`` 32 x 32 RGB images held in memory (seeded noise: the throughput does not
  depend on the content) embedded by lite0 at 128 px, batch ``--batch-size``, after one warm-up
  batch; images/s on CUDA (and on the CPU for a 512-image slice).
- Exact KNN: clustered 1280-d float32 features, N fit rows, N/10 queries, ``FeatureScorer(
  index="exact", device="cuda")`` fit + score; the CUDA scores are checked against the CPU's on a
  2,000-row slice (max abs difference, the tests ask for 1e-4).

    python bench/gpu.py                      # 20,000 images, N = 200,000
    python bench/gpu.py --images 4000 --n 50000
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/gpu.py` puts only bench/ on sys.path
    sys.path.insert(0, str(ROOT))


def embedding_rate(n: int, device: str, batch_size: int) -> float:
    import torch

    from ood_core import Embedder
    from ood_core.sources._imageset import pixel_set

    pixels = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    images = pixel_set(pixels, [str(i) for i in range(n)], np.zeros(n, dtype=np.int64), ["noise"],
                       identity=f"bench-gpu-noise-{n}", description="noise")
    embedder = Embedder(model="lite0", image_size=128, device=device, batch_size=batch_size)
    embedder.embed(images.subset(np.arange(min(n, batch_size))))  # warm-up: weights, kernels
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    embedder.embed(images)
    if device == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def clustered(n: int, seed: int) -> np.ndarray:
    base = np.random.default_rng(0)
    centres = 2 * base.standard_normal((2000, 16)).astype(np.float32)
    W = (base.standard_normal((16, 1280)) / 4).astype(np.float32)
    rng = np.random.default_rng(seed)
    z = centres[rng.integers(0, 2000, n)] + rng.standard_normal((n, 16), dtype=np.float32)
    return np.maximum(z @ W, 0) + 0.05 * rng.standard_normal((n, 1280), dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n", type=int, default=200_000, help="fit rows of the exact KNN (default 200,000)")
    args = parser.parse_args()

    import torch

    from ood_core import FeatureScorer

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: this benchmark is for a GPU machine")
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}", flush=True)
    gpu_rate = embedding_rate(args.images, "cuda", args.batch_size)
    cpu_rate = embedding_rate(512, "cpu", 64)
    print(f"lite0 at 128 px: {gpu_rate:,.0f} images/s on CUDA, {cpu_rate:,.0f} on the CPU", flush=True)

    X, Q = clustered(args.n, 1), clustered(args.n // 10, 2)
    start = time.perf_counter()
    scorer = FeatureScorer(index="exact", device="cuda").fit(X)
    fitted = time.perf_counter()
    scorer.score(Q)
    torch.cuda.synchronize()
    done = time.perf_counter()
    print(f"exact KNN on CUDA, N={args.n:,}: fit {fitted - start:.1f} s, score {args.n // 10:,} queries "
          f"{done - fitted:.1f} s", flush=True)
    small = X[:2000]
    gap = np.abs(FeatureScorer(device="cuda").fit(small).fit_scores_
                 - FeatureScorer(device="cpu").fit(small).fit_scores_).max()
    print(f"CUDA vs CPU scores on 2,000 rows: max abs difference {gap:.1e}")
    print("\n| what | CUDA | CPU |\n|---|---:|---:|")
    print(f"| lite0 embedding at 128 px (images/s) | {gpu_rate:,.0f} | {cpu_rate:,.0f} |")
    print(f"| exact KNN, {args.n:,} fit + {args.n // 10:,} queries (s) | {done - start:.1f} | |")


if __name__ == "__main__":
    main()
