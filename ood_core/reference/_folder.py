"""The folder a reference is saved in: its layout, the manifest of digests, and the checks that refuse a
damaged, incomplete, foreign or other-version folder (docs/REFERENCE.md, "The folder")."""
from __future__ import annotations

import functools
import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write, file_digest
from .._reference_store import HISTORY_FILES

REFERENCE_FORMAT = "ood-explorer-reference-v1"  # bump when the folder's layout or meaning changes
CARD_FORMAT = "ood-explorer-batch-card-v1"
MANIFEST_FILE = "manifest.json"
SETTINGS_FILE = "reference.json"
DEFAULT_LEVEL = 0.95  # coverage of the interval in-distribution batches fall in
# Every array a reference may hold (file = name + ".npy"), and whether it is always there.
ARRAYS = {
    "fit_features": True,  # (N, D) float32: the embedded reference images
    "fit_ids": True,  # (N,) str
    "fit_labels": True,  # (N,) int64, index into class_names, -1 when unknown
    "feature_fit_distances": True,  # (N,) float64: mean distance to the k nearest other fit rows
    "feature_knn_distances": True,  # (N, k): those k distances, sorted
    "feature_knn_indices": True,  # (N, k) int64: those k fit rows
    "pixel_mean": False,  # (D,) float32: the fit rows' mean, subtracted by the centred pixel model
    "prediction_fit_pred_probs": False,  # (N, K) float64: out-of-sample pred_probs of the fit rows
    "prediction_confident_thresholds": False,  # (K,) float64: per-class thresholds (adjust=True)
    "classifier_coef": False,  # (K or 1, D): LogisticRegression.coef_
    "classifier_intercept": False,  # (K or 1,): LogisticRegression.intercept_
    "classifier_classes": False,  # (K,) int64: class index (into class_names) of each pred_probs column
}


class ReferenceError(ValueError):
    """A saved reference cannot be used: damaged, incomplete, foreign, or written by another version."""


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    """The installed ood-explorer version ("unknown" when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ood-explorer")
    except PackageNotFoundError:
        return "unknown"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def embedding_format() -> str:
    """The embedding pipeline's version (the embedding cache's format): features of equal settings
    are equal within one."""
    from ..cache import CACHE_FORMAT

    return CACHE_FORMAT



def write_folder(folder: str | os.PathLike, settings: dict[str, Any], arrays: dict[str, np.ndarray], *,
                 overwrite: bool = False) -> tuple[Path, str]:
    """Write a reference's ``settings`` and ``arrays`` to ``folder`` (arrays as ``.npy``, settings as JSON,
    a manifest with the SHA-256 of every file), atomically: written to a temporary folder beside it and
    renamed. An existing reference is replaced only with ``overwrite``. Returns the folder and its digest
    (the SHA-256 of the manifest)."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{folder} already exists and is not empty; choose a new folder or pass "
                                  "overwrite=True")
        if not (folder / MANIFEST_FILE).is_file():
            raise FileExistsError(f"{folder} is not a saved reference (no {MANIFEST_FILE}); it is not replaced")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        files = {}
        for key, array in sorted(arrays.items()):
            atomic_write(tmp / f"{key}.npy", lambda f, a=array: np.save(f, np.asarray(a), allow_pickle=False))
        atomic_write(tmp / SETTINGS_FILE, json.dumps(settings, indent=2, sort_keys=True).encode())
        for path in sorted(tmp.iterdir()):
            files[path.name] = {"sha256": file_digest(path), "bytes": path.stat().st_size}
        manifest = {"format": REFERENCE_FORMAT, "package_version": package_version(), "files": files}
        atomic_write(tmp / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True).encode())
        if folder.is_dir():
            old = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:12]}"
            os.replace(folder, old) if any(folder.iterdir()) else folder.rmdir()
            os.replace(tmp, folder)
            if old.exists():
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder, file_digest(folder / MANIFEST_FILE)


def read_folder(folder: str | os.PathLike) -> tuple[Path, dict[str, Any], dict[str, np.ndarray], str]:
    """``(folder, settings, arrays, digest)`` of a saved reference, after checking every file against its
    manifest; :class:`ReferenceError` naming the file otherwise (see :meth:`Reference.load`)."""
    folder = Path(folder).expanduser()
    manifest_path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise ReferenceError(f"{folder} is not a folder: a saved reference is a folder")
    if not manifest_path.is_file():
        raise ReferenceError(f"{manifest_path} is missing: {folder} is not a saved reference (or is incomplete)")
    try:
        manifest = json.loads(manifest_path.read_text())
        listed = manifest["files"]
        fmt = manifest["format"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReferenceError(f"{manifest_path} is unreadable or not a reference manifest ({exc})") from None
    if fmt != REFERENCE_FORMAT:
        raise ReferenceError(f"{manifest_path}: the reference was written in format {fmt!r} (ood-explorer "
                             f"{manifest.get('package_version', '?')}); this version reads {REFERENCE_FORMAT!r}. "
                             "Fit the reference again with this version")
    present = {p.name for p in folder.iterdir()} - {MANIFEST_FILE} - set(HISTORY_FILES)
    missing = sorted(set(listed) - present)
    if missing:
        raise ReferenceError(f"{folder / missing[0]} is missing (listed in {MANIFEST_FILE}"
                             + (f"; {len(missing) - 1} more missing" if len(missing) > 1 else "") + ")")
    extra = sorted(present - set(listed))
    if extra:
        raise ReferenceError(f"{folder / extra[0]} is not part of the reference (not in {MANIFEST_FILE}); "
                             "remove it, or fit and save the reference again")
    for name, entry in sorted(listed.items()):
        if not isinstance(entry, dict) or file_digest(folder / name) != entry.get("sha256"):
            raise ReferenceError(f"{folder / name} is damaged or was replaced: its SHA-256 differs from the one "
                                 f"in {MANIFEST_FILE}")
    try:
        settings = json.loads((folder / SETTINGS_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ReferenceError(f"{folder / SETTINGS_FILE} is unreadable ({exc})") from None
    if settings.get("format") != REFERENCE_FORMAT:
        raise ReferenceError(f"{folder / SETTINGS_FILE}: format {settings.get('format')!r}, expected "
                             f"{REFERENCE_FORMAT!r}")
    if settings.get("embedding") is not None and settings.get("embedding_format") != embedding_format():
        raise ReferenceError(f"{folder / SETTINGS_FILE}: the images were embedded by pipeline "
                             f"{settings.get('embedding_format')!r}; this version embeds with "
                             f"{embedding_format()!r}, so a batch would not be embedded the same way. Fit the "
                             "reference again with this version")
    arrays = {}
    for key, required in ARRAYS.items():
        path = folder / f"{key}.npy"
        if f"{key}.npy" not in listed:
            if required:
                raise ReferenceError(f"{path} is missing from {MANIFEST_FILE}")
            continue
        try:
            arrays[key] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ReferenceError(f"{path} cannot be read as an array without pickle ({exc})") from None
    check_shapes(folder, settings, arrays)
    return folder, settings, arrays, file_digest(manifest_path)


def check_shapes(folder: Path, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Refuse arrays whose shapes or dtypes disagree with the settings (naming the file)."""
    n, d = int(settings["n_fit"]), int(settings["n_features"])
    k = int(settings["feature"]["k"])
    expected = {"fit_features": ((n, d), "f"), "fit_ids": ((n,), "U"), "fit_labels": ((n,), "i"),
                "feature_fit_distances": ((n,), "f"), "feature_knn_distances": ((n, k), "f"),
                "feature_knn_indices": ((n, k), "i"), "pixel_mean": ((d,), "f")}
    if settings.get("prediction") is not None:
        n_classes = int(settings["prediction"]["n_classes"])
        rows = 1 if n_classes == 2 else n_classes
        expected.update({"prediction_fit_pred_probs": ((n, n_classes), "f"),
                         "prediction_confident_thresholds": ((n_classes,), "f"),
                         "classifier_coef": ((rows, d), "f"), "classifier_intercept": ((rows,), "f"),
                         "classifier_classes": ((n_classes,), "i")})
        for key in ("prediction_fit_pred_probs", "classifier_coef", "classifier_intercept", "classifier_classes"):
            if key not in arrays:
                raise ReferenceError(f"{folder / (key + '.npy')} is missing: the reference has a prediction scorer")
    for key, array in arrays.items():
        shape, kind = expected.get(key, (None, None))
        if shape is None:
            raise ReferenceError(f"{folder / (key + '.npy')} does not belong to this reference")
        if array.shape != shape or array.dtype.kind != kind:
            raise ReferenceError(f"{folder / (key + '.npy')} holds {array.dtype} of shape {array.shape}; expected "
                                 f"shape {shape} ({'float' if kind == 'f' else 'int' if kind == 'i' else 'text'})")



__all__ = ["ARRAYS", "CARD_FORMAT", "DEFAULT_LEVEL", "MANIFEST_FILE", "REFERENCE_FORMAT", "SETTINGS_FILE",
           "ReferenceError", "check_shapes", "embedding_format", "package_version", "read_folder", "write_folder"]
