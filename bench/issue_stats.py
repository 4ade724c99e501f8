"""What the image statistics of ood_core.issues cost on top of embedding (docs/BENCHMARKS.md).

    python bench/issue_stats.py [--n 512] [--rounds 3] [--model auto] [--device cpu]

On ``--n`` CIFAR-10 test images, with the default embedding settings: ``Embedder.embed`` alone and
``Embedder.embed`` with an ``ImageStatsCollector`` (the statistics computed on the decoding threads,
from the images they decode anyway), alternating for ``--rounds`` rounds, the median of each kept so
background load hits both alike; and, for comparison, the separate pass that runs when the embedding
came from the cache (``collect_image_stats``: its own read of the files). Prints a markdown table.
Needs OOD_CIFAR10 or ../shared/data/cifar10-jpeg.zip.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ood_core.embedder import Embedder  # noqa: E402
from ood_core.issues import ImageStatsCollector, collect_image_stats  # noqa: E402
from _cifar_features import cifar_test_images  # noqa: E402 - bench/ is on sys.path when run as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="auto")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    images = cifar_test_images(args.n)
    embedder = Embedder(model=args.model, device=args.device)
    cfg = embedder.config_for(images)
    embedder.embed(images.subset(np.arange(64)))  # warm-up: the model, the backend's export
    alone, with_stats, separate = [], [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        embedder.embed(images)
        alone.append(time.perf_counter() - start)
        collector = ImageStatsCollector(len(images), pixel_digests=images.item_digests is None)
        start = time.perf_counter()
        embedder.embed(images, collector=collector)
        with_stats.append(time.perf_counter() - start)
        collector.result()
        start = time.perf_counter()
        collect_image_stats(images)
        separate.append(time.perf_counter() - start)
    a, w, s = (statistics.median(x) for x in (alone, with_stats, separate))
    print(f"{args.n} CIFAR-10 test images, {cfg.model} at {cfg.image_size} px, backend {cfg.backend}, "
          f"device {args.device}, {os.cpu_count()} CPUs, median of {args.rounds} alternating rounds\n")
    print("| run | seconds | ms / image | vs embedding alone |\n|---|---|---|---|")
    print(f"| embedding alone | {a:.2f} | {1000 * a / args.n:.2f} | 1.00 |")
    print(f"| embedding + statistics in its decoding pass | {w:.2f} | {1000 * w / args.n:.2f} | {w / a:.3f} "
          f"({100 * (w - a) / a:+.1f}%) |")
    print(f"| statistics in a separate pass (cache hit) | {s:.2f} | {1000 * s / args.n:.2f} | {s / a:.3f} |")


if __name__ == "__main__":
    main()
