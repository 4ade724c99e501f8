"""What the issue types need from each decoded image, gathered in one pass.

:func:`image_record` computes, from one decoded image, the raw image properties
(:func:`~ood_core.issues.properties.image_properties`), two 64-bit perceptual hashes (pHash, dHash)
a digest of the decoded pixels and a 16 x 16 grayscale thumbnail (256 bytes, for the crop-tolerant
near-duplicate check of :mod:`._crops`). :class:`ImageStatsCollector` holds them for a whole image set:
the embedder's decoding threads can call ``collector.add(i, img)`` on each image they decode (so the
files are read once), or :func:`collect_image_stats` runs its own pass through the set's reader.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .._progress import StepProgress
from ._crops import THUMB, thumbnail

logger = logging.getLogger(__name__)

# The small copy every statistic is computed on: longer side at most this many pixels.
SMALL_SIDE = 64
# Raw properties, in the column order of image_properties().
PROPERTY_COLUMNS = ("width", "height", "brightness_p05", "brightness_p95", "sharpness", "entropy",
                    "colour_spread")
_BIT_WEIGHTS = (np.uint64(1) << np.arange(64, dtype=np.uint64)).astype(np.uint64)


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``D @ x`` is the DCT of ``x``."""
    k = np.arange(n)[:, None]
    D = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * math.sqrt(2 / n)
    D[0] /= math.sqrt(2)
    return D


_DCT32 = _dct_matrix(32)


def _pack(bits: np.ndarray) -> np.uint64:
    return np.uint64(np.bitwise_or.reduce(_BIT_WEIGHTS[bits.reshape(-1)]) if bits.any() else 0)


def as_rgb_image(img) -> Image.Image:
    """A PIL RGB image from a PIL image or a uint8 array (H, W) or (H, W, 3)."""
    if isinstance(img, Image.Image):
        return img if img.mode == "RGB" else img.convert("RGB")
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"img must be a PIL image or a uint8 array (H, W) or (H, W, 3); got {arr.dtype} "
                         f"{arr.shape}")
    return Image.fromarray(arr).convert("RGB")


def small_copy(img: Image.Image) -> Image.Image:
    """``img`` (RGB) reduced by a whole factor (a box filter, cheap) so that its longer side is at
    most :data:`SMALL_SIDE` pixels."""
    factor = -(-max(img.size) // SMALL_SIDE)
    return img if factor <= 1 else img.reduce(factor)


def raw_properties(rgb_small: Image.Image, source_size: tuple[int, int]) -> np.ndarray:
    """The :data:`PROPERTY_COLUMNS` of an image from its small RGB copy and its file's size:
    brightness percentiles (5th, 95th, 0-255), sharpness (standard deviation of the Laplacian per
    unit of contrast), entropy of the brightness histogram (bits, 0-8) and colour spread (mean of
    max - min over the three channels, 0-255)."""
    rgb = np.asarray(rgb_small)
    gray8 = np.asarray(rgb_small.convert("L"))
    counts = np.bincount(gray8.reshape(-1), minlength=256)
    cdf = np.cumsum(counts)
    p05, p95 = np.searchsorted(cdf, [0.05 * gray8.size, 0.95 * gray8.size])  # from the histogram
    gray = gray8.astype(np.float32)
    if min(gray.shape) >= 3:
        lap = 4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:]
        sharpness = float(lap.std()) / max(float(gray.std()), 1.0)  # edge strength per unit of contrast
    else:
        sharpness = 0.0
    p = counts[counts > 0] / gray8.size
    entropy = float(-(p * np.log2(p)).sum())
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    spread = float((np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)).mean())
    return np.array([source_size[0], source_size[1], p05, p95, sharpness, entropy, spread], dtype=np.float64)


def perceptual_hashes(rgb_small: Image.Image) -> tuple[np.uint64, np.uint64]:
    """64-bit pHash (signs of the 8x8 lowest frequencies of a 32x32 DCT against their median) and
    dHash (whether each pixel of a 9x8 copy is brighter than its left neighbour)."""
    gray = rgb_small.convert("L")
    g32 = np.asarray(gray.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = (_DCT32 @ g32 @ _DCT32.T)[:8, :8]
    phash = _pack(low > np.median(low))
    g9 = np.asarray(gray.resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    dhash = _pack(g9[:, 1:] > g9[:, :-1])
    return phash, dhash


def image_record(img, pixel_digest: bool = True) -> tuple[np.ndarray, np.uint64, np.uint64, str]:
    """Raw properties, pHash, dHash and pixel digest ("" unless ``pixel_digest``) of one decoded
    image (PIL or uint8 array).

    The file's own size is read from ``img.info["source_size"]`` when the decoder reduced the
    image (``ood_core.sources`` records it), else it is ``img.size``."""
    return image_record_with_thumbnail(img, pixel_digest)[:4]


def image_record_with_thumbnail(img, pixel_digest: bool = True) -> tuple[np.ndarray, np.uint64, np.uint64, str,
                                                                          np.ndarray]:
    """:func:`image_record` and the image's :func:`~._crops.thumbnail` (uint8 (16, 16))."""
    source_size = img.info.get("source_size") if isinstance(img, Image.Image) else None
    rgb = as_rgb_image(img)
    source_size = tuple(source_size) if source_size else rgb.size
    small = small_copy(rgb)
    digest = ""
    if pixel_digest:
        digest = hashlib.blake2b(rgb.tobytes(), digest_size=20).hexdigest() + f":{rgb.size[0]}x{rgb.size[1]}"
    phash, dhash = perceptual_hashes(small)
    return raw_properties(small, source_size), phash, dhash, digest, thumbnail(small)


@dataclass(frozen=True, eq=False)
class ImageStats:
    """Per-image statistics of one image set (row ``i`` = item ``i``); ``ok`` is False for an image
    that could not be decoded (its properties NaN, hashes 0, digest "")."""

    properties: np.ndarray  # float64 (N, len(PROPERTY_COLUMNS))
    phash: np.ndarray  # uint64 (N,)
    dhash: np.ndarray  # uint64 (N,)
    pixel_digest: np.ndarray  # str (N,)
    ok: np.ndarray  # bool (N,)
    thumbs: np.ndarray | None = None  # uint8 (N, 16, 16) grayscale thumbnails (zeros where not ok)

    def __len__(self) -> int:
        return len(self.ok)

    def rows(self, index) -> "ImageStats":
        """The statistics of the items ``index`` selects (a boolean mask or positions), in its order."""
        return ImageStats(self.properties[index], self.phash[index], self.dhash[index], self.pixel_digest[index],
                          self.ok[index], None if self.thumbs is None else self.thumbs[index])


class ImageStatsCollector:
    """Collects :func:`image_record` of each image of a set as it is decoded.

    Thread-safe for distinct items: the embedder's decoding threads call ``add(i, img)`` (and
    ``fail(i)`` for an image that could not be decoded); :meth:`result` gives the
    :class:`ImageStats` once every item was seen.
    """

    def __init__(self, n: int, pixel_digests: bool = True):
        self.n = int(n)
        self.pixel_digests = bool(pixel_digests)  # False when the files' own digests are known
        self._props = np.full((self.n, len(PROPERTY_COLUMNS)), np.nan)
        self._phash = np.zeros(self.n, dtype=np.uint64)
        self._dhash = np.zeros(self.n, dtype=np.uint64)
        self._digest = [""] * self.n
        self._thumbs = np.zeros((self.n, THUMB, THUMB), dtype=np.uint8)
        self._seen = np.zeros(self.n, dtype=bool)
        self._ok = np.zeros(self.n, dtype=bool)
        self._lock = threading.Lock()

    def add(self, i: int, img) -> None:
        """Record item ``i`` from its decoded image (before any resizing for the model)."""
        props, phash, dhash, digest, thumb = image_record_with_thumbnail(img, self.pixel_digests)
        self._props[i], self._phash[i], self._dhash[i], self._digest[i] = props, phash, dhash, digest
        self._thumbs[i] = thumb
        with self._lock:
            self._seen[i] = self._ok[i] = True

    def fail(self, i: int) -> None:
        """Record that item ``i`` could not be decoded."""
        with self._lock:
            self._seen[i] = True

    def result(self) -> ImageStats:
        missing = np.flatnonzero(~self._seen)
        if len(missing):
            raise ValueError(f"{len(missing)} of {self.n} images were never passed to the collector "
                             f"(first: item {int(missing[0])})")
        return ImageStats(self._props, self._phash, self._dhash, np.array(self._digest, dtype=str), self._ok.copy(),
                          self._thumbs)


# JPEG files are decoded at a reduced scale that still covers this side (the statistics use a
# 64-pixel copy; pHash needs 32 pixels).
_DRAFT_SIDE = 2 * SMALL_SIDE


def collect_image_stats(images, progress: StepProgress | None = None, workers: int | None = None) -> ImageStats:
    """:class:`ImageStats` of every image of ``images`` (an ImageSet) in a pass of its own
    through the set's reader (decoding threads, JPEG at a reduced scale)."""
    n = len(images)
    collector = ImageStatsCollector(n, pixel_digests=getattr(images, "item_digests", None) is None)
    chunk = 256

    def work(start: int) -> int:
        for i in range(start, min(start + chunk, n)):
            try:
                img = images._load(i, _DRAFT_SIDE)
            except Exception as exc:  # noqa: BLE001 - one bad image must not stop the pass
                logger.info("image %s could not be decoded for its statistics (%s)", images.paths[i], exc)
                collector.fail(i)
                continue
            collector.add(i, img)
        return min(start + chunk, n)

    if progress is not None:
        progress(0, n)
    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1), thread_name_prefix="ood-stats") as pool:
        for stop in pool.map(work, range(0, n, chunk)):  # in order: ``stop`` only grows
            if progress is not None:
                progress(stop, n)
    return collector.result()


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between 64-bit hashes ``a`` and ``b`` (broadcast), as int64."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)
