"""Precomputed features (and optional predictions / labels) loaded from ``.npz`` / ``.npy`` files,
or from a folder of feature shards (:mod:`ood_core.shards`, as ``embed --out FOLDER`` writes it),
whose features stay on disk and are read a block at a time."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._files import file_digest
from .._validation import check_same_length, check_vector
from ..shards import FeatureShards, blocks, is_shard_folder, meta_file, read_manifest, rows
from . import _io
from ._imageset import content_digest

_ARRAY_KEYS = ("features", "pred_probs", "labels", "ids", "class_names", "split", "is_ood")
# A shard folder's meta.npz: the per-row arrays above (not features) and the images that failed.
_FAILURE_KEYS = ("failed_index", "failed_path", "failed_reason")
# The arrays of one file may take at most this much memory once loaded (about 400,000 rows of
# 1280 float32 features); larger files are refused before anything is inflated.
MAX_ARRAY_BYTES = 2 * 1024**3
# An .npz entry over 64 MiB that inflates more than this many times is refused as a bomb
# (features do not compress like that; a block of zeros does).
_MAX_RATIO = 100
_MAX_NPZ_ENTRIES = 1000
_PICKLED = "holds an object (pickled) array, which is not loaded for safety"


@dataclass(eq=False)
class ArraySet:
    """Precomputed features (and optional predictions / labels) loaded from disk.

    ``skipped`` lists rows left out as (id, reason), e.g. features holding NaN.
    """

    features: np.ndarray | FeatureShards  # (N, D) float; FeatureShards (on disk) from a shard folder
    pred_probs: np.ndarray | None  # (N, K) or None
    labels: np.ndarray  # int64 (N,), -1 when unknown
    ids: list[str]
    class_names: list[str]
    split: np.ndarray | None  # "train"/"test" per row, or None
    is_ood: np.ndarray | None  # bool per row, or None
    description: str
    identity: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason) for dropped rows
    data_id: str | None = None  # identity of the whole data a subset was drawn from (kept by subsets)

    def __post_init__(self):
        if self.data_id is None:
            self.data_id = self.identity

    def __len__(self) -> int:
        return len(self.features)


def _checked(check: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run an :mod:`ood_core._validation` checker, its error re-raised as the ValueError
    ``load_arrays: <message>`` (the one error load_arrays raises)."""
    try:
        return check(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"load_arrays: {exc}") from None


def _guarded(read: Callable[[], Any], what: str, pickled: str, broken: str) -> Any:
    """``read()``, with its errors as ``load_arrays:`` ValueErrors naming ``what``: ``pickled`` when
    numpy refuses an object (pickled) array, else ``broken`` and the cause."""
    try:
        return read()
    except Exception as exc:
        if isinstance(exc, ValueError) and "allow_pickle" in str(exc):
            raise ValueError(f"load_arrays: {what} {pickled}") from None
        raise ValueError(f"load_arrays: {what} {broken} ({exc})") from exc


def _npy_size(stream, available: int, key: str, what: str) -> int:
    """Bytes the ``.npy`` array at ``stream`` takes in memory once loaded, from its header alone;
    ValueError when the header is broken, the array pickled, or promises more than ``available``."""
    try:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"npy format version {version[0]}.{version[1]} is not supported")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read_header(stream)
        header_bytes = stream.tell()
    except ValueError as exc:
        raise ValueError(f"load_arrays: {what} is not a readable .npy array ({exc})") from None
    if dtype.hasobject:
        raise ValueError(f"load_arrays: {what} {_PICKLED}; save it as numbers or fixed-width strings, "
                         "e.g. np.asarray(values, dtype=str)")
    stored = math.prod(shape) * dtype.itemsize
    if header_bytes + stored > available:
        raise ValueError(f"load_arrays: {what} declares shape {shape} of {dtype} ({_io.human_size(stored)}) but holds "
                         f"only {available - header_bytes} bytes of data; the file is truncated or tampered with")
    widened = key in ("features", "pred_probs") and dtype not in (np.float32, np.float64)
    return math.prod(shape) * 8 if widened else stored  # other numbers become float64


def _refuse_if_too_big(total: int, label: str) -> None:
    if total > MAX_ARRAY_BYTES:
        raise ValueError(f"load_arrays: the arrays in {label!r} would take {_io.human_size(total)} in memory, over the "
                         f"{_io.human_size(MAX_ARRAY_BYTES)} limit for precomputed arrays (about 400,000 rows of 1280 "
                         "float32 features); refused before reading them. Larger sets are read from disk a block "
                         "at a time as a shard folder: `ood-explorer embed IMAGES --out FOLDER`, or "
                         "ood_core.shards.ShardWriter for features you computed yourself")


def _check_npz(path: Path, label: str, keys: tuple[str, ...] = _ARRAY_KEYS) -> None:
    """Refuse an ``.npz`` whose arrays ``keys`` would be too large, look like a decompression bomb or
    promise more than their entry holds, from the zip directory and the ``.npy`` headers alone."""
    try:
        with open(path, "rb") as f:
            if _io.zip_entry_count(f, _MAX_NPZ_ENTRIES) > _MAX_NPZ_ENTRIES:
                raise ValueError(f"load_arrays: {label!r} holds more than {_MAX_NPZ_ENTRIES} entries; "
                                 f"a features file holds at most {len(keys)} arrays")
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"load_arrays: {label!r} is not a .npy or .npz file ({exc})") from None
    with zf:
        names = zf.namelist()
        members = {name.removesuffix(".npy"): name for name in names}  # as np.load maps keys
        members.update({name: name for name in names})
        total = 0
        for key in keys:
            if key not in members:
                continue
            info, what = zf.getinfo(members[key]), f"key {key!r} in {label!r}"
            if info.flag_bits & 0x1:
                raise ValueError(f"load_arrays: {what} is encrypted (password-protected); not supported")
            _refuse_if_too_big(total + info.file_size, label)
            if info.file_size > _io.MAX_IMAGE_BYTES and info.file_size > _MAX_RATIO * max(info.compress_size, 1):
                raise ValueError(
                    f"load_arrays: {what} would inflate {info.file_size // max(info.compress_size, 1):,} times, "
                    f"to {_io.human_size(info.file_size)}; refused as a likely decompression bomb (features do not "
                    f"compress more than {_MAX_RATIO}:1)")
            try:
                with zf.open(info) as member:
                    total += _npy_size(member, info.file_size, key, what)
            except (zipfile.BadZipFile, EOFError, OSError) as exc:
                raise ValueError(f"load_arrays: {what} is corrupt or truncated ({exc})") from None
            _refuse_if_too_big(total, label)


def _read_file(path: Path, label: str) -> dict[str, np.ndarray]:
    """The known arrays of a ``.npz`` (a bare ``.npy`` is ``features``); pickles are refused, and
    sizes are checked from the headers before anything is read."""
    with open(path, "rb") as f:
        magic = f.read(6)
        if magic == b"\x93NUMPY":
            f.seek(0)
            _refuse_if_too_big(_npy_size(f, os.fstat(f.fileno()).st_size, "features", repr(label)), label)
    if not (magic.startswith(b"PK") or magic == b"\x93NUMPY"):
        raise ValueError(f"load_arrays: {label!r} is not a .npy or .npz file (unknown header)")
    if magic.startswith(b"PK"):
        _check_npz(path, label)
    loaded = _guarded(lambda: np.load(path, allow_pickle=False), repr(label),
                      f"{_PICKLED}; save features as a numeric array", "is not a .npy or .npz file")
    if isinstance(loaded, np.ndarray):
        return {"features": loaded}
    with loaded:
        keys = list(loaded.files)
        if "features" not in keys:
            raise ValueError(
                f"load_arrays: {label!r} has no 'features' key (keys: {keys}); the "
                f"allowed keys are {list(_ARRAY_KEYS)}"
            )
        data = {k: _guarded(lambda: np.asarray(loaded[k]), f"key {k!r} in {label!r}",
                            f"{_PICKLED}; save it as numbers or fixed-width strings, e.g. "
                            "np.asarray(values, dtype=str)", "is unreadable")
                for k in keys if k in _ARRAY_KEYS}
    extra = [k for k in keys if k not in _ARRAY_KEYS]
    if extra:
        warnings.warn(f"load_arrays: ignoring unknown keys {extra} in {label!r}", stacklevel=3)
    return data


def _float_matrix(arr: np.ndarray, key: str) -> np.ndarray:
    """Numeric 2-D as float32/float64; unlike check_matrix, NaN/inf rows pass (they are dropped later)."""
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise ValueError(f"load_arrays: {key} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"load_arrays: {key} must be 2-D, got shape {arr.shape}")
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64)


def _per_row(data: dict[str, np.ndarray], key: str, n: int) -> np.ndarray | None:
    """``data[key]`` as a 1-D array of one entry per row of features (None when absent)."""
    if key not in data:
        return None
    arr = _checked(check_vector, data[key], key, dtype=None, min_len=0)
    if len(arr) != n:
        raise ValueError(f"load_arrays: {key} must have shape ({n},) to match features, got {arr.shape}")
    return arr


def _strings(arr: np.ndarray) -> list[str]:
    return [str(s) for s in (np.char.decode(arr, "utf-8") if arr.dtype.kind == "S" else arr).tolist()]


def load_arrays(path: str | os.PathLike, *, name: str | None = None, verify: bool = True) -> ArraySet:
    """Load precomputed features from a ``.npz`` (key ``features`` required; optional
    ``pred_probs``, ``labels``, ``ids``, ``class_names``, ``split``, ``is_ood``), a
    bare ``.npy`` of features, or a folder of feature shards (``embed --out FOLDER``:
    ``features`` is then a :class:`~ood_core.shards.FeatureShards`, read from disk a
    block at a time, never whole). Pickled (object) arrays are refused.

    Rows whose features or pred_probs hold NaN or inf are dropped (every per-row
    array stays aligned), listed in ``skipped`` as (id, reason) and counted in a
    warning; a ValueError is raised only when fewer than 2 rows remain. ``name`` is
    how the file is called in the description and messages (default: its file name).
    ``verify=False`` does not read a shard folder's features to find such rows (fast, e.g. to
    list its classes): only the images its meta records as failed are dropped.
    """
    path = Path(path)
    if path.is_dir() and is_shard_folder(path):
        return _load_shards(path, name or path.name, verify)
    if not path.is_file():
        raise ValueError(f"load_arrays: path={str(path)!r} is not a file (nor a folder of feature shards)")
    label = name or path.name
    data = _read_file(path, label)
    return _array_set(data, label, identity=file_digest(path), what="precomputed arrays")


def _load_shards(folder: Path, label: str, verify: bool = True) -> ArraySet:
    """The shard folder ``folder``: features left on disk, the per-row arrays from its ``meta.npz``,
    the images that failed to embed (NaN rows) dropped with the reason recorded for each (found by
    reading every row, a block at a time; with ``verify=False`` from the meta's record alone)."""
    try:
        manifest = read_manifest(folder)
        features = FeatureShards.open(folder)
        meta = meta_file(folder)  # present, and the one written with these shards
    except ValueError as exc:
        raise ValueError(f"load_arrays: {exc}") from None
    data: dict[str, Any] = {"features": features}
    _check_npz(meta, f"{label}/meta.npz", _ARRAY_KEYS + _FAILURE_KEYS)
    with _guarded(lambda: np.load(meta, allow_pickle=False), repr(f"{label}/meta.npz"), _PICKLED,
                  "is not a readable .npz") as loaded:
        for key in loaded.files:
            if key in _ARRAY_KEYS[1:] + _FAILURE_KEYS:
                data[key] = _guarded(lambda: np.asarray(loaded[key]), f"key {key!r} in {label}/meta.npz",
                                     _PICKLED, "is unreadable")
    reasons = {}
    if "failed_index" in data:
        index = _checked(check_vector, data["failed_index"], "failed_index", dtype=np.int64, min_len=0)
        why = _strings(data.get("failed_reason", np.array([], dtype=str)))
        reasons = {int(i): (why[j] if j < len(why) else "could not be decoded") for j, i in enumerate(index)}
    identity = content_digest("feature-shards", str(manifest.get("key")), str(manifest["n_rows"]))
    return _array_set(data, label, identity=identity, what="feature shards", reasons=reasons,
                      known_bad=None if verify else np.array(sorted(reasons), dtype=np.int64))


def _array_set(data: dict[str, Any], label: str, *, identity: str, what: str,
               reasons: dict[int, str] | None = None, known_bad: np.ndarray | None = None) -> ArraySet:
    """The checked :class:`ArraySet` of ``data`` (the arrays of one file or shard folder); ``reasons``
    says why rows known to be NaN are (by row number), for ``skipped``; ``known_bad``: the rows of
    non-finite features, when known without reading them."""
    features = _float_matrix(data["features"], "features")
    n, d = features.shape
    if n == 0 or d == 0:
        raise ValueError(f"load_arrays: features must have at least one row and column, got {features.shape}")
    pred_probs = None
    if "pred_probs" in data:
        pred_probs = _float_matrix(data["pred_probs"], "pred_probs")
        _checked(check_same_length, pred_probs, "pred_probs", features, "features")
        finite = pred_probs[np.isfinite(pred_probs)]
        if finite.size and (finite.min() < 0 or finite.max() > 1):
            raise ValueError("load_arrays: pred_probs must lie in [0, 1]")
    class_names = None
    if "class_names" in data:
        class_names = _strings(_checked(check_vector, data["class_names"], "class_names", dtype=None, min_len=0))
    labels = np.full(n, -1, dtype=np.int64)
    raw = _per_row(data, "labels", n)
    if raw is not None:
        if not np.issubdtype(raw.dtype, np.number) or (
            raw.size and not np.all(np.isfinite(raw) & (raw == np.round(raw)))
        ):
            raise ValueError(f"load_arrays: labels must be integers (-1 = unknown), got dtype {raw.dtype}")
        labels = raw.astype(np.int64)
    n_classes = len(class_names) if class_names is not None else (
        pred_probs.shape[1] if pred_probs is not None else int(labels.max(initial=-1)) + 1
    )
    if pred_probs is not None and pred_probs.shape[1] != n_classes:
        raise ValueError(
            f"load_arrays: pred_probs has {pred_probs.shape[1]} columns but class_names has {n_classes}"
        )
    if labels.size and (labels.min() < -1 or labels.max() >= n_classes):
        raise ValueError(
            f"load_arrays: labels must be -1 or in [0, {n_classes}), got values in "
            f"[{labels.min()}, {labels.max()}]"
        )
    ids = [str(i) for i in range(n)]
    raw = _per_row(data, "ids", n)
    if raw is not None:
        ids = _strings(raw)
        if len(set(ids)) != n:
            raise ValueError("load_arrays: ids must be unique")
    split = _per_row(data, "split", n)
    if split is not None:
        split = split.astype(str).astype(object)
        bad = sorted(set(split.tolist()) - {"train", "test"})
        if bad:
            raise ValueError(f"load_arrays: split values must be 'train' or 'test', got {bad[:5]}")
    is_ood = _per_row(data, "is_ood", n)
    if is_ood is not None:
        if is_ood.dtype != bool and not (np.issubdtype(is_ood.dtype, np.number) and np.isin(is_ood, (0, 1)).all()):
            raise ValueError(f"load_arrays: is_ood must be boolean (or 0/1), got dtype {is_ood.dtype}")
        is_ood = is_ood.astype(bool)
    arrays = ArraySet(features, pred_probs, labels, ids, class_names or [str(c) for c in range(n_classes)],
                      split, is_ood, description=f"{what} {label} ({n} rows, {d} features)",
                      identity=identity)
    return _drop_non_finite(arrays, label, what, reasons or {}, known_bad)


def finite_rows(X: np.ndarray | FeatureShards) -> np.ndarray:
    """Boolean mask of the rows of ``X`` holding no NaN or inf, read a block at a time."""
    if len(X) == 0:
        return np.ones(0, dtype=bool)
    return np.concatenate([np.isfinite(block).all(axis=1) for block in blocks(X)])


def _drop_non_finite(arrays: ArraySet, label: str, what: str = "precomputed arrays",
                     reasons: dict[int, str] | None = None, known_bad: np.ndarray | None = None) -> ArraySet:
    """``arrays`` without the rows whose features or pred_probs hold NaN/inf, listed in ``skipped``
    (with the reason in ``reasons`` when one is known for that row). ``known_bad``: the rows whose
    features are not finite, given instead of reading the features to find them."""
    reasons = reasons or {}
    if known_bad is None:
        ok_features = finite_rows(arrays.features)
    else:
        ok_features = np.ones(len(arrays), dtype=bool)
        ok_features[known_bad[(known_bad >= 0) & (known_bad < len(arrays))]] = False
    ok_probs = np.ones(len(arrays), bool) if arrays.pred_probs is None else np.isfinite(arrays.pred_probs).all(axis=1)
    keep = ok_features & ok_probs
    if keep.all():
        return arrays
    skipped = []
    for i in np.flatnonzero(~keep):
        why = [f"{key} row has NaN/inf" for key, ok in (("features", ok_features), ("pred_probs", ok_probs))
               if not ok[i]]
        skipped.append((arrays.ids[i], reasons.get(int(i)) or "; ".join(why)))
    n, d = arrays.features.shape
    if keep.sum() < 2:
        raise ValueError(
            f"load_arrays: only {int(keep.sum())} of {n} rows in {label!r} have finite "
            "features and pred_probs (the others hold NaN or inf); at least 2 are needed"
        )
    warnings.warn(
        f"load_arrays: dropped {len(skipped)} of {n} rows in {label!r} whose features or "
        "pred_probs hold NaN or inf; they are listed in .skipped",
        stacklevel=3,
    )

    def kept(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[keep]

    return dataclasses.replace(
        arrays, features=rows(arrays.features, np.flatnonzero(keep)), pred_probs=kept(arrays.pred_probs),
        labels=arrays.labels[keep], split=kept(arrays.split), is_ood=kept(arrays.is_ood),
        ids=[i for i, k in zip(arrays.ids, keep) if k], skipped=skipped,
        description=f"{what} {label} ({int(keep.sum())} rows, {d} features; "
                    f"{len(skipped)} rows with NaN/inf skipped)",
    )
