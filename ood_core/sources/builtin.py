"""Built-in data: the CIFAR-10 demo split, scikit-learn's digits, and the registry of named
sources that :func:`ood_core.sources.open_source` and the dashboard offer."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ._imageset import ImageSet, content_digest, pixel_set
from .cifar import cifar10

# The seed's in-distribution classes: the six animals (vehicles are out).
ANIMALS = ("bird", "cat", "deer", "dog", "frog", "horse")

# name -> (one-line help, loader taking no arguments)
BUILTIN_SOURCES: dict[str, tuple[str, Callable[[], ImageSet]]] = {}


def register_source(name: str, help: str) -> Callable[[Callable], Callable]:
    """Decorator adding a named built-in source (``digits``, ``cifar10-demo``, ...)."""
    def wrap(fn: Callable) -> Callable:
        BUILTIN_SOURCES[name] = (help, fn)
        return fn
    return wrap


def list_sources() -> dict[str, str]:
    """The built-in sources: name -> one line on what it is."""
    return {name: BUILTIN_SOURCES[name][0] for name in sorted(BUILTIN_SOURCES)}


def _class_indices(images: ImageSet, in_classes: Sequence, arg: str) -> np.ndarray:
    if isinstance(in_classes, (str, int)) or len(in_classes) == 0:
        raise ValueError(f"{arg} must be a non-empty sequence of class names, got {in_classes!r}")
    out = []
    for c in in_classes:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            ok = 0 <= int(c) < len(images.class_names)
            idx = int(c)
        else:
            ok = str(c) in images.class_names
            idx = images.class_names.index(str(c)) if ok else -1
        if not ok:
            raise ValueError(f"{arg}: unknown class {c!r}; valid classes are {images.class_names}")
        out.append(idx)
    return np.unique(out)


def _sample(rng: np.random.Generator, pool: np.ndarray, fraction: float, arg: str) -> np.ndarray:
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise ValueError(f"{arg} must be in (0, 1], got {fraction!r}")
    n = int(round(fraction * len(pool)))
    if n < 1:
        raise ValueError(f"{arg}={fraction} selects no image out of {len(pool)}")
    return np.sort(rng.choice(pool, size=n, replace=False))


def _with_split(images: ImageSet, fit: np.ndarray, query: np.ndarray, in_idx: np.ndarray,
                title: str, seed: int) -> ImageSet:
    """The ``fit`` rows (split "train") then the ``query`` rows ("test", ``is_ood`` outside ``in_idx``)."""
    out = images.subset(np.concatenate([fit, query]))
    out.split = np.array(["train"] * len(fit) + ["test"] * len(query), dtype=object)
    out.is_ood = np.concatenate([np.zeros(len(fit), bool), ~np.isin(images.labels[query], in_idx)])
    names = ", ".join(images.class_names[i] for i in in_idx)
    out.description = f"{title} ({len(fit)} fit / {len(query)} query; in: {names}; seed {seed})"
    return out


def demo_split(
    cifar: ImageSet,
    in_classes: Sequence[str] = ANIMALS,
    fit_fraction: float = 1 / 6,
    query_fraction: float = 1 / 10,
    seed: int = 0,
) -> ImageSet:
    """The seed's demo split of CIFAR-10 (or any set with a train/test split).

    fit = a seeded random ``fit_fraction`` of the *training* images of
    ``in_classes``; query = a seeded random ``query_fraction`` of the *test* images
    of all classes, with ``is_ood`` True for classes outside ``in_classes``.
    Defaults give 5,000 fit and 1,000 query images.
    """
    if not isinstance(cifar, ImageSet) or cifar.split is None:
        raise ValueError("demo_split: cifar must be an ImageSet with a train/test split, e.g. cifar10()")
    in_idx = _class_indices(cifar, in_classes, "in_classes")
    rng = np.random.default_rng(seed)
    fit_pool = np.flatnonzero((cifar.split == "train") & np.isin(cifar.labels, in_idx))
    query_pool = np.flatnonzero(cifar.split == "test")
    if not len(fit_pool) or not len(query_pool):
        raise ValueError(
            f"demo_split: need training images of {list(in_classes)} and test images; found "
            f"{len(fit_pool)} and {len(query_pool)}"
        )
    fit = _sample(rng, fit_pool, fit_fraction, "fit_fraction")
    query = _sample(rng, query_pool, query_fraction, "query_fraction")
    return _with_split(cifar, fit, query, in_idx, "CIFAR-10 demo split", seed)


def digits(in_classes: Sequence[int] = (0, 1, 2, 3, 4), seed: int = 0) -> ImageSet:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download).

    fit = a seeded half of the images of ``in_classes``; query = every other image
    (all digits), with ``is_ood`` True for digits outside ``in_classes``.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    n = len(pixels)
    full = pixel_set(pixels, [f"digits/{i:04d}" for i in range(n)], bunch.target, [str(d) for d in range(10)],
                     description="scikit-learn digits", identity=content_digest("digits", pixels.tobytes()),
                     size_hint=8)
    in_idx = _class_indices(full, list(in_classes), "in_classes")
    rng = np.random.default_rng(seed)
    in_pool = np.flatnonzero(np.isin(full.labels, in_idx))
    fit = np.sort(rng.choice(in_pool, size=len(in_pool) // 2, replace=False))
    query = np.setdiff1d(np.arange(n), fit)
    return _with_split(full, fit, query, in_idx, "scikit-learn digits", seed)


@register_source("digits", "scikit-learn's bundled handwritten digits: 0-4 fit, all digits scored (no download)")
def _digits() -> ImageSet:
    return digits()


@register_source("cifar10-demo", "CIFAR-10 demo split: 5,000 animal training images fit, 1,000 test images "
                                 "of all classes scored (path from OOD_CIFAR10)")
def _cifar10_demo() -> ImageSet:
    return demo_split(cifar10())
