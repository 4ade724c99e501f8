"""Other features for the label score on the planted folder: can anything find the dogs filed as cats?

    python bench/label_trials.py                       # cat/dog/airplane/ship, seed 0
    python bench/label_trials.py --seed 1
    python bench/label_trials.py --classes automobile,truck,bird,frog
    python bench/label_trials.py --finetune-epochs 0   # without the fine-tuning trial (about 3 min)

The folder of bench/planted.py (250 train + 50 test CIFAR-10 images per class), embedded with the
default settings. Each row gives the fit set's out-of-sample pred_probs (``out_of_sample_pred_probs``:
5-fold, C chosen as the product chooses it) from other features: the default features; the mean
of each image's features and its mirror image's (test-time flip: the mirrored folder is embedded
too); each stage of the network, average-pooled and standardised; every stage beside the default
features. Printed per row: the held-out accuracy on clean items (over the 4 classes, and cat against
dog alone), AUROC and average precision of the self-confidence against the planted label errors,
AUROC against the confused pair alone, and the pair found / clean items flagged at the
confident-learning count (the label type's default rule). The fine-tuning trial trains the whole
network (AdamW, flips and shifts, label smoothing) on 4 of 5 folds and reports the held-out
accuracies on the fifth, beside a logistic regression on the default features of the same fold.
Embeddings are cached under bench/results/cache. Needs OOD_CIFAR10 or ../shared/data/cifar10-jpeg.zip.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "bench"):  # `python bench/label_trials.py` puts only bench/ on sys.path
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import ood_core  # noqa: E402
from planted import _label_plants, _pair_plants, flagged_at_count  # noqa: E402
from tests.planted_folder import write_planted_folder  # noqa: E402

CACHE = ROOT / "bench" / "results" / "cache"


def mirror_folder(root: Path, out: Path) -> None:
    """Write every image of ``root`` mirrored left to right under ``out`` (same relative paths)."""
    from PIL import Image, ImageOps

    for path in root.rglob("*"):
        if path.is_file():
            target = out / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as img:
                ImageOps.mirror(img.convert("RGB")).save(target, quality=95)


def network_inputs(analysis, positions: np.ndarray, embedder, cfg, size: int):
    """The preprocessed images at ``positions`` as one float tensor (N, 3, size, size)."""
    import torch
    from PIL import Image

    from ood_core.embedder import _prepare

    mean = np.asarray(cfg.mean, np.float32)[:, None, None]
    std = np.asarray(cfg.std, np.float32)[:, None, None]
    rows = []
    for i in positions:
        x = _prepare(analysis.items.load_image(int(i)).convert("RGB"), size, cfg.crop_pct, Image.BICUBIC)
        rows.append((x.astype(np.float32).transpose(2, 0, 1) / 255.0 - mean) / std)  # uint8 (size, size, 3)
    return torch.from_numpy(np.stack(rows))


def stage_features(net, X, batch: int = 64) -> list[np.ndarray]:
    """Each stage's output of ``net`` on ``X``, average-pooled: one (N, channels) array per stage."""
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(X), batch):
            _, stages = net.forward_intermediates(X[s:s + batch], indices=5)
            out.append([t.mean((2, 3)).numpy() for t in stages])
    return [np.concatenate([o[j] for o in out]) for j in range(len(out[0]))]


def standardised(X: np.ndarray) -> np.ndarray:
    return (X - X.mean(0)) / (X.std(0) + 1e-6)


def finetune_fold(net, X, y, train, test, epochs: int, lr: float, seed: int = 0) -> np.ndarray:
    """Fine-tune a copy of ``net`` with a new linear head on ``train`` rows; held-out pred_probs of
    ``test`` (mean over the image and its mirror). Prints the loss and time per epoch."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = copy.deepcopy(net).train()
    head = torch.nn.Linear(net.num_features, int(y.max()) + 1)
    opt = torch.optim.AdamW([{"params": net.parameters(), "lr": lr}, {"params": head.parameters(), "lr": 10 * lr}],
                            weight_decay=1e-4)
    labels = torch.from_numpy(y)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(train)
        total = 0.0
        for s in range(0, len(order), 32):
            rows = torch.from_numpy(order[s:s + 32])
            xb = X[rows]
            flip = torch.rand(len(rows)) < 0.5
            xb[flip] = torch.flip(xb[flip], dims=[3])
            dy, dx = (int(v) for v in rng.integers(-8, 9, 2))
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = torch.nn.functional.cross_entropy(head(net.forward_head(net.forward_features(xb), pre_logits=True)),
                                                     labels[rows], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(rows)
        print(f"  epoch {epoch + 1}: loss {total / len(order):.3f}, {time.perf_counter() - start:.0f} s", flush=True)
    net.eval()
    with torch.no_grad():
        xt = X[torch.from_numpy(test)]
        logits = sum(head(net.forward_head(net.forward_features(v), pre_logits=True))
                     for v in (xt, torch.flip(xt, dims=[3])))
        return torch.softmax(logits / 2, 1).numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--classes", default="cat,dog,airplane,ship", help="4 CIFAR-10 classes (default: cat,dog,airplane,ship)")
    p.add_argument("--seed", type=int, default=0, help="which CIFAR-10 images (default: 0)")
    p.add_argument("--finetune-epochs", type=int, default=6, help="0: no fine-tuning trial (default: 6)")
    p.add_argument("--finetune-lr", type=float, default=3e-4, help="the network's learning rate (default: 3e-4)")
    p.add_argument("--cifar10", default=None, help="CIFAR-10 zip (default: $OOD_CIFAR10, else ../shared/data/cifar10-jpeg.zip)")
    args = p.parse_args(argv)
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    classes = tuple(c.strip() for c in args.classes.split(","))
    path = args.cifar10 or os.environ.get("OOD_CIFAR10") or str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "planted"
        plants = write_planted_folder(path, root, classes, n_train=250, n_test=50, n_confused=15, seed=args.seed)
        a = ood_core.analyze(root, cache_dir=CACHE)
        mirror_folder(root, Path(tmp) / "mirrored")
        m = ood_core.analyze(Path(tmp) / "mirrored", cache_dir=CACHE)
        fit = a.fit_index
        fit_ids = np.asarray(a.ids, dtype=object)[fit]
        y = np.searchsorted(a.pred_classes, a.labels[fit])
        bad, pair = np.isin(fit_ids, list(_label_plants(plants))), np.isin(fit_ids, list(_pair_plants(plants)))
        first, second = (list(a.pred_classes).index(a.class_names.index(c)) for c in classes[:2])
        features = np.asarray(a.features[fit], np.float32)
        where = {k: i for i, k in enumerate(m.ids)}
        mirrored = np.asarray(m.features, np.float32)[[where[k] for k in fit_ids]]
        embedder = ood_core.Embedder()
        cfg = embedder.config_for(a.items)
        X = network_inputs(a, fit, embedder, cfg, cfg.image_size)
        stages = [standardised(s) for s in stage_features(embedder.network, X)]

    def accuracies(P: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
        clean = ~bad[rows]
        both = clean & np.isin(y[rows], [first, second])
        pick = np.where(P[:, first] >= P[:, second], first, second)
        return (P.argmax(1) == y[rows])[clean].mean(), (pick == y[rows])[both].mean()

    trials = {"default features": features, "mean with the mirror image's features": (features + mirrored) / 2,
              **{f"stage {j + 1} ({s.shape[1]} channels), standardised": s for j, s in enumerate(stages)},
              "every stage beside the default features, standardised": np.hstack(stages + [standardised(features)])}
    r = np.arange(len(y))
    print(f"{len(fit_ids)} fit items ({', '.join(classes)}, seed {args.seed}); {bad.sum()} planted label errors, "
          f"{pair.sum()} of them {classes[1]} as {classes[0]}; {cfg.model} at {cfg.image_size} px\n")
    print(f"| features | C | accuracy (4 classes / {classes[0]} vs {classes[1]}) | AUROC | AP | pair AUROC | "
          "pair found | clean flagged |\n|---|---|---|---|---|---|---|---|")
    others = ~(bad & ~pair)
    for name, F in trials.items():
        P, clf = ood_core.out_of_sample_pred_probs(F, y)
        score = P[r, y]
        flagged = flagged_at_count(P, y, score)
        acc, acc_pair = accuracies(P, r)
        print(f"| {name} | {clf.C:g} | {acc:.3f} / {acc_pair:.3f} | {roc_auc_score(bad, -score):.3f} | "
              f"{average_precision_score(bad, -score):.3f} | {roc_auc_score(pair[others], -score[others]):.3f} | "
              f"{int((flagged & pair).sum())}/{pair.sum()} | {int((flagged & ~bad).sum())} |", flush=True)
    if args.finetune_epochs:
        train, test = next(StratifiedKFold(5, shuffle=True, random_state=0).split(features, y))
        base = LogisticRegression(C=0.01, max_iter=3000).fit(features[train], y[train]).predict_proba(features[test])
        print(f"\nFine-tuning the whole network on {len(train)} items, {args.finetune_epochs} epochs "
              f"(held out: {len(test)}):")
        tuned = finetune_fold(embedder.network, X, y, train, test, args.finetune_epochs, args.finetune_lr)
        for name, P in (("logistic regression on the default features (C=0.01)", base), ("fine-tuned", tuned)):
            acc, acc_pair = accuracies(P, test)
            print(f"  {name}: held-out accuracy {acc:.3f} over 4 classes, {acc_pair:.3f} {classes[0]} vs {classes[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
