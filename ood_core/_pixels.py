"""Pixel features: the flattened, resized pixels of each image, as a model like any other.

``pixels`` centres them on the mean of the fit rows (the image set's ``split == "train"``
items, else all items: the rows ``analyze`` fits on), so a query row never moves the
centre; ``pixels-raw`` keeps them as they are. Values are ``(pixel / 255 - 0.5) / 0.5``;
grayscale images give one value per pixel, colour images three.
"""
from __future__ import annotations

import hashlib

import numpy as np

from ood_core._embed_config import EmbedConfig
from ood_core.sources import ImageSet

# ITU-R 601 luma weights (Pillow's "L" conversion): equal R, G, B give that value back.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def pixel_width(config: EmbedConfig) -> int:
    """Number of features per image: side * side * channels."""
    return int(config.image_size) ** 2 * int(config.channels)


def pixel_rows(batch: np.ndarray, config: EmbedConfig) -> np.ndarray:
    """uint8 NHWC images (already resized to ``config.image_size``) -> float32 (n, width) rows."""
    x = batch.astype(np.float32) / 255.0
    if config.channels == 1:
        x = (x @ LUMA)[..., None]
        mean, std = np.float32(config.mean[0]), np.float32(config.std[0])
    else:
        mean, std = np.asarray(config.mean, np.float32), np.asarray(config.std, np.float32)
    return ((x - mean) / std).reshape(len(batch), -1)


def fit_rows(images: ImageSet) -> np.ndarray:
    """Boolean mask of the rows a scorer is fitted on: the ``"train"`` split, else every row."""
    if images.split is not None:
        train = np.asarray(images.split).astype(str) == "train"
        if train.any():
            return train
    return np.ones(len(images), dtype=bool)


def fit_rows_digest(images: ImageSet) -> str:
    """Digest of :func:`fit_rows` (part of the cache key of centred pixel features)."""
    return hashlib.sha256(np.packbits(fit_rows(images)).tobytes() + str(len(images)).encode()).hexdigest()


def centre_on_fit(features: np.ndarray, images: ImageSet) -> np.ndarray:
    """Subtract the mean of the finite fit rows from every row, in place (NaN rows stay NaN)."""
    rows = fit_rows(images) & np.isfinite(features).all(axis=1)
    if rows.any():
        features -= features[rows].mean(axis=0, dtype=np.float64).astype(np.float32)
    return features


__all__ = ["centre_on_fit", "fit_rows", "fit_rows_digest", "pixel_rows", "pixel_width"]
