"""Open a source by name or path: the one place that maps what a user types to a loader."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

BUILTIN_SOURCES: dict[str, tuple[str, Callable]] = {}


def register_source(name: str, help: str):
    """Decorator adding a named built-in source (``digits``, ``cifar10-demo``, ...)."""
    def wrap(fn: Callable):
        BUILTIN_SOURCES[name] = (help, fn)
        return fn
    return wrap


@register_source("digits", "scikit-learn's bundled handwritten digits: 0-4 fit, all digits scored (no download)")
def _digits():
    from .sources import digits
    return digits()


@register_source("cifar10-demo", "CIFAR-10 demo split: 5,000 animal training images fit, 1,000 test images "
                                 "of all classes scored (path from OOD_CIFAR10)")
def _cifar10_demo():
    from .sources import cifar10, demo_split
    return demo_split(cifar10())


def list_sources() -> list[str]:
    """Names of the built-in sources."""
    return sorted(BUILTIN_SOURCES)


def open_source(spec: str):
    """A built-in name, an image folder, a zip of images, or a ``.npz``/``.npy`` of precomputed features."""
    if spec in BUILTIN_SOURCES:
        return BUILTIN_SOURCES[spec][1]()
    from .sources import image_folder, image_zip, load_arrays

    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"source {spec!r} is neither a built-in source ({', '.join(list_sources())}) nor an existing path"
        )
    if path.is_dir():
        return image_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return image_zip(path)
    if suffix in (".npz", ".npy"):
        return load_arrays(path)
    raise ValueError(
        f"source {spec!r}: expected a folder of images, a .zip of images, or a .npz/.npy of features; "
        f"got a {suffix or 'extension-less'} file"
    )


def fit_query_arrays(fit, query):
    """One ArraySet from a fit-set and a query-set ArraySet (split "train" / "test"), as
    ``python -m ood_core score --fit F --query Q`` takes them."""
    import numpy as np

    from .sources import ArraySet

    if fit.features.shape[1] != query.features.shape[1]:
        raise ValueError(
            f"--fit features have {fit.features.shape[1]} columns but --query features have "
            f"{query.features.shape[1]}; embed both with the same model and settings"
        )
    if (fit.pred_probs is None) != (query.pred_probs is None):
        raise ValueError("pred_probs must be in both the fit and the query file, or in neither")
    class_names = fit.class_names if len(fit.class_names) >= len(query.class_names) else query.class_names
    if fit.class_names and query.class_names and \
            fit.class_names[:len(query.class_names)] != query.class_names[:len(fit.class_names)]:
        raise ValueError(f"class_names differ between the fit ({fit.class_names}) and query "
                         f"({query.class_names}) files")
    features = np.concatenate([fit.features, query.features.astype(fit.features.dtype)])
    pred_probs = None if fit.pred_probs is None else np.concatenate([fit.pred_probs, query.pred_probs])
    n_fit, n_q = len(fit), len(query)
    is_ood = None
    if query.is_ood is not None:
        is_ood = np.concatenate([np.zeros(n_fit, bool), np.asarray(query.is_ood, bool)])
    return ArraySet(
        features=features, pred_probs=pred_probs,
        labels=np.concatenate([fit.labels, query.labels]),
        ids=[f"fit/{i}" for i in fit.ids] + [f"query/{i}" for i in query.ids],
        class_names=list(class_names),
        split=np.array(["train"] * n_fit + ["test"] * n_q),
        is_ood=is_ood,
        description=f"fit: {fit.description}; query: {query.description}",
        identity=f"{fit.identity}+{query.identity}",
        skipped=[(f"fit/{i}", r) for i, r in fit.skipped] + [(f"query/{i}", r) for i, r in query.skipped],
    )
