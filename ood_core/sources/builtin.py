"""Built-in data: the CIFAR-10 demo split, scikit-learn's digits, and the registry of named
sources that :func:`ood_core.sources.open_source` and the dashboard offer."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ._imageset import ImageSet, content_digest, pixel_set
from .cifar import cifar10
from .split import in_out_split

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
    return in_out_split(cifar, in_classes, fit_fraction=fit_fraction, query_fraction=query_fraction, seed=seed,
                        title="CIFAR-10 demo split")


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
    return in_out_split(full, list(in_classes), fit_fraction=0.5, seed=seed, title="scikit-learn digits")


@register_source("digits", "scikit-learn's bundled handwritten digits: 0-4 fit, all digits scored (no download)")
def _digits() -> ImageSet:
    return digits()


@register_source("cifar10-demo", "CIFAR-10 demo split: 5,000 animal training images fit, 1,000 test images "
                                 "of all classes scored (from OOD_CIFAR10 or the downloaded copy)")
def _cifar10_demo() -> ImageSet:
    return demo_split(cifar10())
