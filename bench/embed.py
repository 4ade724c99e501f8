"""Embedding benchmark: inference backends, Embedder vs the seed's plain loop, the default model vs lite0,
and AUROC vs input size.

    python bench/embed.py [--quick] [--n 1000] [--size 128] [--sizes 32,64,96,128,160] [--model lite0]
    python bench/embed.py --backends-only        # the backend table alone (384 images, default settings)

Backends: the default settings (lite2 at 160 px on CIFAR-10) on ``--backend-n`` CIFAR-10 test images
with each installed backend (torch, onnx, openvino; "auto" is the default), alternating rounds, median
kept: the forward pass alone on prepared batches and the whole ``Embedder.embed`` (decoding threads
overlapped with the model), each as a ratio to torch in the same run; the features against torch's (max
difference, smallest cosine) and the KNN scores (FeatureScorer fitted on half, scoring the other half).
Stage times: decode (JPEG to a draft-sized image), resize + centre crop, forward.

Speed: the same model (lite0), weights, resolution and preprocessing (no centre crop), on
a CIFAR-10 test slice; the seed loop is batch 50, torch.no_grad, no workers, PIL -> tensor
per image in Python.
In the same rounds, the default settings (``Embedder()``: on CIFAR-10 the default
network at its own small-image size) against lite0 at ``--size``. Runs alternate for
``--rounds`` rounds and the median is kept, so background load hits all alike.
AUROC: FeatureScorer fitted on the demo split's fit images, scored on its query
images (embeddings cached under bench/results/cache). Prints markdown tables. Needs
OOD_CIFAR10 or ../shared/data/cifar10-jpeg.zip. bench/models.py compares the models.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ood_core.embedder import Embedder  # noqa: E402
from ood_core.sources import cifar10, demo_split  # noqa: E402


from _cifar_features import cifar_path  # noqa: E402 - bench/ is on sys.path when run as a script


def seed_loop(net, images, size: int, mean, std) -> np.ndarray:
    """The seed's loop: per-image torchvision transforms, batches of 50, no workers."""
    import torch
    from torchvision import transforms as T

    tf = T.Compose([
        T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])
    out = []
    with torch.no_grad():
        for start in range(0, len(images), 50):
            batch = torch.stack([tf(images.load_image(i)) for i in range(start, min(start + 50, len(images)))])
            out.append(net(batch).numpy())
    return np.concatenate(out)


def bench_speed(cifar, n: int, size: int, rounds: int) -> None:
    from ood_core.weights import load_model

    test = np.flatnonzero(cifar.split == "test")
    images = cifar.subset(test[np.linspace(0, len(test) - 1, n).astype(int)])
    embedder = Embedder(model="lite0", image_size=size)
    # the seed loop's preprocessing (resize to size x size, no centre crop), so the features can be compared
    embedder.config = cfg = dataclasses.replace(embedder.config_for(images), crop_pct=1.0)
    default = Embedder()
    dcfg = default.config_for(images)
    seed_net, _ = load_model(cfg.model, "bundled")
    seed_net.reset_classifier(0)
    embedder.embed(images.subset(np.arange(min(64, n))))  # warm-up all
    default.embed(images.subset(np.arange(min(64, n))))
    seed_loop(seed_net, images.subset(np.arange(min(50, n))), size, cfg.mean, cfg.std)
    seed_rates, ours_rates, default_rates = [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        seed_feats = seed_loop(seed_net, images, size, cfg.mean, cfg.std)
        seed_rates.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        ours_feats = embedder.embed(images)
        ours_rates.append(n / (time.perf_counter() - t))
        t = time.perf_counter()
        default.embed(images)
        default_rates.append(n / (time.perf_counter() - t))
    seed, ours, dflt = (statistics.median(r) for r in (seed_rates, ours_rates, default_rates))
    diff = float(np.abs(seed_feats - ours_feats).max())
    print(f"\n### Embedding speed ({n} CIFAR-10 test images, CPU, {os.cpu_count()} cores, median of {rounds} "
          f"alternating rounds)\n")
    print("| loop | model | input | images/s | ratio | 6,000 images |")
    print("|---|---|---:|---:|---:|---:|")
    print(f"| seed (batch 50, no_grad, per-image PIL->tensor) | lite0 | {size} | {seed:.0f} | 1.00x | "
          f"{6000 / seed:.0f} s |")
    print(f"| Embedder (batch {embedder.batch_size}, inference_mode, channels-last, BatchNorm folded, "
          f"decode threads) | lite0 | {size} | {ours:.0f} | {ours / seed:.2f}x | {6000 / ours:.0f} s |")
    print(f"| Embedder, default settings | {dcfg.model} | {dcfg.image_size} | {dflt:.0f} | {dflt / seed:.2f}x | "
          f"{6000 / dflt:.0f} s |")
    print(f"\nmax |feature difference| seed vs Embedder: {diff:.2e}; default vs lite0 Embedder: "
          f"{dflt / ours:.2f}x the images/s")


def bench_backends(cifar, n: int, rounds: int) -> None:
    """The table of backends and the stage times (see the module docstring)."""
    import math

    import torch

    from ood_core import _backends
    from ood_core._embed_config import RESAMPLE
    from ood_core.embedder import _prepare
    from ood_core.scorers import FeatureScorer

    test = np.flatnonzero(cifar.split == "test")
    images = cifar.subset(test[np.linspace(0, len(test) - 1, n).astype(int)])
    names = [b for b in ("torch", "onnx", "openvino") if _backends.installed(b)]
    embedders = {b: Embedder(backend=b, device="cpu") for b in names}
    cfg = embedders["torch"].config_for(images)
    resample, draft = RESAMPLE[cfg.interpolation], math.floor(cfg.image_size / cfg.crop_pct)
    t = time.perf_counter()
    decoded = [images._load(i, draft) for i in range(n)]
    t_decode = (time.perf_counter() - t) / n
    t = time.perf_counter()
    batch = np.stack([_prepare(img, cfg.image_size, cfg.crop_pct, resample) for img in decoded])
    t_prepare = (time.perf_counter() - t) / n
    bs = embedders["torch"].batch_size
    runners = {b: e.runner(e.config_for(images)) for b, e in embedders.items()}  # exports made (or read) here
    for run in runners.values():
        run(batch[:bs])  # warm-up
    forward = {b: [] for b in names}
    whole = {b: [] for b in names}
    feats = {}
    for _ in range(rounds):
        for b in names:
            t = time.perf_counter()
            for start in range(0, n, bs):
                runners[b](batch[start:start + bs])
            forward[b].append(n / (time.perf_counter() - t))
            t = time.perf_counter()
            feats[b] = embedders[b].embed(images)
            whole[b].append(n / (time.perf_counter() - t))
    half = np.arange(n) % 2 == 0
    ref = feats["torch"]
    ref_scores = FeatureScorer().fit(ref[half]).score(ref[~half])
    fwd = {b: statistics.median(v) for b, v in forward.items()}
    end = {b: statistics.median(v) for b, v in whole.items()}
    auto = Embedder(device="cpu").config_for(images).backend
    print(f"\n### Inference backends ({n} CIFAR-10 test images, {cfg.model} at {cfg.image_size} px, batch {bs}, "
          f"{torch.get_num_threads()} threads, median of {rounds} alternating rounds; auto picks {auto})\n")
    print("| backend | version | forward images/s | forward ratio | embed images/s (decode overlapped) | "
          "embed ratio | 6,000 images | max abs feature diff | min cosine | max abs KNN score diff |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in names:
        f = feats[b]
        cos = float(np.min((f * ref).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(ref, axis=1)))
        score_diff = float(np.abs(FeatureScorer().fit(f[half]).score(f[~half]) - ref_scores).max())
        version = _backends.backend_version(b).split(",")[min(1, len(_backends.backend_version(b).split(",")) - 1)]
        print(f"| {b}{' (auto)' if b == auto else ''} | {version} | {fwd[b]:.0f} | {fwd[b] / fwd['torch']:.2f}x | "
              f"{end[b]:.0f} | {end[b] / end['torch']:.2f}x | {6000 / end[b]:.0f} s | "
              f"{float(np.abs(f - ref).max()):.1e} | {cos:.6f} | {score_diff:.1e} |")
    print(f"\n### Stage times per image ({cfg.model} at {cfg.image_size} px, one thread for decode and resize)\n")
    print("| stage | ms per image | images/s |")
    print("|---|---:|---:|")
    print(f"| decode (JPEG to draft size) | {t_decode * 1e3:.2f} | {1 / t_decode:.0f} |")
    print(f"| resize + centre crop | {t_prepare * 1e3:.2f} | {1 / t_prepare:.0f} |")
    for b in names:
        print(f"| forward, {b} | {1e3 / fwd[b]:.2f} | {fwd[b]:.0f} |")


def bench_auroc(cifar, sizes: list[int], quick: bool, model: str) -> None:
    from ood_core.cache import cached_embed
    from ood_core.scorers import FeatureScorer
    from ood_core.thresholds import ood_metrics

    split = demo_split(cifar, fit_fraction=1 / 30, query_fraction=1 / 50) if quick else demo_split(cifar)
    fit, query = split.split == "train", split.split == "test"
    cache_dir = ROOT / "bench" / "results" / "cache"
    print(f"\n### Feature AUROC vs input size, {model} ({split.description})\n")
    print("| input size | feature AUROC | FPR at 95% TPR | embed images/s |")
    print("|---:|---:|---:|---:|")
    for size in sizes:
        embedder = Embedder(model=model, image_size=size)
        t = time.perf_counter()
        feats, hit = cached_embed(embedder, split, cache_dir=cache_dir)
        rate = "cached" if hit else f"{len(split) / (time.perf_counter() - t):.0f}"
        scores = FeatureScorer().fit(feats[fit]).score(feats[query])
        m = ood_metrics(scores, split.is_ood[query])
        print(f"| {size} | {m['auroc']:.3f} | {m['fpr_at_95_tpr']:.3f} | {rate} |", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small slices (200 images speed, 1200 demo)")
    p.add_argument("--n", type=int, default=None, help="images in the speed slice (default: 1000, quick 200)")
    p.add_argument("--size", type=int, default=128, help="input size for the speed run (default: 128)")
    p.add_argument("--rounds", type=int, default=3, help="alternating speed rounds (default: 3)")
    p.add_argument("--sizes", default="32,64,96,128,160",
                   help="input sizes for the AUROC table (default: 32,64,96,128,160)")
    p.add_argument("--model", default="lite0", help="model of the AUROC table (default: lite0)")
    p.add_argument("--skip-speed", action="store_true", help="only the AUROC table")
    p.add_argument("--skip-auroc", action="store_true", help="only the speed table")
    p.add_argument("--backend-n", type=int, default=384, help="images in the backend table (default: 384)")
    p.add_argument("--backends-only", action="store_true", help="only the backend and stage tables")
    args = p.parse_args(argv)
    cifar = cifar10(cifar_path())
    bench_backends(cifar, args.backend_n if not args.quick else 128, args.rounds)
    if args.backends_only:
        return 0
    if not args.skip_speed:
        bench_speed(cifar, args.n or (200 if args.quick else 1000), args.size, args.rounds)
    if not args.skip_auroc:
        bench_auroc(cifar, [int(s) for s in args.sizes.split(",")], args.quick, args.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
