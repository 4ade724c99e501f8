"""Fit and query sets by class: which classes are "in" (the fit set is drawn from them), and
which are "out" (only ever scored, and known to be out of distribution).

:func:`in_out_split` does it for any labelled source (image folders of classes, zips of them,
arrays with class names, CIFAR-10, the digits); :func:`fit_query_arrays` joins a fit file and
a query file whose class sets may differ (query-only classes are out of distribution). Features
held as shards (:class:`~ood_core.shards.FeatureShards`) stay on disk: subsets and joins are lazy.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Sequence

import numpy as np

from ..shards import blocks, concat, rows
from ._imageset import ImageSet, content_digest
from .arrays import ArraySet

Source = ImageSet | ArraySet


def class_indices(source: Source, in_classes: Sequence, arg: str = "in_classes") -> np.ndarray:
    """Indices (into ``source.class_names``) of ``in_classes``, given by name or index."""
    if isinstance(in_classes, (str, int)) or len(in_classes) == 0:
        raise ValueError(f"{arg} must be a non-empty sequence of class names, got {in_classes!r}")
    out = []
    for c in in_classes:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            ok, idx = 0 <= int(c) < len(source.class_names), int(c)
        else:
            ok = str(c) in source.class_names
            idx = source.class_names.index(str(c)) if ok else -1
        if not ok:
            raise ValueError(f"{arg}: unknown class {c!r}; valid classes are {source.class_names}")
        out.append(idx)
    return np.unique(out)


def _sample(rng: np.random.Generator, pool: np.ndarray, fraction: float, arg: str) -> np.ndarray:
    if not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 < fraction <= 1):
        raise ValueError(f"{arg} must be in (0, 1], got {fraction!r}")
    if fraction == 1:
        return np.sort(pool)
    n = int(round(fraction * len(pool)))
    if n < 1:
        raise ValueError(f"{arg}={fraction} selects no image out of {len(pool)}")
    return np.sort(rng.choice(pool, size=n, replace=False))


def _subset(source: Source, index: np.ndarray) -> Source:
    if isinstance(source, ImageSet):
        return source.subset(index)
    return dataclasses.replace(
        source, features=rows(source.features, index),
        pred_probs=None if source.pred_probs is None else source.pred_probs[index],
        labels=source.labels[index], ids=[source.ids[i] for i in index],
        split=None if source.split is None else source.split[index],
        is_ood=None if source.is_ood is None else source.is_ood[index],
        identity=content_digest("subset", source.identity, "\n".join(source.ids[i] for i in index)))


def in_out_split(source: Source, in_classes: Sequence, *, fit_fraction: float = 0.5, query_fraction: float = 1.0,
                 seed: int = 0, title: str | None = None) -> Source:
    """Fit on the ``in_classes``, score everything else, with known truth.

    Without a train/test split in ``source``: fit = a seeded ``fit_fraction`` of the in-class
    items; query = all other labelled items (the rest of the in-classes, every out-class item).
    With one: fit = a seeded ``fit_fraction`` of the *train* items of the in-classes; query = a
    seeded ``query_fraction`` of the *test* items of all classes. ``is_ood`` is True for query
    items outside ``in_classes``. Items without a class are left out and listed in ``skipped``.
    """
    in_idx = class_indices(source, in_classes)
    labels = np.asarray(source.labels)
    labelled, is_in = labels >= 0, np.isin(labels, in_idx)
    rng = np.random.default_rng(seed)
    if source.split is None:
        fit = _sample(rng, np.flatnonzero(is_in), fit_fraction, "fit_fraction")
        rest = np.setdiff1d(np.flatnonzero(labelled), fit)
        query = _sample(rng, rest, query_fraction, "query_fraction") if len(rest) else rest
    else:
        split = np.asarray(source.split).astype(str)
        fit_pool = np.flatnonzero((split == "train") & is_in)
        query_pool = np.flatnonzero((split == "test") & labelled)
        if not len(fit_pool) or not len(query_pool):
            raise ValueError(f"in_out_split: need train items of {list(in_classes)} and labelled test items; "
                             f"found {len(fit_pool)} and {len(query_pool)}")
        fit = _sample(rng, fit_pool, fit_fraction, "fit_fraction")
        query = _sample(rng, query_pool, query_fraction, "query_fraction")
    if len(fit) < 2 or len(query) < 1:
        raise ValueError(f"in_out_split: the split has {len(fit)} fit and {len(query)} query item(s); at least "
                         "2 fit items (of the in-classes) and 1 query item are needed")
    out = _subset(source, np.concatenate([fit, query]))
    names = ", ".join(source.class_names[i] for i in in_idx)
    unlabelled = [(source.ids[i], "no class: neither in nor out") for i in np.flatnonzero(~labelled)]
    return dataclasses.replace(
        out, split=np.array(["train"] * len(fit) + ["test"] * len(query), dtype=object),
        is_ood=np.concatenate([np.zeros(len(fit), bool), ~is_in[query]]),
        description=f"{title or source.description} ({len(fit):,} fit / {len(query):,} query; in: {names}; "
                    f"seed {seed})",
        skipped=list(source.skipped) + unlabelled)


def fit_query_arrays(fit: ArraySet, query: ArraySet) -> ArraySet:
    """One ArraySet from a fit-set and a query-set ArraySet (split "train" / "test"), as
    ``python -m ood_core score --fit F --query Q`` takes them.

    Classes are matched by name: a class only the query file has is out of distribution (its
    rows are the truth "out", unless the query file brings its own ``is_ood``). Query rows whose
    features equal a fit row's are counted in a warning (the same items in both files).
    """
    if fit.features.shape[1] != query.features.shape[1]:
        raise ValueError(
            f"--fit features have {fit.features.shape[1]} columns but --query features have "
            f"{query.features.shape[1]}; embed both with the same model and settings"
        )
    if (fit.pred_probs is None) != (query.pred_probs is None):
        raise ValueError("pred_probs must be in both the fit and the query file, or in neither")
    class_names = list(fit.class_names) + [c for c in query.class_names if c not in fit.class_names]
    if fit.pred_probs is not None and class_names != list(fit.class_names):
        raise ValueError(f"the query file has classes the fit file lacks ({class_names[len(fit.class_names):]}), "
                         "which its pred_probs columns cannot hold; score features without pred_probs")
    query_labels = np.array([class_names.index(query.class_names[c]) if c >= 0 else -1 for c in query.labels],
                            dtype=np.int64)
    is_ood = query.is_ood
    if is_ood is None and len(query) and np.all(query_labels >= 0) and len(class_names) > len(fit.class_names):
        is_ood = query_labels >= len(fit.class_names)
    _warn_shared_rows(fit, query)
    n_fit, n_q = len(fit), len(query)
    return ArraySet(
        concat([fit.features, query.features]),
        None if fit.pred_probs is None else np.concatenate([fit.pred_probs, query.pred_probs]),
        np.concatenate([fit.labels, query_labels]),
        [f"fit/{i}" for i in fit.ids] + [f"query/{i}" for i in query.ids],
        class_names, np.array(["train"] * n_fit + ["test"] * n_q),
        None if is_ood is None else np.concatenate([np.zeros(n_fit, bool), np.asarray(is_ood, bool)]),
        description=f"fit: {fit.description}; query: {query.description}",
        identity=f"{fit.identity}+{query.identity}",
        skipped=[(f"fit/{i}", r) for i, r in fit.skipped] + [(f"query/{i}", r) for i, r in query.skipped],
    )


# Rows hashed per block when looking for query rows equal to fit rows (8,192 x 1280 x 8 bytes: 80 MiB).
_HASH_ROWS = 8192


def _row_hashes(X) -> np.ndarray:
    """A 64-bit hash of each row's float32 bits, read a block at a time (equal rows hash equal)."""
    weights = np.random.default_rng(0).integers(1, 2**63, size=X.shape[1], dtype=np.uint64) | np.uint64(1)
    out = [(np.ascontiguousarray(block, dtype=np.float32).view(np.uint32).astype(np.uint64) * weights)
           .sum(axis=1, dtype=np.uint64) for block in blocks(X, _HASH_ROWS)]
    return np.concatenate(out) if out else np.zeros(0, np.uint64)


def _shared_rows(fit_features, query_features) -> int:
    """How many query rows equal a fit row, bit for bit (as float32), without holding either set
    whole: rows are matched by hash, and each match is checked on the rows themselves."""
    fit_hashes, query_hashes = _row_hashes(fit_features), _row_hashes(query_features)
    order = np.argsort(fit_hashes, kind="stable")
    sorted_hashes = fit_hashes[order]
    at = np.minimum(np.searchsorted(sorted_hashes, query_hashes), len(sorted_hashes) - 1)
    candidates = np.flatnonzero(sorted_hashes[at] == query_hashes)
    shared = 0
    for start in range(0, len(candidates), _HASH_ROWS):
        q = candidates[start:start + _HASH_ROWS]
        q_rows = np.ascontiguousarray(query_features[q], dtype=np.float32).view(np.uint32)
        f_rows = np.ascontiguousarray(fit_features[order[at[q]]], dtype=np.float32).view(np.uint32)
        shared += int((q_rows == f_rows).all(axis=1).sum())
    return shared


def _warn_shared_rows(fit: ArraySet, query: ArraySet) -> None:
    shared = _shared_rows(fit.features, query.features) if len(fit) and len(query) else 0
    if shared:
        warnings.warn(
            f"{shared} of {len(query)} query rows are identical to fit rows: the same items are in both files, "
            "so they are scored against themselves (a fit item's own score excludes itself; a query copy does "
            "not) and flag less than the percentile promises. Embed the fit and query images separately.",
            stacklevel=3,
        )
