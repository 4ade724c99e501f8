"""Near duplicates on CIFAR-10: planted crops and resized copies found, distinct images left alone.

    python bench/near_duplicates.py [--n 5000] [--per-kind 50] [--model lite0] [--image-size 96]

Writes a folder of ``--n`` seeded CIFAR-10 training images (all 10 classes, so every image has
same-class neighbours) plus ``--per-kind`` copies of distinct originals for each kind: 5, 10 and 15%
of one side cut off (left, top, right or bottom in turn), 5, 10 and 15% cut off centred (half on each
side of both axes), all saved at JPEG quality 90 at their cropped size, and resized to 28 px at JPEG
quality 70. Runs the analysis (``--model``, CPU) and ``near_duplicate`` at its default threshold;
prints a markdown table: per kind, found / planted with the crop check and with the hashes alone;
false pairs (a pair under the threshold that is not a copy with its original) among the candidate
pairs; and what the crop check costs per image (thumbnail bytes, candidate pairs checked, time).
Needs OOD_CIFAR10 or ../shared/data/cifar10-jpeg.zip.
"""
from __future__ import annotations

import argparse
import dataclasses
import io
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ood_core  # noqa: E402
from ood_core.issues import duplicates  # noqa: E402
from ood_core.issues._crops import THUMB  # noqa: E402

KINDS = [("side", 0.05), ("side", 0.10), ("side", 0.15), ("centred", 0.05), ("centred", 0.10),
         ("centred", 0.15), ("resized 28 px, JPEG q70", None)]


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _copy(img: Image.Image, kind: str, share: float | None, k: int) -> bytes:
    w, h = img.size
    if share is None:
        return _jpeg(img.resize((28, 28), Image.Resampling.BILINEAR), 70)
    if kind == "centred":
        cw, ch = round(w * share), round(h * share)
        return _jpeg(img.crop((cw // 2, ch // 2, w - (cw - cw // 2), h - (ch - ch // 2))), 90)
    cut = round((w if k % 2 == 0 else h) * share)
    box = [(cut, 0, w, h), (0, cut, w, h), (0, 0, w - cut, h), (0, 0, w, h - cut)][k % 4]
    return _jpeg(img.crop(box), 90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--per-kind", type=int, default=50)
    parser.add_argument("--model", default="lite0")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", help="also write the candidate pairs (ids, score, kind, planted) to this .npz")
    args = parser.parse_args()
    path = os.environ.get("OOD_CIFAR10") or str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.zip")
    zf = zipfile.ZipFile(path)
    names = sorted(n for n in zf.namelist() if "/train/" in n and n.endswith(".jpg"))
    rng = np.random.default_rng(args.seed)
    pick = [names[i] for i in rng.choice(len(names), args.n, replace=False)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        rel_of = {}
        for n in pick:
            rel = n.split("/train/", 1)[1]
            rel_of[n] = rel
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(zf.read(n))
        originals = rng.choice(args.n, args.per_kind * len(KINDS), replace=False)
        planted = {}  # copy id -> (kind label, original id)
        for j, o in enumerate(originals):
            kind, share = KINDS[j // args.per_kind]
            label = kind if share is None else f"{share:.0%} of {'one side' if kind == 'side' else 'the side, centred'}"
            orig = rel_of[pick[o]]
            rel = f"{orig.rsplit('/', 1)[0]}/copy{j:04d}.jpg"
            img = Image.open(io.BytesIO(zf.read(pick[o]))).convert("RGB")
            (root / rel).write_bytes(_copy(img, kind, share, j))
            planted[rel] = (label, orig)
        os.environ["OOD_CACHE_DIR"] = str(Path(tmp) / "cache")
        t0 = time.perf_counter()
        a = ood_core.analyze(root, model=args.model, image_size=args.image_size, device="cpu")
        stats = a.image_stats()
        embed_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        hash_only = duplicates.pair_scores(a, dataclasses.replace(stats, thumbs=None))
        hash_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        full = duplicates.pair_scores(a, stats)
        full_s = time.perf_counter() - t0
        thr = duplicates.NEAR_THRESHOLD
        ids = a.ids
        truth = {frozenset((c, o)) for c, (_, o) in planted.items()}

        def found(pairs) -> tuple[dict[str, int], list[tuple[str, str, float, str]]]:
            x, y, score, kind, _ = pairs
            close = score < thr
            hit = {frozenset((ids[i], ids[j])) for i, j in zip(x[close], y[close])}
            per = {}
            for c, (label, o) in planted.items():
                per[label] = per.get(label, 0) + (frozenset((c, o)) in hit)
            false = [(ids[i], ids[j], float(s), k) for i, j, s, k in zip(x[close], y[close], score[close], kind[close])
                     if frozenset((ids[i], ids[j])) not in truth]
            return per, false

        per_full, false_full = found(full)
        per_hash, false_hash = found(hash_only)
        n_items = len(ids)
        checked = int((full[3] != "pixels").sum())
        print(f"{args.n:,} CIFAR-10 training images + {len(planted)} planted copies ({args.per_kind} per kind); "
              f"{args.model} at {args.image_size} px, CPU; near_duplicate threshold {thr}\n")
        print("| planted copy | found / planted (hashes + crop check) | found / planted (hashes alone) |")
        print("|---|---|---|")
        for label in dict.fromkeys(v[0] for v in planted.values()):
            print(f"| {label} | {per_full[label]}/{args.per_kind} | {per_hash[label]}/{args.per_kind} |")
        print(f"| false pairs (not a copy with its original) | {len(false_full)} | {len(false_hash)} |")
        print()
        print("| cost of the crop check | value |")
        print("|---|---|")
        print(f"| thumbnail kept per image | {THUMB * THUMB} bytes ({THUMB} x {THUMB} grayscale uint8) |")
        print(f"| candidate pairs per image | {len(full[0]) / n_items:.1f} (neighbours and hash buckets) |")
        print(f"| pairs checked for crops (within {duplicates._CROP_BITS:g} hash bits) | "
              f"{checked / n_items:.1f} per image |")
        crop_ms = max(full_s - hash_s, 0.0) * 1000 / n_items
        print(f"| crop check time | {crop_ms:.2f} ms per image ({full_s:.1f} s with it, {hash_s:.1f} s hashes alone) |")
        print(f"| analysis (embedding, scores, image statistics) | {embed_s * 1000 / n_items:.1f} ms per image |")
        if args.save:
            x, y, score, kind, _ = full
            np.savez(args.save, a=np.array([ids[i] for i in x]), b=np.array([ids[j] for j in y]), score=score,
                     kind=kind, hash_score=hash_only[2], planted=np.array([frozenset((ids[i], ids[j])) in truth
                                                                           for i, j in zip(x, y)]),
                     thumbs=stats.thumbs, x=x, y=y, ids=np.array(ids))
        if false_full:
            print("\nfalse pairs with the crop check (look at them: CIFAR-10 holds near duplicates of its own):")
            for x, y, s, k in sorted(false_full, key=lambda r: r[2]):
                print(f"  {x}  {y}  score {s:.3f} ({k})")


if __name__ == "__main__":
    main()
