"""The image container every image source returns, and the digest that names its contents."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ._io import ArrayReader


def content_digest(*chunks: str | bytes) -> str:
    """SHA-256 of ``chunks`` (NUL-separated): the ``identity`` of an image set."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk.encode() if isinstance(chunk, str) else chunk)
        h.update(b"\0")
    return h.hexdigest()


@dataclass(eq=False)
class ImageSet:
    """Images with ids, labels and optional split / truth, decoded lazily.

    ``labels`` index ``class_names`` (-1 when unknown); ``split`` holds "train" /
    "test" per item (None when the source has none); ``is_ood`` is known
    out-of-distribution truth (None when unknown); ``skipped`` lists files left out
    as (path, reason); ``identity`` changes whenever the items' pixels could; ``data_id`` is the
    identity of the whole data a subset or split was drawn from (review marks are kept under it).
    """

    ids: list[str]
    paths: list[str]
    labels: np.ndarray
    class_names: list[str]
    split: np.ndarray | None
    is_ood: np.ndarray | None
    skipped: list[tuple[str, str]]
    description: str
    identity: str
    _reader: Any = field(default=None, repr=False)  # object with .load(key, draft_size)
    _keys: list | None = field(default=None, repr=False)  # reader key per item
    size_hint: int | None = None  # typical longer side in pixels, when known
    data_id: str | None = None  # identity of the whole data this set was drawn from (kept by subsets)
    item_digests: list[str] | None = None  # content digest of each item's file (folders, zips); None when unknown

    def __post_init__(self):
        if self.data_id is None:
            self.data_id = self.identity
        n = len(self.ids)
        self.ids = [str(i) for i in self.ids]
        self.paths = list(self.paths)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.class_names = [str(c) for c in self.class_names]
        if self._keys is None:
            self._keys = list(self.paths)
        lengths = {"paths": len(self.paths), "labels": len(self.labels), "_keys": len(self._keys)}
        if self.item_digests is not None:
            self.item_digests = [str(d) for d in self.item_digests]
            lengths["item_digests"] = len(self.item_digests)
        if self.split is not None:
            self.split = np.asarray(self.split, dtype=object).reshape(-1)
            lengths["split"] = len(self.split)
        if self.is_ood is not None:
            self.is_ood = np.asarray(self.is_ood, dtype=bool).reshape(-1)
            lengths["is_ood"] = len(self.is_ood)
        for name, length in lengths.items():
            if length != n:
                raise ValueError(f"ImageSet: {name} has {length} entries but ids has {n}")
        if len(set(self.ids)) != n:
            raise ValueError("ImageSet: ids must be unique")
        if n and (self.labels.min() < -1 or self.labels.max() >= len(self.class_names)):
            raise ValueError(
                f"ImageSet: labels must be -1 or in [0, {len(self.class_names)}), "
                f"got values in [{self.labels.min()}, {self.labels.max()}]"
            )

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, i: int) -> Image.Image:
        """Decode item ``i`` as an RGB image (raises OSError/ValueError if unreadable)."""
        return self._load(i)

    def _load(self, i: int, draft_size: int | None = None) -> Image.Image:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"image index {i} out of range for {len(self)} items")
        return self._reader.load(self._keys[i], draft_size)

    def subset(self, index) -> "ImageSet":
        """The items at ``index`` (int positions or a boolean mask), in that order."""
        idx = np.asarray(index)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise ValueError(
                    f"subset: boolean mask has shape {idx.shape}, expected ({len(self)},)"
                )
            idx = np.flatnonzero(idx)
        elif idx.size == 0:
            idx = idx.astype(np.int64)
        elif not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"subset: index must be integers or a boolean mask, got {idx.dtype}")
        idx = idx.reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"subset: index out of range for {len(self)} items")
        ids = [self.ids[i] for i in idx]
        return dataclasses.replace(
            self, ids=ids, paths=[self.paths[i] for i in idx], labels=self.labels[idx],
            class_names=list(self.class_names), skipped=list(self.skipped),
            split=None if self.split is None else self.split[idx],
            is_ood=None if self.is_ood is None else self.is_ood[idx],
            description=f"{self.description} [subset of {len(ids)}]",
            identity=content_digest("subset", self.identity, "\n".join(ids)),
            _keys=[self._keys[i] for i in idx],
            item_digests=None if self.item_digests is None else [self.item_digests[i] for i in idx],
        )

    def portable(self) -> "ImageSet":
        """This set with a reader that can be pickled and read in another process or on another
        machine that sees the same paths: a folder's absolute root, a zip's absolute path (opened on
        first use there), an in-memory set's own rows of pixels. ``skipped`` is left behind."""
        reader, keys = self._reader, self._keys
        if hasattr(reader, "portable"):
            reader, keys = reader.portable(keys)
        return dataclasses.replace(self, _reader=reader, _keys=keys, skipped=[])


def pixel_set(pixels: np.ndarray, ids: Sequence[str], labels, class_names: Sequence[str], *,
              identity: str, description: str = "", split=None, size_hint: int | None = None) -> ImageSet:
    """An :class:`ImageSet` over images held in memory (uint8 (N, H, W) or (N, H, W, 3)),
    one per id; ids double as display paths."""
    return ImageSet(ids=list(ids), paths=list(ids), labels=labels, class_names=list(class_names), split=split,
                    is_ood=None, skipped=[], description=description, identity=identity,
                    _reader=ArrayReader(pixels), _keys=list(range(len(ids))), size_hint=size_hint)
