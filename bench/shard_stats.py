"""What the image statistics cost the shard engine (docs/BENCHMARKS.md).

    python bench/shard_stats.py [--n 256] [--rounds 3] [--shard-rows 64] [--model auto] [--device cpu]

On ``--n`` CIFAR-10 test images, the local engine's work per shard written into a fresh folder, two
ways, alternating for ``--rounds`` rounds (the median of each kept, so background load hits both
alike): features alone (``Embedder.embed`` and a ``ShardWriter`` that keeps no statistics), and
what ``embed_shards`` does (``embed_shard``: the statistics gathered on the decoding threads, then
the shard and its ``stats-NNNNN.npy`` written and recorded). Prints a markdown table with the bytes
the statistics take on disk per image. Needs OOD_CIFAR10 or ../shared/data/cifar10-jpeg.zip.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ood_core._shard_work import embed_shard, make_embedder  # noqa: E402
from ood_core.embedder import Embedder  # noqa: E402
from ood_core.issues._run import STATS_FORMAT  # noqa: E402
from ood_core.shards import ShardWriter  # noqa: E402
from _cifar_features import cifar_test_images  # noqa: E402 - bench/ is on sys.path when run as a script


def run(images, embedder, shard_rows: int, folder: Path, stats: bool) -> float:
    """Seconds to embed ``images`` into ``folder`` shard by shard, with or without the statistics."""
    start = time.perf_counter()
    writer = ShardWriter(folder, n_rows=len(images), key="bench", shard_rows=shard_rows,
                         stats_format=STATS_FORMAT if stats else None)
    for number in writer.pending():
        part = images.subset(np.arange(*writer.span(number)))
        if stats:
            features, _, kept = embed_shard(embedder, part)
            writer.write(number, features, stats=kept)
        else:
            writer.write(number, embedder.embed(part))
    writer.finish()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shard-rows", type=int, default=64)
    parser.add_argument("--model", default="auto")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    images = cifar_test_images(args.n)
    cfg = Embedder(model=args.model, device=args.device).config_for(images)
    embedder = make_embedder(cfg, "bundled", args.device, 64)
    embedder.embed(images.subset(np.arange(32)))  # warm-up: the model, the backend's export
    alone, with_stats = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.rounds):
            alone.append(run(images, embedder, args.shard_rows, Path(tmp) / f"alone{k}", stats=False))
            with_stats.append(run(images, embedder, args.shard_rows, Path(tmp) / f"stats{k}", stats=True))
        on_disk = sum(p.stat().st_size for p in (Path(tmp) / "stats0").glob("stats-*.npy"))
    a, w = statistics.median(alone), statistics.median(with_stats)
    print(f"{args.n} CIFAR-10 test images in shards of {args.shard_rows}, {cfg.model} at {cfg.image_size} px, "
          f"backend {cfg.backend}, device {args.device}, {os.cpu_count()} CPUs, median of {args.rounds} "
          "alternating rounds\n")
    print("| shard engine (local) | seconds | ms / image | vs features alone |\n|---|---|---|---|")
    print(f"| features alone | {a:.2f} | {1000 * a / args.n:.2f} | 1.00 |")
    print(f"| features + image statistics (what `embed_shards` writes) | {w:.2f} | {1000 * w / args.n:.2f} | "
          f"{w / a:.3f} ({100 * (w - a) / a:+.1f}%) |")
    print(f"\nstatistics on disk: {on_disk / args.n:.0f} bytes per image")


if __name__ == "__main__":
    main()
