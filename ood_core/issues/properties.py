"""Image-quality issues from cheap per-image statistics, relative to the dataset.

:func:`image_properties` gives the raw statistics of one decoded image (see
:data:`~ood_core.issues._image_pass.PROPERTY_COLUMNS`); :func:`property_scores` turns a set's
statistics into scores in [0, 1] (lower = more severe) relative to the set's median image.
Thresholds were chosen on 3,000 CIFAR-10 training images (tests/test_issues.py): each flags under
0.5% of them, except ``grayscale`` (CIFAR-10 holds about 1.4% grayscale pictures).
"""
from __future__ import annotations

import numpy as np

from ._image_pass import PROPERTY_COLUMNS, image_record
from ._registry import IssueScores, IssueType, issue_family

W, H, P05, P95, SHARP, ENTROPY, SPREAD = range(len(PROPERTY_COLUMNS))


def image_properties(img) -> np.ndarray:
    """Raw statistics of one decoded image (PIL image or uint8 array), float64, in the order of
    :data:`PROPERTY_COLUMNS`: width, height (of the file), 5th and 95th brightness percentiles,
    sharpness, entropy, colour spread. Computed on a copy of at most 64 pixels a side."""
    return image_record(img, pixel_digest=False)[0]


def _ratio(x: np.ndarray, ref: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(x / ref if ref > 0 else np.where(x > 0, 1.0, 0.0), 0.0, 1.0)


@issue_family(
    "properties",
    IssueType("dark", "Dark images", "properties", 0.4,
              "score = 95th brightness percentile / the dataset's median of it: flagged when even the brightest "
              "pixels are under 40% as bright as in the typical image (0.5% of CIFAR-10 scores under 0.49)",
              "much darker than the typical image of the data"),
    IssueType("light", "Light images", "properties", 0.4,
              "score = (255 - 5th brightness percentile) / the same for the median image: flagged when even the "
              "darkest pixels are washed out to 40% of the typical room left (0.5% of CIFAR-10 under 0.55)",
              "much lighter (washed out) than the typical image"),
    IssueType("blurry", "Blurry images", "properties", 0.35,
              "score = sharpness (Laplacian standard deviation per unit of contrast, on a 64 px copy) / the "
              "median: flagged at under 35% of the typical edge strength (0.5% of CIFAR-10 under 0.44)",
              "much fewer sharp edges than the typical image, for its contrast"),
    IssueType("low_information", "Low-information images", "properties", 0.6,
              "score = entropy of the brightness histogram / the median: flagged under 60% of the typical "
              "information (about 4.3 of 7.2 bits on CIFAR-10, where 0.5% score under 0.69)",
              "few distinct brightness levels (blank, nearly uniform or posterised)"),
    IssueType("grayscale", "Grayscale images", "properties", 0.1,
              "score = colour spread (mean of max - min over R, G, B) / 10 grey levels: flagged under 1 level, "
              "i.e. a grey picture stored as colour (JPEG colour noise stays under 1). Only where the data are "
              "mostly colour (half the images or more spread 1 level or more); in grayscale data no image is "
              "scored",
              "no colour: the three channels are (almost) equal"),
    IssueType("odd_size", "Odd sizes", "properties", 0.25,
              "score = min(r, 1/r) with r = sqrt(width x height) / the median's: flagged when 4 times smaller "
              "or larger in side than the typical image",
              "much smaller or larger than the typical image"),
    IssueType("odd_aspect_ratio", "Odd aspect ratios", "properties", 0.5,
              "score = min(a, 1/a) with a = aspect ratio / the median aspect ratio: flagged when twice as "
              "elongated (or squat) as the typical image",
              "much more elongated than the typical image"),
)
def property_issues(analysis, stats=None) -> dict[str, IssueScores]:
    """The seven property types over ``analysis.ids`` from the images' :class:`ImageStats`."""
    if stats is None:
        raise ValueError("image properties need the images; this analysis holds precomputed features")
    return property_scores(stats.properties, stats.ok)


def property_scores(properties: np.ndarray, ok: np.ndarray | None = None) -> dict[str, IssueScores]:
    """Scores of the seven property types from raw statistics (N, 7); rows not ``ok`` get NaN.
    Medians are taken over the ``ok`` rows."""
    from ._registry import ISSUE_TYPES

    X = np.asarray(properties, dtype=np.float64)
    ok = np.isfinite(X).all(axis=1) if ok is None else np.asarray(ok, bool) & np.isfinite(X).all(axis=1)
    med = np.median(X[ok], axis=0) if ok.any() else np.full(X.shape[1], np.nan)
    side = np.sqrt(X[:, W] * X[:, H])
    aspect = X[:, W] / np.maximum(X[:, H], 1)
    med_side = float(np.median(side[ok])) if ok.any() else 1.0
    med_aspect = float(np.median(aspect[ok])) if ok.any() else 1.0
    r = side / med_side
    a = aspect / med_aspect
    raw = {
        "dark": (_ratio(X[:, P95], med[P95]), lambda i: f"brightest pixels at {X[i, P95]:.0f} of 255 "
                                                        f"(typical: {med[P95]:.0f})"),
        "light": (_ratio(255 - X[:, P05], 255 - med[P05]), lambda i: f"darkest pixels at {X[i, P05]:.0f} of 255 "
                                                                       f"(typical: {med[P05]:.0f})"),
        "blurry": (_ratio(X[:, SHARP], med[SHARP]), lambda i: f"sharpness {X[i, SHARP]:.2f} "
                                                              f"(typical: {med[SHARP]:.2f})"),
        "low_information": (_ratio(X[:, ENTROPY], med[ENTROPY]), lambda i: f"entropy {X[i, ENTROPY]:.1f} bits "
                                                                           f"(typical: {med[ENTROPY]:.1f})"),
        "grayscale": (np.clip(X[:, SPREAD] / 10.0, 0, 1), lambda i: f"colour spread {X[i, SPREAD]:.2f} grey levels"),
        "odd_size": (np.minimum(r, 1 / np.maximum(r, 1e-12)),
                     lambda i: f"{X[i, W]:.0f}x{X[i, H]:.0f} px (typical side: {med_side:.0f} px)"),
        "odd_aspect_ratio": (np.minimum(a, 1 / np.maximum(a, 1e-12)),
                             lambda i: f"aspect ratio {aspect[i]:.2f} (typical: {med_aspect:.2f})"),
    }
    out = {}
    for name, (score, say) in raw.items():
        score = np.where(ok, np.clip(score, 0.0, 1.0), np.nan)
        thr = ISSUE_TYPES[name].threshold
        detail = [say(i) if ok[i] else "" for i in range(len(score))]
        info = {"median": {c: float(v) for c, v in zip(PROPERTY_COLUMNS, med)}}
        if name == "grayscale" and ok.any():
            colour = int((score[ok] >= thr).sum())
            if colour < ok.sum() / 2:  # grey is the norm of these data, not an issue
                score, detail = np.full(len(score), np.nan), [""] * len(score)
                info["unavailable"] = (f"the data are mostly grayscale ({int(ok.sum()) - colour:,} of "
                                       f"{int(ok.sum()):,} images): grey is their norm, not an issue")
        out[name] = IssueScores(name, score, thr, detail, info)
    return out
