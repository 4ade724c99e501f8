"""The planted folder: CIFAR-10 training images in a train/test class folder with known problems planted.

One writer shared by the planted fixture of tests/test_issues.py (small: 50 train + 15 test per class)
and bench/planted.py (realistic sizes, other seeds, other confusable pairs). Planted:

- ``exact_duplicate``: 6 byte-for-byte copies of train images (3 within train, 3 into test: leakage);
- ``near_duplicate``: 6 train images resized to 28 px and saved at JPEG quality 70 (3 train, 3 test);
- ``near_duplicate (crop)``: 6 train images with 5-15% of one side or of all sides cut off, kept at
  their size (JPEG quality 90);
- ``dark``: 6 new images at a quarter of their brightness;
- ``label (B as A)``: ``n_confused`` (at most 100) images of class B filed under class A (the
  confusable pair);
- ``label``: 6 images of class B filed under the two other classes (B unlike them).

Every class folder holds only CIFAR-10 training images (``/train/`` in the zip); the plants are drawn
from images no clean item uses.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def write_planted_folder(cifar_zip, root, classes=("cat", "dog", "airplane", "ship"), *, n_train: int = 50,
                         n_test: int = 15, n_confused: int = 8, seed: int | None = None) -> dict[str, set[str]]:
    """Write the planted folder under ``root`` (``train/<class>/`` and ``test/<class>/``) from the
    CIFAR-10 JPEG zip ``cifar_zip``. ``classes``: 4 names, the first two the confusable pair (images
    of ``classes[1]`` are filed as ``classes[0]``; others of ``classes[1]`` under ``classes[2]`` and
    ``classes[3]``). ``seed``: None takes each class's images in name order (the test fixture), else
    a seeded shuffle. Returns {issue: set of planted relative paths}; the confusable pair's plants
    are under ``"label (B as A)"``, the others under ``"label"``."""
    if not 0 <= n_confused <= 100:
        raise ValueError(f"n_confused must lie in 0..100; got {n_confused}")
    if len(classes) != 4:
        raise ValueError(f"classes must name 4 CIFAR-10 classes; got {classes!r}")
    root = Path(root)
    zf = zipfile.ZipFile(cifar_zip)
    names = sorted(n for n in zf.namelist() if n.endswith(".jpg"))
    by_class = {c: [n for n in names if f"/train/{c}/" in n] for c in classes}
    if seed is not None:
        rng = np.random.default_rng(seed)
        by_class = {c: [v[i] for i in rng.permutation(len(v))] for c, v in by_class.items()}
    n_clean = n_train + n_test
    if any(len(v) < n_clean + 41 for v in by_class.values()) or len(by_class[classes[1]]) < n_clean + 241:
        raise ValueError(f"{cifar_zip} has too few training images per class for {n_train} + {n_test} and the plants")
    files: dict[str, bytes] = {}
    for c in classes:
        for k, n in enumerate(by_class[c][:n_clean]):
            files[f"{'train' if k < n_train else 'test'}/{c}/{k:03d}.jpg"] = zf.read(n)
    # plants come from images no clean item uses: darkened ones from n_clean + 35 on, the mislabelled
    # ones from n_clean + 135 (the pair) and n_clean + 235 (the others)
    plants: dict[str, set[str]] = {"exact_duplicate": set(), "near_duplicate": set(), "dark": set(), "label": set()}
    for k in range(6):  # exact copies: 3 within train, 3 from train into test (leakage)
        c = classes[k % 4]
        rel = f"{'train' if k < 3 else 'test'}/{c}/copy{k}.jpg"
        files[rel] = files[f"train/{c}/{10 + k:03d}.jpg"]
        plants["exact_duplicate"].add(rel)
    for k in range(6):  # resized to 28 px and re-encoded at JPEG quality 70
        c = classes[k % 4]
        img = Image.open(io.BytesIO(files[f"train/{c}/{20 + k:03d}.jpg"])).convert("RGB")
        rel = f"{'train' if k < 3 else 'test'}/{c}/small{k}.jpg"
        files[rel] = _jpeg(img.resize((28, 28), Image.Resampling.BILINEAR), 70)
        plants["near_duplicate"].add(rel)
    plants["near_duplicate (crop)"] = set()
    for k, (share, where) in enumerate([(0.05, "left"), (0.1, "top"), (0.15, "right"), (0.05, "centre"),
                                        (0.1, "centre"), (0.15, "centre")]):  # light crops, kept at their size
        c = classes[k % 4]
        img = Image.open(io.BytesIO(files[f"train/{c}/{30 + k:03d}.jpg"])).convert("RGB")
        cut = round(32 * share)
        box = {"left": (cut, 0, 32, 32), "top": (0, cut, 32, 32), "right": (0, 0, 32 - cut, 32),
               "centre": (cut // 2, cut // 2, 32 - (cut - cut // 2), 32 - (cut - cut // 2))}[where]
        rel = f"train/{c}/crop{k}.jpg"
        files[rel] = _jpeg(img.crop(box), 90)
        plants["near_duplicate (crop)"].add(rel)
    for k in range(6):  # darkened new images
        c = classes[k % 4]
        img = np.asarray(Image.open(io.BytesIO(zf.read(by_class[c][n_clean + 35 + k]))).convert("RGB"), dtype=np.float64)
        rel = f"train/{c}/dark{k}.jpg"
        files[rel] = _jpeg(Image.fromarray((img * 0.25).astype(np.uint8)), 95)
        plants["dark"].add(rel)
    a, b = classes[0], classes[1]
    pair = f"label ({b} as {a})"
    plants[pair] = set()
    for k in range(n_confused):  # the confusable pair: b filed as a
        rel = f"train/{a}/{b}{k}.jpg"
        files[rel] = zf.read(by_class[b][n_clean + 135 + k])
        plants[pair].add(rel)
    for k in range(6):  # b filed under the two unlike classes
        rel = f"train/{classes[2 + k % 2]}/{b}{k}.jpg"
        files[rel] = zf.read(by_class[b][n_clean + 235 + k])
        plants["label"].add(rel)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return plants


def _grey(path) -> bool:
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean()) < 2.0


def originals_of(analysis, plants: set[str]) -> set[str]:
    """The items each planted copy was made from (their duplicate sets' other members)."""
    out = set()
    for s in analysis.duplicate_sets():
        members = {analysis.ids[m] for m in s.members}
        if members & plants:
            out |= members - plants
    return out


def planted_counts(analysis, plants: dict[str, set[str]], root, types, table=None) -> dict[str, tuple[int, int, int, int]]:
    """Per row (each type of ``types``, each followed by its kinds of plant such as ``label (B as A)``
    or ``near_duplicate (crop)``): (found, planted, false flags, clean items) at each type's default
    threshold. A copy's original is flagged with it and is right to be; a plant of another kind of the
    same type is not a false flag; CIFAR-10's own grey pictures are right to be flagged ``grayscale``."""
    table = analysis.issues() if table is None else table
    rows = []
    for t in types:
        rows += [t] + [k for k in plants if k.startswith(f"{t} (")]
    label_plants = set().union(*(v for k, v in plants.items() if k.split()[0] == "label"))
    out = {}
    for row in rows:
        issue = row.split()[0]
        flagged = set(table["id"][(table["issue"] == issue) & table["flagged"]])
        planted_here = plants.get(row, set())
        for other, members in plants.items():  # plants of another kind of this type are not false flags
            if other != row and other.split()[0] == issue:
                flagged -= members | (originals_of(analysis, members) if "duplicate" in issue else set())
        expected = planted_here | (originals_of(analysis, planted_here) if "duplicate" in issue else set())
        if issue == "grayscale":
            expected = {i for i in flagged if _grey(Path(root) / i)}
        if issue == "label":
            expected = label_plants
        out[row] = (len(flagged & planted_here), len(planted_here), len(flagged - expected),
                    len(analysis.ids) - len(expected))
    return out
