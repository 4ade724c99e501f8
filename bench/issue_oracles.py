"""Agreement of ood_core.issues with the oracles on the CIFAR-10 demo split (docs/BENCHMARKS.md).

    python bench/issue_oracles.py [--model lite0] [--image-size 96] [--device cpu]

The demo split (5,000 fit animal training images, 1,000 test images of all classes) analyzed with the
given embedding; label issues against cleanlab's ``find_label_issues`` on the same out-of-sample
pred_probs (ranked by self-confidence: overlap of the top k, k = the number cleanlab flags; Jaccard of
the flagged sets), and the image types against Cleanvision's on the same files (flagged by each, by
both), when Cleanvision is installed. Both oracles are AGPL and used here only, never by ood_core.
Needs OOD_CIFAR10 or ../shared/data/cifar10-jpeg.zip. Embeddings are cached under bench/results/cache.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ood_core  # noqa: E402
from ood_core.sources import cifar10, demo_split  # noqa: E402

SHARED = ["dark", "light", "blurry", "low_information", "grayscale", "odd_size", "odd_aspect_ratio",
          "exact_duplicates", "near_duplicates"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lite0")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    path = os.environ.get("OOD_CIFAR10") or str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip")
    start = time.perf_counter()
    a = ood_core.analyze(demo_split(cifar10(path)), model=args.model, image_size=args.image_size, device=args.device,
                         cache_dir=ROOT / "bench" / "results" / "cache")
    a.issues()
    print(f"analyzed and issues computed in {time.perf_counter() - start:.0f} s: {a.source}, "
          f"{a.embed_config['model']} at {a.embed_config['image_size']} px\n")
    from cleanlab.filter import find_label_issues

    labels = np.searchsorted(a.pred_classes, a.labels[a.fit_index])
    theirs = find_label_issues(labels, np.asarray(a.fit_pred_probs), return_indices_ranked_by="self_confidence")
    ours_scores = a.issue_scores("label").scores[a.fit_index]
    k = len(theirs)
    top = np.argsort(ours_scores, kind="stable")[:k]
    flagged = np.flatnonzero(a.issue_scores("label").flagged()[a.fit_index])
    print(f"| label issues (fit set, {len(a.fit_index)} items) | value |\n|---|---|")
    print(f"| cleanlab find_label_issues flags | {k} |\n| ours flags | {len(flagged)} |")
    print(f"| top-{k} overlap | {len(set(top) & set(theirs)) / max(k, 1):.2f} |")
    print(f"| Jaccard of the flagged sets | {len(set(flagged) & set(theirs)) / max(len(set(flagged) | set(theirs)), 1):.2f} |\n")
    try:
        import cleanvision
    except ImportError:
        print("Cleanvision is not installed: no image-type comparison")
        return
    with tempfile.TemporaryDirectory() as tmp:
        for i, item_id in enumerate(a.ids):  # the same files, written out (Cleanvision reads a folder)
            target = Path(tmp) / item_id
            target.parent.mkdir(parents=True, exist_ok=True)
            a.items.load_image(i).save(target.with_suffix(".png"))
        lab = cleanvision.Imagelab(data_path=tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lab.find_issues({t: {} for t in SHARED}, n_jobs=1, verbose=False)
        rel = [str(Path(p).relative_to(tmp).with_suffix(".jpg")) for p in lab.issues.index]
        ids = [str(Path(i).with_suffix(".jpg")) for i in a.ids]
    print(f"| type | ours | Cleanvision {cleanvision.__version__} | both |\n|---|---|---|---|")
    for t in SHARED:
        name = {"exact_duplicates": "exact_duplicate", "near_duplicates": "near_duplicate"}.get(t, t)
        their = {r for r, f in zip(rel, lab.issues[f"is_{t}_issue"]) if f}
        ours = {ids[i] for i in np.flatnonzero(a.issue_scores(name).flagged())}
        print(f"| {name} | {len(ours)} | {len(their)} | {len(ours & their)} |")


if __name__ == "__main__":
    main()
