"""Which model and input size: feature AUROC and images/s per model x size, on two CIFAR-10 splits.

    python bench/models.py [--grid lite0:128,lite2:160,...] [--variants lite2:192] [--skip-grid] [--quick]

Splits: the demo split (5,000 animal training images fit, 1,000 test images of all classes
scored) and a held-out one chosen the other way round (2,000 vehicle training images fit,
1,000 test images scored, animals out; seed 1). Features come through the embedding cache
(bench/results/cache) for the union of both splits, so a rerun only scores. images/s: a
warm Embedder per row on a 256-image test slice, rows alternating for ``--rounds`` rounds and
the median kept, with the ratio against lite0 at 128 px (the old default) in the same run.
``--variants`` measures, for one model and size, what did and did not help
(flip averaging, other layers, centring, preprocessing). Then the digits, and the defaults
end to end (feature, prediction and rank-average AUROC, FPR at the 5% threshold).
Needs OOD_CIFAR10 or ../shared/data/cifar10-jpeg.zip.
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

import ood_core  # noqa: E402
from ood_core.cache import cached_embed  # noqa: E402
from ood_core.embedder import Embedder  # noqa: E402
from ood_core.scorers import FeatureScorer  # noqa: E402
from ood_core.sources import cifar10, demo_split, in_out_split  # noqa: E402
from ood_core.thresholds import ood_metrics  # noqa: E402

CACHE = ROOT / "bench" / "results" / "cache"
VEHICLES = ["airplane", "automobile", "ship", "truck"]
GRID = "lite0:128,lite0:160,lite1:128,lite1:160,lite2:128,lite2:160,lite2:192"


from _cifar_features import cifar_path  # noqa: E402 - bench/ is on sys.path when run as a script


def splits(cifar, quick: bool) -> dict:
    scale = 0.1 if quick else 1.0
    return {"demo": demo_split(cifar, fit_fraction=scale / 6, query_fraction=scale / 10),
            "held-out": in_out_split(cifar, VEHICLES, fit_fraction=scale / 10, query_fraction=scale / 10, seed=1,
                                     title="CIFAR-10 vehicles in, animals out")}


def pool_of(cifar, parts: dict):
    """The union of the splits' images (one embedding pass serves both) and each split's rows in it."""
    ids = sorted(set().union(*(p.ids for p in parts.values())))
    where = {i: n for n, i in enumerate(cifar.ids)}
    pool = cifar.subset(np.array([where[i] for i in ids]))
    at = {i: n for n, i in enumerate(ids)}
    return pool, {name: np.array([at[i] for i in p.ids]) for name, p in parts.items()}


def auroc(features: np.ndarray, part) -> tuple[float, float]:
    fit, query = part.split == "train", part.split == "test"
    m = ood_metrics(FeatureScorer().fit(features[fit]).score(features[query]), part.is_ood[query])
    return m["auroc"], m["fpr_at_95_tpr"]


def speeds(grid: list[tuple[str, int]], slice_, rounds: int) -> dict[tuple[str, int], float]:
    """images/s of each (model, size) on ``slice_``: warm Embedders, alternating rounds, the median kept,
    so that background load hits every row alike."""
    embedders = {key: Embedder(model=key[0], image_size=key[1]) for key in grid}
    for e in embedders.values():
        e.embed(slice_.subset(np.arange(32)))  # load and warm up
    rates: dict = {key: [] for key in grid}
    for _ in range(rounds):
        for key, e in embedders.items():
            start = time.perf_counter()
            e.embed(slice_)
            rates[key].append(len(slice_) / (time.perf_counter() - start))
    return {key: statistics.median(r) for key, r in rates.items()}


def bench_grid(cifar, parts, grid: list[tuple[str, int]], quick: bool, rounds: int) -> None:
    pool, rows = pool_of(cifar, parts)
    test = np.flatnonzero(cifar.split == "test")
    slice_ = cifar.subset(test[np.linspace(0, len(test) - 1, 64 if quick else 256).astype(int)])
    results = {}
    for model, size in grid:
        feats, _ = cached_embed(Embedder(model=model, image_size=size), pool, cache_dir=CACHE)
        results[model, size] = [auroc(feats[rows[name]], parts[name]) for name in ("demo", "held-out")]
    rate = speeds(sorted(set(grid) | {("lite0", 128)}), slice_, rounds)
    base = rate["lite0", 128]
    print(f"\n### Models x input size ({len(pool)} images embedded; AUROC / FPR at 95% TPR of the feature score; "
          f"images/s on {len(slice_)} test images, {os.cpu_count()} cores, median of {rounds} alternating rounds)\n")
    print("| model | input | demo AUROC | demo FPR@95 | held-out AUROC | held-out FPR@95 | images/s | vs lite0@128 |"
          " 6,000 images |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, ((a, f), (ha, hf)) in results.items():
        print(f"| {key[0]} | {key[1]} | {a:.4f} | {f:.3f} | {ha:.4f} | {hf:.3f} | {rate[key]:.0f} | "
              f"{rate[key] / base:.2f}x | {6000 / rate[key]:.0f} s |", flush=True)
    for model in ("pixels", "pixels-raw"):  # centring depends on the fit rows: each split embedded on its own
        r = [auroc(Embedder(model=model).embed(parts[name]), parts[name]) for name in ("demo", "held-out")]
        print(f"| {model} | 32 | {r[0][0]:.4f} | {r[0][1]:.3f} | {r[1][0]:.4f} | {r[1][1]:.3f} | | | |", flush=True)


def bench_variants(cifar, parts, model: str, size: int) -> None:
    """One pass with hooks: pre-logits, the last block pooled, and flipped copies; then post-processing."""
    import torch

    pool, rows = pool_of(cifar, parts)
    e = Embedder(model=model, image_size=size)
    cfg = e.config_for(pool)
    net = e.network
    grabbed = {}
    net.blocks[-1].register_forward_hook(lambda m, i, o: grabbed.__setitem__("block", o.mean((2, 3))))
    imagenet = dataclasses.replace(cfg, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

    def pre_logits(buf: np.ndarray, c, flip: bool = False) -> np.ndarray:
        x = torch.from_numpy(buf).permute(0, 3, 1, 2).float() / 255.0
        x = (x - torch.tensor(c.mean).view(1, 3, 1, 1)) / torch.tensor(c.std).view(1, 3, 1, 1)
        return net.forward_head(net.forward_features(torch.flip(x, dims=[3]) if flip else x), pre_logits=True).numpy()

    out = {k: [] for k in ("pre", "block", "pre_flip", "pre_imagenet", "pre_nocrop")}
    with torch.inference_mode():
        for _, _, buf, _ in e._decoded_batches(pool, cfg):
            out["pre"].append(pre_logits(buf, cfg))
            out["block"].append(grabbed["block"].numpy())  # the hook's capture of that same pass
            out["pre_flip"].append(pre_logits(buf, cfg, flip=True))
            out["pre_imagenet"].append(pre_logits(buf, imagenet))
        for _, _, buf, _ in e._decoded_batches(pool, dataclasses.replace(cfg, crop_pct=1.0)):
            out["pre_nocrop"].append(pre_logits(buf, cfg))
    f = {k: np.concatenate(v) for k, v in out.items()}

    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    variants = {
        "pre-logits (kept)": lambda X, fit: X,
        "+ horizontal-flip average": None,
        "last block pooled": None,
        "pre-logits + last block (each unit length)": None,
        "centred on the fit mean": lambda X, fit: X - X[fit].mean(0),
        "square root (power normalisation)": lambda X, fit: np.sqrt(np.maximum(X, 0)),
        "ImageNet mean/std instead of timm's 0.5": None,
        "no centre crop (the upscaled image whole)": None,
    }
    sources = {"+ horizontal-flip average": (f["pre"] + f["pre_flip"]) / 2, "last block pooled": f["block"],
               "pre-logits + last block (each unit length)": np.hstack([unit(f["pre"]), unit(f["block"])]),
               "ImageNet mean/std instead of timm's 0.5": f["pre_imagenet"],
               "no centre crop (the upscaled image whole)": f["pre_nocrop"]}
    print(f"\n### Feature variants, {model} at {size} px, crop {cfg.crop_pct} (AUROC / FPR at 95% TPR)\n")
    print("| variant | demo AUROC | demo FPR@95 | held-out AUROC | held-out FPR@95 | cost |")
    print("|---|---:|---:|---:|---:|---|")
    for name, transform in variants.items():
        cells = []
        for split_name in ("demo", "held-out"):
            part = parts[split_name]
            X = sources.get(name, f["pre"])[rows[split_name]].astype(np.float64)
            if transform is not None:
                X = transform(X, part.split == "train")
            cells += list(auroc(X, part))
        cost = "2x" if "flip" in name else "1x"
        print(f"| {name} | {cells[0]:.4f} | {cells[1]:.3f} | {cells[2]:.4f} | {cells[3]:.3f} | {cost} |", flush=True)


def summary(analysis) -> str:
    view = analysis.threshold_view("feature", percentile=5)
    cells = [f"{view.metrics['auroc']:.4f}", f"{100 * view.metrics['fpr']:.1f}%"]
    if "prediction" in analysis.scorers:
        fits = [analysis.fit_feature_scores, analysis.fit_pred_scores]
        _, combined = ood_core.rank_average_fit_query(fits, [analysis.query_feature_scores, analysis.query_pred_scores])
        auc = ood_core.compare_auroc(analysis.is_ood, prediction=analysis.query_pred_scores, rank_average=combined)
        cells += [f"{auc['prediction']:.4f}", f"{auc['rank_average']:.4f}"]
    return " | ".join(cells)


def bench_defaults(cifar, quick: bool) -> None:
    print("\n### Default settings end to end (`ood_core.analyze` with no model given)\n")
    print("| data | model used | feature AUROC | test FPR at the 5% threshold | prediction AUROC |"
          " rank average AUROC |")
    print("|---|---|---:|---:|---:|---:|")
    digits = ood_core.analyze("digits", cache_dir=CACHE)
    print(f"| digits | {digits.embed_config['model']} | {summary(digits)} |", flush=True)
    for model in ("lite0", "lite2"):
        a = ood_core.analyze("digits", model=model, cache_dir=CACHE)
        print(f"| digits, model={model} | {a.embed_config['model']} {a.embed_config['image_size']} px | "
              f"{summary(a)} |", flush=True)
    demo = splits(cifar, quick)["demo"]
    for model in (ood_core.DEFAULT_MODEL, "lite0"):
        a = ood_core.analyze(demo, model=model, cache_dir=CACHE)
        print(f"| CIFAR-10 demo{'' if model == 'auto' else ', model=' + model} | {a.embed_config['model']} "
              f"{a.embed_config['image_size']} px | {summary(a)} |", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--grid", default=GRID, help=f"model:size pairs (default: {GRID})")
    p.add_argument("--variants", default="lite2:160", help="model:size for the variants table ('' skips it)")
    p.add_argument("--skip-grid", action="store_true")
    p.add_argument("--skip-defaults", action="store_true")
    p.add_argument("--quick", action="store_true", help="a tenth of each split")
    p.add_argument("--rounds", type=int, default=3, help="alternating speed rounds (default: 3)")
    args = p.parse_args(argv)
    cifar = cifar10(cifar_path())
    parts = splits(cifar, args.quick)
    if not args.skip_grid:
        grid = [(m, int(s)) for m, s in (x.split(":") for x in args.grid.split(","))]
        bench_grid(cifar, parts, grid, args.quick, args.rounds)
    if args.variants:
        model, size = args.variants.split(":")
        bench_variants(cifar, parts, model, int(size))
    if not args.skip_defaults:
        bench_defaults(cifar, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
