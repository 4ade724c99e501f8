"""Input validation shared by every public function: one place turns user input into clean arrays."""
from __future__ import annotations

from typing import Any

import numpy as np


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"a {type(value).__name__}"


def check_shape(X: Any, name: str) -> tuple[int, int]:
    """``(n_rows, n_columns)`` of a 2-D numeric matrix, read from an array's (or a memmap's, or
    :class:`~ood_core.shards.FeatureShards`') header without touching its values; other inputs
    are checked whole by :func:`check_matrix`."""
    if not (hasattr(X, "shape") and hasattr(X, "dtype") and hasattr(X, "ndim")):
        return check_matrix(X, name).shape
    dtype = np.dtype(X.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype == bool) or np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers; got dtype {dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got {X.ndim}-D shape {tuple(X.shape)}. "
                         "Reshape a single sample with X.reshape(1, -1).")
    n, d = (int(v) for v in X.shape)
    if n < 1:
        raise ValueError(f"{name} needs at least 1 row(s); got shape {(n, d)}")
    if d == 0:
        raise ValueError(f"{name} has no columns; got shape {(n, d)}")
    return n, d


def check_matrix(X: Any, name: str, *, min_rows: int = 1) -> np.ndarray:
    """Return ``X`` as a finite 2-D float32/float64 array, or raise naming ``name``."""
    if X is None:
        raise TypeError(f"{name} is required: pass a 2-D array of shape (n_samples, n_features)")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be turned into an array: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(f"{name} must hold numbers; got {_describe(arr)}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must hold real numbers; got complex dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (n_samples, n_features); got {arr.ndim}-D shape {arr.shape}. "
            "Reshape a single sample with X.reshape(1, -1)."
        )
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} row(s); got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no columns; got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))
        r, c = bad[0]
        raise ValueError(
            f"{name} contains {len(bad)} NaN or infinite value(s), first at row {r}, column {c}; "
            "remove or impute them first"
        )
    return arr


def check_vector(x: Any, name: str, *, dtype: type | None = np.float64, min_len: int = 1) -> np.ndarray:
    """Return ``x`` as a finite 1-D array, or raise naming ``name``."""
    if x is None:
        raise TypeError(f"{name} is required: pass a 1-D array")
    arr = np.asarray(x)
    if arr.dtype == object:
        raise TypeError(f"{name} must hold numbers; got {_describe(arr)}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got {arr.ndim}-D shape {arr.shape}")
    if len(arr) < min_len:
        raise ValueError(f"{name} needs at least {min_len} value(s); got {len(arr)}")
    if dtype is not None:
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name} must hold numbers; got dtype {arr.dtype}")
        arr = arr.astype(dtype, copy=False)
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            first = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ValueError(f"{name} contains NaN or infinite values (first at position {first})")
    return arr


def check_pred_probs(pred_probs: Any, name: str = "pred_probs") -> np.ndarray:
    """Validate predicted probabilities: 2-D, >= 2 columns, entries in [0, 1], rows summing to 1."""
    P = check_matrix(pred_probs, name)
    if P.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 class columns; got shape {P.shape}")
    lo, hi = float(P.min()), float(P.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{name} entries must lie in [0, 1]; found values from {lo:.6g} to {hi:.6g}")
    sums = P.sum(axis=1)
    off = np.abs(sums - 1) > 1e-3
    if off.any():
        r = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"{name} rows must sum to 1 (within 1e-3); {int(off.sum())} row(s) do not, "
            f"first row {r} sums to {sums[r]:.6g}. Apply softmax to logits first."
        )
    return P.astype(np.float64, copy=False)


def check_labels(labels: Any, n_classes: int | None = None, name: str = "labels") -> np.ndarray:
    """Validate integer class labels in ``0..n_classes-1``."""
    if labels is None:
        raise TypeError(f"{name} is required: pass integer class labels, one per row")
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {arr.shape}")
    if len(arr) == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be integers; got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise TypeError(f"{name} must be integers; got non-integer values of dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise ValueError(f"{name} must be class indices >= 0; found {lo}")
    if n_classes is not None and hi >= n_classes:
        raise ValueError(
            f"{name} must lie in 0..{n_classes - 1} (one per pred_probs column); found {hi}"
        )
    return arr


def check_same_length(a: np.ndarray, a_name: str, b: np.ndarray, b_name: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{a_name} has {len(a)} rows but {b_name} has {len(b)}; they must match")


def check_fitted(estimator: Any, attribute: str) -> None:
    """Raise a clear error when a method is called before ``fit``."""
    if not hasattr(estimator, attribute):
        raise RuntimeError(
            f"This {type(estimator).__name__} is not fitted yet: call fit first, then this method"
        )


def check_int(value: Any, name: str, lo: int, hi: int | None = None) -> int:
    """Return ``value`` as an int in ``lo..hi`` (``hi=None``: no upper bound), or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < lo or (hi is not None and value > hi):
        allowed = f"an integer >= {lo}" if hi is None else f"an integer in {lo}..{hi}"
        raise ValueError(f"{name} must be {allowed}; got {value!r}")
    return int(value)


def check_number(value: Any, name: str) -> float:
    """Return ``value`` as a finite float, or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)
