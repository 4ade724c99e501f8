"""Benchmark: what checking a batch against a saved reference costs beyond embedding the batch.

A reference of ``--n-fit`` (default 50,000) 1280-d float32 features in 10 classes (``--data cifar``,
the default: CIFAR-10's training images with the default model, bench/_cifar_features.py; ``synthetic``:
Gaussian clusters) is built directly from its state (fitting it here would time the fit's self-search and the classifier's
cross-validation, which a check never repeats): fit features, the KNN state, a logistic regression's
arrays (10 classes) and the out-of-sample pred_probs, thresholds at the 5th percentile. It is
saved, loaded, and a batch of ``--batch`` (default 1,000) feature rows (CIFAR-10 test images, or
synthetic rows) is checked from a ``.npz``,
as ``Reference.check`` takes precomputed features (the KNN state is synthetic, so the flags are
meaningless; the work is the same): the KNN scores against every fit row (exact
search), the classifier's pred_probs and the prediction scores, the flags, the Beta-binomial tests
per scorer and per predicted class, and the history row. Median of ``--repeats`` checks.

Run: ``python bench/reference_check.py`` (about a minute, most of it writing and digesting the 250 MB
folder).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ood_core.reference import REFERENCE_FORMAT, Reference  # noqa: E402
from ood_core.reference._folder import embedding_format as _embedding_format, package_version  # noqa: E402


def synthetic_reference(X: np.ndarray, labels: np.ndarray, k: int, classes: int, rng: np.random.Generator) -> Reference:
    """A reference over the fit features ``X`` with a synthetic KNN state, classifier and pred_probs."""
    n, d = X.shape
    distances = np.sort(rng.uniform(0.2, 0.6, size=(n, k)), axis=1)
    mean_distance = distances.mean(axis=1)
    scale = float(np.median(mean_distance))
    feature_scores = np.exp(-mean_distance / scale)
    pred_probs = rng.dirichlet(np.ones(classes), size=n)
    confident = np.array([pred_probs[labels == c, c].mean() for c in range(classes)])
    arrays = {
        "fit_features": X, "fit_ids": np.array([f"fit/{i}" for i in range(n)]), "fit_labels": labels.astype(np.int64),
        "feature_fit_distances": mean_distance, "feature_knn_distances": distances,
        "feature_knn_indices": rng.integers(0, n, size=(n, k)).astype(np.int64),
        "prediction_fit_pred_probs": pred_probs, "prediction_confident_thresholds": confident,
        "classifier_coef": (rng.normal(size=(classes, d)) * 0.01).astype(np.float32),
        "classifier_intercept": np.zeros(classes, np.float32), "classifier_classes": np.arange(classes),
    }
    settings = {
        "format": REFERENCE_FORMAT, "package_version": package_version(), "embedding_format": _embedding_format(),
        "created_at": "", "source": "synthetic", "source_identity": "synthetic", "in_classes": None, "n_fit": n,
        "n_features": d, "class_names": [f"c{c}" for c in range(classes)], "skipped": 0, "percentile": 5.0,
        "embedding": None, "weights": None, "precomputed": "synthetic", "scores": {},
        "feature": {"k": k, "t": 1.0, "metric": "cosine", "scale": scale,
                    "threshold": float(np.percentile(feature_scores, 5))},
        "prediction": {"method": "entropy", "adjust": True, "n_classes": classes, "threshold": None,
                       "classifier": {"model": "LogisticRegression", "C": 0.001, "selected_by": "synthetic"}},
    }
    settings["feature"]["below"] = int(np.count_nonzero(feature_scores < settings["feature"]["threshold"]))
    from ood_core.reference._frozen import frozen_pred_scorer as _pred_scorer

    pred_scores = _pred_scorer(settings["prediction"], arrays).fit_scores_
    settings["prediction"]["threshold"] = float(np.percentile(pred_scores, 5))
    settings["prediction"]["below"] = int(np.count_nonzero(pred_scores < settings["prediction"]["threshold"]))
    return Reference(settings, arrays, device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-fit", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", choices=["cifar", "synthetic"], default="cifar")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    if args.data == "cifar":
        from _cifar_features import cifar_features

        train, train_labels, test, _ = cifar_features()
        X, labels, batch_rows = train[:args.n_fit], train_labels[:args.n_fit], test[:args.batch]
    else:
        centres = rng.normal(size=(10, args.dim)).astype(np.float32)
        labels = rng.integers(0, 10, args.n_fit)
        X = (centres[labels] + rng.normal(scale=2.0, size=(args.n_fit, args.dim))).astype(np.float32)
        batch_labels = rng.integers(0, 10, args.batch)
        batch_rows = (centres[batch_labels] + rng.normal(scale=2.0, size=(args.batch, args.dim))).astype(np.float32)
    ref = synthetic_reference(X, labels, 10, 10, rng)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ref.save(Path(tmp) / "ref")
        t1 = time.perf_counter()
        loaded = Reference.load(Path(tmp) / "ref", device="cpu")
        t2 = time.perf_counter()
        batch = Path(tmp) / "batch.npz"
        np.savez(batch, features=batch_rows)
        times, cpu = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            loaded.check(batch, name="bench")
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        # The KNN state is synthetic, so the flags mean nothing here; only the time does.
        print(f"{args.data} reference {len(X):,} x {X.shape[1]}, batch {len(batch_rows):,}: save {t1 - t0:.1f} s, load (digests, "
              f"arrays) {t2 - t1:.1f} s, check median {np.median(times):.2f} s wall (min {min(times):.2f}, "
              f"max {max(times):.2f}), median {np.median(cpu):.2f} CPU-s on {os.cpu_count()} cores; "
              f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
