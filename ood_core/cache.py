"""Disk cache of embeddings.

One ``.npz`` per (resolved :class:`~ood_core._embed_config.EmbedConfig`, image set
identity), named by :func:`cache_key`. Files are written atomically (temp file +
``os.replace``), read with ``allow_pickle=False`` and validated (format, key,
shapes, NaN rows only where failures were recorded); anything else is a miss and
is recomputed, never trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from ood_core import settings
from ood_core._embed_config import EmbedConfig
from ood_core._files import atomic_write, open_npz
from ood_core._pixels import fit_rows_digest
from ood_core._progress import StepProgress
from ood_core.embedder import Embedder
from ood_core.sources import ImageSet

logger = logging.getLogger(__name__)

CACHE_ENV = settings.SETTINGS["cache_dir"].env
# Bump when the file layout or the embedding pipeline changes features for equal settings.
CACHE_FORMAT = "ood-explorer-embeddings-v1"


def default_cache_dir() -> Path:
    """The ``cache_dir`` setting (:mod:`ood_core.settings`): ``$OOD_CACHE_DIR``, else ``cache_dir`` in
    the config file, else the user cache dir (platformdirs) / embeddings."""
    return settings.value("cache_dir")


def cache_key(config: EmbedConfig, images: ImageSet) -> str:
    """The one place the cache key is computed: resolved settings + the images' identity
    (+ which rows are fit rows, for features centred on them)."""
    if not config.resolved:
        raise ValueError("cache_key needs a resolved EmbedConfig (use Embedder.config_for(images))")
    fields = {"format": CACHE_FORMAT, "config": dataclasses.asdict(config), "images": images.identity}
    if config.centre:
        fields["fit_rows"] = fit_rows_digest(images)
    payload = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def cache_path(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the entry for ``key`` lives."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"{key}.npz"


def _read(path: Path, key: str, n: int) -> tuple[np.ndarray, list[tuple[int, str, str]]] | None:
    """The cached features and failures, or None when the file is absent or not valid."""
    if not path.is_file():
        return None
    try:
        with open_npz(path) as data:
            if str(data["format"]) != CACHE_FORMAT or str(data["key"]) != key:
                raise ValueError("format or key mismatch")
            features = np.asarray(data["features"])
            failed = np.asarray(data["failed_index"], dtype=np.int64)
            paths = [str(p) for p in data["failed_path"]]
            reasons = [str(r) for r in data["failed_reason"]]
        if features.dtype != np.float32 or features.ndim != 2 or features.shape[0] != n:
            raise ValueError(f"features have shape {features.shape} and dtype {features.dtype}, expected ({n}, D) float32")
        if len(paths) != len(failed) or len(reasons) != len(failed):
            raise ValueError("failure lists have different lengths")
        bad_rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
        if not np.array_equal(bad_rows, np.sort(failed)):
            raise ValueError("non-finite rows do not match the recorded failures")
    except Exception as exc:  # noqa: BLE001 - truncated, foreign or tampered: recompute
        logger.warning("ignoring invalid embedding cache file %s (%s); recomputing", path, exc)
        return None
    return features, [(int(i), p, r) for i, p, r in zip(failed, paths, reasons)]


def _write(path: Path, key: str, config: EmbedConfig, features: np.ndarray,
           failures: list[tuple[int, str, str]]) -> None:
    """Store one entry atomically (a reader never sees half a file)."""
    atomic_write(path, lambda f: np.savez(
        f,
        format=np.array(CACHE_FORMAT),
        key=np.array(key),
        config=np.array(json.dumps(dataclasses.asdict(config), sort_keys=True)),
        features=features,
        failed_index=np.array([i for i, _, _ in failures], dtype=np.int64),
        failed_path=np.array([p for _, p, _ in failures], dtype=str),
        failed_reason=np.array([r for _, _, r in failures], dtype=str),
    ))


def cached_embed(
    embedder: Embedder,
    images: ImageSet,
    cache_dir: str | os.PathLike | None = None,
    progress: StepProgress | None = None,
    collector=None,
) -> tuple[np.ndarray, bool]:
    """``embedder.embed(images)`` through the disk cache: returns (features, hit).
    ``collector`` is passed to ``embed`` (it hears of every image only on a miss: a hit decodes none).

    On a hit ``embedder.failures_`` is restored from the cache file, so
    :func:`~ood_core.embedder.drop_failed` works the same either way. A cache
    folder that cannot be written only costs the cache (a warning is logged).
    """
    config = embedder.config_for(images)
    key = cache_key(config, images)
    path = cache_path(key, cache_dir)
    cached = _read(path, key, len(images))
    if cached is not None:
        features, embedder.failures_ = cached
        if progress is not None:
            progress(len(images), len(images))
        return features, True
    features = (embedder.embed(images, progress=progress) if collector is None
                else embedder.embed(images, progress=progress, collector=collector))
    if embedder.config_for(images) != config:  # the backend fell back to torch: key what computed them
        config = embedder.config_for(images)
        key, path = cache_key(config, images), cache_path(cache_key(config, images), cache_dir)
    try:
        _write(path, key, config, features, embedder.failures_)
    except OSError as exc:
        logger.warning("could not write embedding cache file %s (%s)", path, exc)
    return features, False


def run_file(key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where a run keeps something it computed beyond the embeddings (the classifier's pred_probs, a
    2-D map), named by ``key``: ``runs/`` inside ``cache_dir`` (default: :func:`default_cache_dir`)."""
    return Path(cache_dir if cache_dir is not None else default_cache_dir()) / "runs" / f"{key}.npz"


__all__ = ["CACHE_ENV", "cache_key", "cache_path", "cached_embed", "default_cache_dir", "run_file"]
