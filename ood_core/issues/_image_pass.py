"""What the issue types need from each decoded image, gathered in one pass.

:func:`image_record` computes, from one decoded image, the raw image properties
(:func:`~ood_core.issues.properties.image_properties`), two 64-bit perceptual hashes (pHash, dHash)
a digest of the decoded pixels and a 16 x 16 grayscale thumbnail (256 bytes, for the crop-tolerant
near-duplicate check of :mod:`._crops`). :class:`ImageStatsCollector` holds them for a whole image set:
the embedder's decoding threads reduce each image they decode to a small copy
(``collector.reduce(i, img)``) and record a batch at once (``collector.add_decoded(items, smalls)``),
so the files are read once, or :func:`collect_image_stats` runs its own pass through the set's reader.
"""
from __future__ import annotations

import functools
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
from ._crops import THUMB

logger = logging.getLogger(__name__)

# The small copy every statistic is computed on: longer side at most this many pixels.
SMALL_SIDE = 64
# Raw properties, in the column order of image_properties().
PROPERTY_COLUMNS = ("width", "height", "brightness_p05", "brightness_p95", "sharpness", "entropy",
                    "colour_spread")


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``D @ x`` is the DCT of ``x``."""
    k = np.arange(n)[:, None]
    D = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * math.sqrt(2 / n)
    D[0] /= math.sqrt(2)
    return D


_DCT32 = _dct_matrix(32)


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


def _properties_of_group(rgb: np.ndarray, gray8: np.ndarray) -> np.ndarray:
    """Brightness percentiles, sharpness, entropy and colour spread (:data:`PROPERTY_COLUMNS` 2-6)
    of G equally sized small copies: ``rgb`` uint8 (G, h, w, 3), ``gray8`` their uint8 (G, h, w)
    brightness. Vectorised over the group: a handful of array operations for a whole batch."""
    g, size = len(gray8), gray8[0].size
    flat = gray8.reshape(g, -1)
    counts = np.bincount((flat + (256 * np.arange(g))[:, None]).reshape(-1), minlength=256 * g).reshape(g, 256)
    cdf = np.cumsum(counts, axis=1)
    # the first brightness whose cumulative count reaches 5% (95%) of the pixels: np.searchsorted per row
    p05 = (cdf < 0.05 * size).sum(axis=1)
    p95 = (cdf < 0.95 * size).sum(axis=1)
    gray = gray8.astype(np.float32)
    if min(gray8.shape[1:]) >= 3:
        lap = 4 * gray[:, 1:-1, 1:-1] - gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1] - gray[:, 1:-1, :-2] - gray[:, 1:-1, 2:]
        # edge strength per unit of contrast
        sharpness = lap.reshape(g, -1).std(axis=1) / np.maximum(gray.reshape(g, -1).std(axis=1), 1.0)
    else:
        sharpness = np.zeros(g)
    p = counts / size
    entropy = -(p * np.log2(np.where(p > 0, p, 1.0))).sum(axis=1)
    r, gr, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    spread = (np.maximum(np.maximum(r, gr), b) - np.minimum(np.minimum(r, gr), b)).reshape(g, -1).mean(axis=1)
    return np.stack([p05, p95, sharpness, entropy, spread], axis=1).astype(np.float64)


def perceptual_hashes(rgb_small: Image.Image) -> tuple[np.uint64, np.uint64]:
    """64-bit pHash and dHash of one image (see :func:`image_records`)."""
    r = image_records([rgb_small], pixel_digest=False)
    return r.phash[0], r.dhash[0]


def _pack_rows(bits: np.ndarray) -> np.ndarray:
    """Each row of 64 booleans (B, 64) as a uint64: element ``k`` is bit ``k``."""
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").reshape(-1).astype(np.uint64)


def _hashes_of(g32: np.ndarray, g9: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pHash and dHash (uint64 (B,)) from the 32 x 32 and 9 x 8 grayscale copies (B, 32, 32), (B, 8, 9)."""
    low = (_DCT32[:8] @ g32 @ _DCT32[:8].T).reshape(len(g32), 64)  # the 8 x 8 lowest frequencies
    phash = _pack_rows(low > np.median(low, axis=1, keepdims=True))
    dhash = _pack_rows((g9[:, :, 1:] > g9[:, :, :-1]).reshape(len(g9), 64))
    return phash, dhash


@dataclass(frozen=True)
class ImageRecords:
    """:func:`image_records` of B images (row ``b`` = image ``b``)."""

    properties: np.ndarray  # float64 (B, len(PROPERTY_COLUMNS))
    phash: np.ndarray  # uint64 (B,)
    dhash: np.ndarray  # uint64 (B,)
    pixel_digest: list[str]  # "" where not asked for
    thumbs: np.ndarray  # uint8 (B, THUMB, THUMB)


def _lanczos(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)


def _box(x: np.ndarray) -> np.ndarray:
    return ((x > -0.5) & (x <= 0.5)).astype(np.float64)


_FILTERS = {"lanczos": (_lanczos, 3.0), "box": (_box, 0.5)}


@functools.lru_cache(maxsize=256)
def _resize_matrix(n_in: int, n_out: int, kind: str) -> np.ndarray:
    """(n_out, n_in) weights of a one-axis resize as PIL's resampling computes them (``kind``:
    "lanczos" or "box"; a wider kernel when shrinking, so it averages, weights normalised to sum
    to 1): ``M @ signal`` is the resized signal, before rounding."""
    fn, support = _FILTERS[kind]
    scale = n_in / n_out
    wide = max(scale, 1.0)
    M = np.zeros((n_out, n_in))
    for out in range(n_out):
        centre = (out + 0.5) * scale
        lo = max(int(centre - support * wide + 0.5), 0)
        hi = min(int(centre + support * wide + 0.5), n_in)
        w = fn((np.arange(hi - lo) + lo - centre + 0.5) * (1.0 / wide))  # PIL's arithmetic, ties included
        M[out, lo:hi] = w / w.sum() if w.sum() else 0.0
    return M


def _resized(gray: np.ndarray, rows: int, cols: int, kind: str) -> np.ndarray:
    """Grayscale stack (G, h, w) resized to (G, rows, cols), rounded to whole grey levels as an
    8-bit image is (flat regions stay exactly flat)."""
    out = _resize_matrix(gray.shape[1], rows, kind) @ gray @ _resize_matrix(gray.shape[2], cols, kind).T
    return np.clip(np.rint(out), 0, 255)


def _brightness(rgb: np.ndarray) -> np.ndarray:
    """uint8 brightness (ITU-R 601 luma) of an RGB stack (..., 3), exactly as PIL's ``convert("L")``."""
    r, g, b = (rgb[..., c].astype(np.uint32) for c in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def image_records(imgs, pixel_digest: bool = True) -> ImageRecords:
    """Raw properties (:data:`PROPERTY_COLUMNS`), 64-bit pHash and dHash, pixel digest ("" unless
    ``pixel_digest``) and :data:`~._crops.THUMB` x :data:`~._crops.THUMB` grayscale thumbnail of each
    decoded image of ``imgs`` (PIL images or uint8 arrays (H, W) or (H, W, 3)).

    Every statistic is computed on a small copy (longer side at most :data:`SMALL_SIDE`,
    :func:`small_copy`) and its brightness: brightness percentiles (5th, 95th, 0-255), sharpness
    (standard deviation of the Laplacian per unit of contrast), entropy of the brightness histogram
    (bits, 0-8), colour spread (mean of max - min over the three channels, 0-255); pHash: the signs
    of the 8 x 8 lowest frequencies of the DCT of a 32 x 32 Lanczos copy against their median;
    dHash: whether each pixel of a 9 x 8 Lanczos copy is brighter than its left neighbour; the
    thumbnail: the whole picture squeezed to a square by an area filter. Only the reduction to the
    small copy is per image; the rest runs on all equally sized small copies at once (array
    products), which is what keeps it cheap beside the embedder (bench/issue_stats.py).

    An image's own size is read from ``img.info["source_size"]`` when the decoder reduced it
    (``ood_core.sources`` records it), else it is the decoded size."""
    return records_of([reduce_image(img, pixel_digest) for img in imgs])


@dataclass(frozen=True)
class SmallCopy:
    """What :func:`records_of` needs of one decoded image (:func:`reduce_image`): a few kB,
    however large the image, so a batch of them can wait for its turn."""

    small: bytes  # RGB, row-major, longer side at most SMALL_SIDE
    size: tuple[int, int]  # (width, height) of ``small``
    source_size: tuple[int, int]  # the image file's own (width, height)
    digest: str  # of the decoded pixels, "" when not asked for


def reduce_image(img, pixel_digest: bool = True) -> SmallCopy:
    """The per-image part of :func:`image_records`: the small copy, the source size and the digest."""
    source_size = img.info.get("source_size") if isinstance(img, Image.Image) else None
    rgb = as_rgb_image(img)
    digest = ""
    if pixel_digest:
        digest = hashlib.blake2b(rgb.tobytes(), digest_size=20).hexdigest() + f":{rgb.size[0]}x{rgb.size[1]}"
    small = small_copy(rgb)
    return SmallCopy(small.tobytes(), small.size, tuple(source_size) if source_size else rgb.size, digest)


def records_of(smalls: list[SmallCopy]) -> ImageRecords:
    """:func:`image_records` of images already reduced by :func:`reduce_image`: all at once."""
    n = len(smalls)
    props = np.empty((n, len(PROPERTY_COLUMNS)))
    g32 = np.empty((n, 32, 32))
    g9 = np.empty((n, 8, 9))
    thumbs = np.empty((n, THUMB, THUMB), dtype=np.uint8)
    groups: dict[tuple[int, int], list[int]] = {}
    for b, s in enumerate(smalls):
        props[b, :2] = s.source_size
        groups.setdefault(s.size, []).append(b)
    for (w, h), rows in groups.items():
        rgb = np.frombuffer(b"".join(smalls[b].small for b in rows), dtype=np.uint8).reshape(len(rows), h, w, 3)
        gray8 = _brightness(rgb)
        props[rows, 2:] = _properties_of_group(rgb, gray8)
        gray = gray8.astype(np.float64)
        g32[rows] = _resized(gray, 32, 32, "lanczos")
        g9[rows] = _resized(gray, 8, 9, "lanczos")
        thumbs[rows] = _resized(gray, THUMB, THUMB, "box")
    phash, dhash = _hashes_of(g32, g9)
    return ImageRecords(props, phash, dhash, [s.digest for s in smalls], thumbs)


def image_record(img, pixel_digest: bool = True) -> tuple[np.ndarray, np.uint64, np.uint64, str]:
    """Raw properties, pHash, dHash and pixel digest ("" unless ``pixel_digest``) of one decoded
    image (PIL or uint8 array): :func:`image_records` of a batch of one."""
    r = image_records([img], pixel_digest)
    return r.properties[0], r.phash[0], r.dhash[0], r.pixel_digest[0]


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

    Thread-safe for distinct items: the embedder's decoding threads call ``reduce(i, img)`` on each
    image they decode, ``add_decoded(items, smalls)`` on each batch (and ``fail(i)`` for an image
    that could not be decoded); :meth:`result` gives the :class:`ImageStats` once every item was seen.
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
        self.add_batch([i], [reduce_image(img, self.pixel_digests)])

    def reduce(self, i: int, img) -> SmallCopy | None:
        """Item ``i``'s :class:`SmallCopy` (made right after decoding, so the full image need not be
        kept for :meth:`add_decoded`); None when it cannot be made: logged and recorded as failed
        (statistics never cost an image its features)."""
        try:
            return reduce_image(img, self.pixel_digests)
        except Exception as exc:  # noqa: BLE001 - logged; the item's statistics stay missing
            logger.warning("image statistics of item %d could not be computed (%s)", i, exc)
            self.fail(i)
            return None

    def add_batch(self, items, smalls: list[SmallCopy]) -> None:
        """Record items ``items`` from their :class:`SmallCopy` (one :func:`records_of` call)."""
        r = records_of(smalls)
        rows = np.asarray(items, dtype=np.int64)
        self._props[rows], self._phash[rows], self._dhash[rows], self._thumbs[rows] = (
            r.properties, r.phash, r.dhash, r.thumbs)
        for i, digest in zip(rows, r.pixel_digest):
            self._digest[i] = digest
        with self._lock:
            self._seen[rows] = self._ok[rows] = True

    def add_decoded(self, items, smalls: list[SmallCopy]) -> None:
        """:meth:`add_batch`; when the batch fails, each item alone, so that an image whose
        statistics cannot be computed is logged and recorded as failed (:meth:`fail`) and only it."""
        try:
            self.add_batch(items, smalls)
        except Exception:  # noqa: BLE001 - find the image(s) at fault
            for i, small in zip(items, smalls):
                try:
                    self.add_batch([i], [small])
                except Exception as exc:  # noqa: BLE001 - logged; the item's statistics stay missing
                    logger.warning("image statistics of item %d could not be computed (%s)", i, exc)
                    self.fail(i)

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
        items, smalls = [], []
        for i in range(start, min(start + chunk, n)):
            try:
                img = images._load(i, _DRAFT_SIDE)
            except Exception as exc:  # noqa: BLE001 - one bad image must not stop the pass
                logger.info("image %s could not be decoded for its statistics (%s)", images.paths[i], exc)
                collector.fail(i)
                continue
            small = collector.reduce(i, img)
            if small is not None:
                items.append(i)
                smalls.append(small)
        collector.add_decoded(items, smalls)
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
