"""The image statistics of ``ood_core.issues`` kept in a shard folder, beside the features.

Both engines of :func:`~ood_core._sharded_embed.embed_shards` hand each shard's images to the
embedder with an :class:`~ood_core.issues.ImageStatsCollector`, so the statistics (properties,
perceptual hashes, pixel digests) come from the decoding pass the features need: the files are
read once. :func:`stats_array` turns a shard's :class:`~ood_core.issues.ImageStats` into one
structured array (a row per image, a field per statistic, whatever :class:`ImageStats` holds), the
form :class:`~ood_core.shards.ShardWriter` stores and records; :func:`shard_image_stats` reads them
back for an analysis of the folder (:func:`ood_core.issues._run.image_stats`), checked file by file.
"""
from __future__ import annotations

import dataclasses
import io

import numpy as np

from ._feature_shards import FeatureShards
from .issues._image_pass import ImageStats


def stats_array(stats: ImageStats) -> np.ndarray:
    """``stats`` as one structured array (row ``i`` = item ``i``; text fields as ASCII bytes)."""
    columns = {}
    for field in dataclasses.fields(ImageStats):
        column = np.asarray(getattr(stats, field.name))
        if column.dtype.kind == "U":
            column = np.char.encode(column, "ascii") if column.size else column.astype("S1")
        columns[field.name] = column
    out = np.empty(len(stats), dtype=[(name, col.dtype, col.shape[1:]) for name, col in columns.items()])
    for name, column in columns.items():
        out[name] = column
    return out


def stats_from_columns(columns: dict[str, np.ndarray], where: str) -> ImageStats:
    """The :class:`ImageStats` of the columns :func:`stats_array` wrote (``where`` names their file
    or folder in the ValueError raised when a field is missing)."""
    names = [field.name for field in dataclasses.fields(ImageStats)]
    missing = [name for name in names if name not in columns]
    if missing:
        raise ValueError(f"{where}: the image statistics lack {missing} (written by another version); run the same "
                         "embed command again to write them anew")
    return ImageStats(**{name: columns[name] for name in names})


def stats_bytes(array: np.ndarray) -> bytes:
    """A :func:`stats_array` as ``.npy`` bytes, to travel from a Ray worker to the driver."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def stats_from_bytes(data: bytes) -> np.ndarray:
    """The structured array :func:`stats_bytes` sent."""
    return np.load(io.BytesIO(data), allow_pickle=False)


def shard_image_stats(features, ids: list[str], stats_format: str) -> ImageStats | None:
    """The :class:`ImageStats` of an analysis whose ``features`` are rows of a shard folder that keeps
    statistics of ``stats_format`` (row ``i`` = ``ids[i]``); None when they are not (in-memory
    features, or a folder written without statistics). ValueError naming the folder when its
    statistics are of another format, and naming the file when one is damaged or swapped."""
    if not isinstance(features, FeatureShards) or features.stats is None or features.folder is None:
        return None
    kept_format, _ = features.stats
    if kept_format != stats_format:
        raise ValueError(f"{features.folder} keeps image statistics of format {kept_format!r}, this version reads "
                         f"{stats_format!r}; run the same embed command again to write them anew")
    stats = stats_from_columns(features.take_stats(), str(features.folder))
    if len(stats) != len(ids):
        raise ValueError(f"{features.folder}: statistics of {len(stats)} images for {len(ids)} items")
    return stats


__all__ = ["shard_image_stats", "stats_array", "stats_bytes", "stats_from_bytes", "stats_from_columns"]
