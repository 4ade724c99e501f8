"""CIFAR-10's features with the default settings (tf_efficientnet_lite2 at 160 px, default backend),
for the benchmarks that search real embeddings: all 50,000 training and 10,000 test images, cached
under bench/results/cache (the first call embeds them: about 6 minutes on 2 cores)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cifar_path() -> str:
    path = os.environ.get("OOD_CIFAR10") or str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip")
    if not Path(path).exists():
        sys.exit(f"CIFAR-10 not found at {path}; set OOD_CIFAR10")
    return path


def cifar_test_images(n: int):
    """``n`` CIFAR-10 test images spread evenly over the test set (an ImageSet)."""
    from ood_core.sources import cifar10

    cifar = cifar10(cifar_path())
    test = np.flatnonzero(cifar.split == "test")
    return cifar.subset(test[np.linspace(0, len(test) - 1, n).astype(int)])


def cifar_features() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train features, train labels, test features, test labels), float32 rows in file order."""
    from ood_core.cache import cached_embed
    from ood_core.embedder import Embedder, drop_failed
    from ood_core.sources import cifar10

    images = cifar10(cifar_path())
    embedder = Embedder()
    features, hit = cached_embed(embedder, images, cache_dir=ROOT / "bench" / "results" / "cache")
    images, features = drop_failed(images, features, embedder.failures_)
    if not hit:
        print(f"embedded {len(images):,} CIFAR-10 images (cached for the next run)", file=sys.stderr)
    split, labels = np.asarray(images.split), np.asarray(images.labels)
    train, test = split == "train", split == "test"
    return features[train], labels[train], features[test], labels[test]
