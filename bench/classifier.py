"""The prediction score's classifier and the Per class page: two tables that need the whole pipeline.

    python bench/classifier.py --model lite0                  # digits and the CIFAR-10 demo split
    python bench/classifier.py --model lite0 --skip-cifar     # digits only (seconds)

1. Class-conditional thresholds: the ``--percentile`` (default 5) of the fit scores taken within
   each fit class and applied to each test item by its predicted class (what the Per class page's
   "Class-conditional thresholds" does), against the global percentile: test items flagged, TPR,
   FPR and precision, for each score.
2. The classifier's regularisation: for each C in ``--cs``, the logistic regression's held-out
   (stratified 5-fold) pred_probs on the fit set judged by log loss, accuracy and error AUROC (how
   well the prediction score ranks the classifier's own mistakes first: the criterion
   ``out_of_sample_pred_probs`` chooses C by), and the prediction score's AUROC on the test set
   (not used for the choice), on the CIFAR-10 demo split (the digits with ``--skip-cifar``).

Embeddings come through the embedding cache (bench/results/cache). Needs OOD_CIFAR10 or
../shared/data/cifar10-jpeg.zip unless ``--skip-cifar``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/classifier.py` puts only bench/ on sys.path
    sys.path.insert(0, str(ROOT))

import ood_core  # noqa: E402
from ood_core.pred_probs import _error_auroc, _log_loss  # noqa: E402

CACHE = ROOT / "bench" / "results" / "cache"


def class_conditional_rows(name: str, analysis, percentile: float) -> list[str]:
    """Markdown rows: global against per-class thresholds, for each score with a predicted class."""
    predicted = analysis.predicted_classes()
    if predicted is None or analysis.is_ood is None:
        return []
    fit_labels = analysis.labels[analysis.fit_index]
    n_classes = len(analysis.class_names)
    rows = []
    for scorer in analysis.scorers:
        fit_scores, query_scores = analysis.scores(scorer)
        thresholds = {
            "global": np.full(n_classes, ood_core.percentile_threshold(fit_scores, percentile)),
            "per class": ood_core.per_class_thresholds(fit_scores, fit_labels, percentile, n_classes=n_classes),
        }
        for how, t in thresholds.items():
            m = ood_core.flag_metrics(ood_core.flag_per_class(query_scores, predicted, t), analysis.is_ood)
            rows.append(f"| {name}, {scorer}, {how} | {m['flagged']} | {m['tpr']:.3f} | {m['fpr']:.3f} | "
                        f"{m['precision']:.3f} |")
    return rows


def regularisation_rows(analysis, cs: list[float]) -> list[str]:
    """Markdown rows: per C, the held-out log loss, accuracy and error AUROC, and the test AUROC."""
    fit_x = np.asarray(analysis.features[analysis.fit_index], dtype=np.float32)
    query_x = np.asarray(analysis.features[analysis.query_index], dtype=np.float32)
    _, y = np.unique(analysis.labels[analysis.fit_index], return_inverse=True)  # classes 0..n-1, as the classifier needs
    rows = []
    for c in cs:
        held_out, classifier = ood_core.out_of_sample_pred_probs(fit_x, y, Cs=[c])
        scorer = ood_core.PredProbScorer().fit(held_out, y)
        test = ood_core.ood_metrics(scorer.score(classifier.predict_proba(query_x)), analysis.is_ood)
        accuracy = float(np.mean(held_out.argmax(1) == y))
        rows.append(f"| {c:g} | {_log_loss(held_out, y):.3f} | {accuracy:.3f} | {_error_auroc(held_out, y):.3f} | "
                    f"{test['auroc']:.3f} |")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="auto", help="embedding model (default: auto)")
    p.add_argument("--percentile", type=float, default=5.0, help="threshold percentile (default: 5)")
    p.add_argument("--cs", default="1e-5,1e-4,1e-3,1e-2,1e-1", help="the C values of the second table")
    p.add_argument("--cifar10", default=None, help="CIFAR-10 zip or folder (default: $OOD_CIFAR10, else "
                                                   "../shared/data/cifar10-jpeg.zip)")
    p.add_argument("--skip-cifar", action="store_true", help="the digits only")
    args = p.parse_args(argv)
    sources = {"digits": "digits"}
    if not args.skip_cifar:
        from models import cifar_path  # bench/models.py: $OOD_CIFAR10, else ../shared/data

        sources["CIFAR-10"] = ood_core.demo_split(ood_core.cifar10(args.cifar10 or cifar_path()))
    analyses = {name: ood_core.analyze(source, model=args.model, cache_dir=CACHE) for name, source in sources.items()}
    models = ", ".join(f"{name}: {a.embed_config['model']} {a.embed_config['image_size']} px"
                       for name, a in analyses.items())
    print(f"\n### Class-conditional thresholds at the {args.percentile:g}th percentile ({models})\n")
    print("| data, score, threshold | flagged test | TPR | FPR | precision |")
    print("|---|---:|---:|---:|---:|")
    for name, analysis in analyses.items():
        print("\n".join(class_conditional_rows(name, analysis, args.percentile)), flush=True)
    name = "CIFAR-10" if "CIFAR-10" in analyses else "digits"
    print(f"\n### The classifier's C on {name} ({models})\n")
    print("| C | held-out log loss | held-out accuracy | error AUROC (criterion) | test AUROC |")
    print("|---:|---:|---:|---:|---:|")
    print("\n".join(regularisation_rows(analyses[name], [float(c) for c in args.cs.split(",")])), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
