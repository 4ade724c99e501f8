"""Data issues on the planted folder at a realistic size, with the default settings (docs/BENCHMARKS.md).

    python bench/planted.py                                          # cat/dog/airplane/ship, seed 0
    python bench/planted.py --seed 1
    python bench/planted.py --classes automobile,truck,bird,frog    # trucks filed as automobiles
    python bench/planted.py --candidates                             # + other label scores
    python bench/planted.py --sweep --sheet docs/planted_label_errors.png   # + the label threshold dragged

The folder of tests/planted_folder.py (the test fixture's writer) with ``--n-train`` train and
``--n-test`` test CIFAR-10 images per class: 6 exact copies (3 into test), 6 copies resized to 28 px
at JPEG quality 70, 6 darkened images, ``--n-confused`` images of the second class filed as the first
and 6 filed under the two other classes. Embedded with the default model and image size (or
``--model`` / ``--image-size``), every type at its default threshold. Prints per issue type found /
planted and the false flags among the clean items, then cleanlab's ``find_label_issues`` (AGPL,
used here only) on the same out-of-sample pred_probs: what it finds of the planted label errors, its
false flags among clean fit items, and the overlap with ours. ``--candidates``: other label scores
on the same folder (margin, per-class-threshold ratio, other regularisation, the mean of the pred_probs
and the 5 nearest fit items' labels), by AUROC and average precision against the planted label errors
and at the confident-learning count of their own pred_probs. ``--sweep``: the label threshold dragged
until 10, 12, ... 15 of the confused pair are flagged, and the clean items flagged with them.
``--sheet PNG``: the confused-pair plants and the lowest-scored clean items of the first class, each
with its label score (a contact sheet, images enlarged 4x). Embeddings are cached under
bench/results/cache. Needs OOD_CIFAR10 or ../shared/data/cifar10-jpeg.zip.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/planted.py` puts only bench/ on sys.path
    sys.path.insert(0, str(ROOT))

import ood_core  # noqa: E402
from tests.planted_folder import planted_counts, write_planted_folder  # noqa: E402

TYPES = ["exact_duplicate", "near_duplicate", "label", "dark", "light", "blurry", "low_information", "grayscale",
         "odd_size", "odd_aspect_ratio"]


def cleanlab_rows(analysis, plants: dict[str, set[str]]) -> list[str]:
    """Markdown rows: ours and cleanlab's find_label_issues on the same fit pred_probs, per kind of
    planted label error, the false flags among clean fit items, and the overlap of the flagged sets."""
    from cleanlab.filter import find_label_issues

    a = analysis
    fit_ids = np.asarray(a.ids, dtype=object)[a.fit_index]
    labels = np.searchsorted(a.pred_classes, a.labels[a.fit_index])
    theirs = set(fit_ids[find_label_issues(labels, np.asarray(a.fit_pred_probs))])
    ours = set(fit_ids[a.issue_scores("label").flagged()[a.fit_index]])
    kinds = [k for k in plants if k.startswith("label")]
    every = set().union(*(plants[k] for k in kinds))
    clean = set(fit_ids) - every
    rows = [f"| label issues, fit set ({len(fit_ids)} items) | ours | cleanlab | both |", "|---|---|---|---|"]
    for k in kinds:
        rows.append(f"| {k}: found / {len(plants[k])} | {len(ours & plants[k])} | {len(theirs & plants[k])} | "
                    f"{len(ours & theirs & plants[k])} |")
    rows.append(f"| false flags (of {len(clean)} clean) | {len(ours & clean)} | {len(theirs & clean)} | "
                f"{len(ours & theirs & clean)} |")
    jaccard = len(ours & theirs) / max(len(ours | theirs), 1)
    rows.append(f"| flagged (Jaccard {jaccard:.2f}) | {len(ours)} | {len(theirs)} | {len(ours & theirs)} |")
    return rows


def _neighbour_labels(analysis, y: np.ndarray, k: int) -> np.ndarray:
    """Per fit item, the share of each class among its ``k`` nearest other fit items (the feature
    score's neighbours): a second out-of-sample estimate of its class."""
    _, nn = analysis.feature_scorer.kneighbors(k=k)
    K = np.zeros((len(y), len(analysis.pred_classes)))
    np.add.at(K, (np.repeat(np.arange(len(y)), k), y[nn].ravel()), 1.0)
    return K / k


def _pair_plants(plants: dict[str, set[str]]) -> set[str]:
    """The confused-pair plants (``label (B as A)``)."""
    return next(v for k, v in plants.items() if k.startswith("label ("))


def _label_plants(plants: dict[str, set[str]]) -> set[str]:
    """Every planted label error: the confused pair's and the unlike classes'."""
    return set().union(*(v for k, v in plants.items() if k.split()[0] == "label"))


def flagged_at_count(pred_probs: np.ndarray, y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """The ``n`` lowest of ``score``, where ``n`` is how many rows confident learning counts as
    confidently another class in ``pred_probs`` (per-class thresholds = mean self-confidence): the
    label type's default rule, for any score."""
    from ood_core.scorers import confident_thresholds

    r = np.arange(len(y))
    conf = np.where(pred_probs >= confident_thresholds(pred_probs, y), pred_probs, -np.inf)
    likely = conf.argmax(1)
    n = int((np.isfinite(conf[r, likely]) & (likely != y)).sum())
    flagged = np.zeros(len(y), bool)
    flagged[np.argsort(score, kind="stable")[:n]] = True
    return flagged


def candidate_rows(analysis, plants: dict[str, set[str]]) -> list[str]:
    """Markdown rows: candidate label scores on the fit set, ranked against the planted label errors
    (AUROC, average precision) and flagged at the confident-learning count of their own pred_probs."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from ood_core.scorers import confident_thresholds

    a = analysis
    fit_ids = np.asarray(a.ids, dtype=object)[a.fit_index]
    y = np.searchsorted(a.pred_classes, a.labels[a.fit_index])
    bad = np.isin(fit_ids, list(_label_plants(plants)))
    X = np.asarray(a.features[a.fit_index], dtype=np.float32)
    r = np.arange(len(y))
    held = {C: ood_core.out_of_sample_pred_probs(X, y, Cs=[C])[0] for C in (1e-3, 1e-1)}
    P = np.asarray(a.fit_pred_probs)
    t = confident_thresholds(P, y)
    others = P.copy()
    others[r, y] = -np.inf
    mix = (P + _neighbour_labels(a, y, 5)) / 2
    candidates = {  # name: (the pred_probs that set the count, the score)
        f"self-confidence (default; C={a.classifier.C:g})": (P, P[r, y]),
        "normalized margin": (P, (P[r, y] - others.max(1) + 1) / 2),
        "self-confidence / class threshold": (P, P[r, y] / t[y]),
        "self-confidence, C=0.001": (held[1e-3], held[1e-3][r, y]),
        "self-confidence, C=0.1": (held[1e-1], held[1e-1][r, y]),
        "mean of pred_probs and 5 neighbours' labels": (mix, mix[r, y]),
    }
    rows = [f"| label score (fit set, {bad.sum()} planted of {len(y)}) | AUROC | AP | flagged | found | false |",
            "|---|---|---|---|---|---|"]
    for name, (Q, score) in candidates.items():
        flagged = flagged_at_count(Q, y, score)
        n = int(flagged.sum())
        rows.append(f"| {name} | {roc_auc_score(bad, -score):.3f} | {average_precision_score(bad, -score):.3f} | {n} | "
                    f"{int((flagged & bad).sum())} | {int((flagged & ~bad).sum())} |")
    return rows


def sweep_rows(analysis, plants: dict[str, set[str]]) -> list[str]:
    """Markdown rows: the label threshold dragged until 10, 12, 13, 14 and 15 of the confused pair are
    flagged, with the clean items (no planted label error) flagged at that threshold."""
    scores = np.asarray(analysis.issue_scores("label").scores)
    ids = np.asarray(analysis.ids, dtype=object)
    pair = np.isin(ids, list(_pair_plants(plants)))
    every = _label_plants(plants)
    clean = ~np.isin(ids, list(every)) & np.isfinite(scores)
    default = analysis.issue_scores("label").flagged()
    rows = ["| label threshold | pair plants flagged | clean items flagged |", "|---|---|---|",
            f"| {analysis.issue_scores('label').threshold:.3f} (default) | {int((default & pair).sum())}/{pair.sum()} | "
            f"{int((default & clean).sum())} of {clean.sum()} ({(default & clean).sum() / clean.sum():.1%}) |"]
    for found in (10, 12, 13, 14, 15):
        t = np.sort(scores[pair])[min(found, pair.sum()) - 1]
        flagged = scores <= t
        rows.append(f"| {t:.3f} | {int((flagged & pair).sum())}/{pair.sum()} | {int((flagged & clean).sum())} of "
                    f"{clean.sum()} ({(flagged & clean).sum() / clean.sum():.1%}) |")
    return rows


def write_sheet(analysis, plants: dict[str, set[str]], root: Path, out: Path, n_clean: int = 15) -> None:
    """A contact sheet: the confused-pair plants (top row) and the ``n_clean`` lowest-scored clean
    items filed under the same class (bottom row), in label-score order, each captioned with its
    score; red captions are flagged at the default threshold."""
    from PIL import Image, ImageDraw

    issue = analysis.issue_scores("label")
    scores, flagged = np.asarray(issue.scores), issue.flagged()
    ids = np.asarray(analysis.ids, dtype=object)
    every = _label_plants(plants)
    pair = [i for i in np.argsort(scores, kind="stable") if ids[i] in _pair_plants(plants)]
    label = analysis.labels[pair[0]]
    clean = [i for i in np.argsort(scores, kind="stable")
             if analysis.labels[i] == label and ids[i] not in every and np.isfinite(scores[i])][:n_clean]
    size, caption = 128, 18
    width = max(len(pair), len(clean))
    sheet = Image.new("RGB", (width * (size + 2), 2 * (size + caption) + 10), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (row, what) in enumerate(((pair, "planted"), (clean, "clean"))):
        y = r * (size + caption + 10)
        for c, i in enumerate(row):
            with Image.open(root / ids[i]) as img:
                sheet.paste(img.convert("RGB").resize((size, size), Image.NEAREST), (c * (size + 2), y))
            draw.text((c * (size + 2) + 2, y + size + 3), f"{what} {scores[i]:.2f}",
                      fill="red" if flagged[i] else "black")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--classes", default="cat,dog,airplane,ship",
                   help="4 CIFAR-10 classes; the second's images are filed as the first (default: cat,dog,airplane,ship)")
    p.add_argument("--n-train", type=int, default=250, help="train images per class (default: 250)")
    p.add_argument("--n-test", type=int, default=50, help="test images per class (default: 50)")
    p.add_argument("--n-confused", type=int, default=15, help="images of the second class filed as the first (default: 15)")
    p.add_argument("--seed", type=int, default=0, help="which CIFAR-10 images (default: 0)")
    p.add_argument("--model", default=None, help="embedding model (default: the default setting)")
    p.add_argument("--image-size", type=int, default=None, help="image size (default: the model's default)")
    p.add_argument("--candidates", action="store_true", help="also rank candidate label scores (a few more fits)")
    p.add_argument("--sweep", action="store_true", help="also drag the label threshold over the confused pair")
    p.add_argument("--sheet", type=Path, default=None, help="write a contact sheet of the confused pair (PNG)")
    p.add_argument("--cifar10", default=None, help="CIFAR-10 zip (default: $OOD_CIFAR10, else ../shared/data/cifar10-jpeg.zip)")
    args = p.parse_args(argv)
    classes = tuple(c.strip() for c in args.classes.split(","))
    path = args.cifar10 or os.environ.get("OOD_CIFAR10") or str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip")
    options = {k: v for k, v in (("model", args.model), ("image_size", args.image_size)) if v is not None}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "planted"
        plants = write_planted_folder(path, root, classes, n_train=args.n_train, n_test=args.n_test,
                                      n_confused=args.n_confused, seed=args.seed)
        start = time.perf_counter()
        a = ood_core.analyze(root, cache_dir=ROOT / "bench" / "results" / "cache", **options)
        table = a.issues()
        seconds = time.perf_counter() - start
        counts = planted_counts(a, plants, root, TYPES, table)
        if args.sheet:
            write_sheet(a, plants, root, args.sheet)
    print(f"{len(a.ids)} items ({args.n_train} train + {args.n_test} test per class of {', '.join(classes)}, "
          f"seed {args.seed}); {a.embed_config['model']} at {a.embed_config['image_size']} px; classifier C="
          f"{a.classifier.C:g}; analysis and issues in {seconds:.0f} s\n")
    print("| issue | found / planted | false flags (of clean) |\n|---|---|---|")
    for row, (found, n, false, clean) in counts.items():
        print(f"| {row} | {f'{found}/{n}' if n else 'none planted'} | {false} of {clean} |")
    print()
    try:
        print("\n".join(cleanlab_rows(a, plants)))
    except ImportError:
        print("cleanlab is not installed: no comparison")
    if args.candidates:
        print()
        print("\n".join(candidate_rows(a, plants)))
    if args.sweep:
        print()
        print("\n".join(sweep_rows(a, plants)))
    if args.sheet:
        print(f"\ncontact sheet: {args.sheet}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
