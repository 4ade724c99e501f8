"""What a folder or zip scan admitted (and skipped), turned into an :class:`ImageSet`."""

from __future__ import annotations

import hashlib
import io
import os
from typing import Callable

import numpy as np

from . import _io
from ._imageset import ImageSet, content_digest


class Listing:
    """Collects the files of one scan; :meth:`build` applies the layout rules of :func:`_io.layout`.

    Each admitted file is read once: its bytes are hashed (the set's ``identity`` is built from
    the contents and relative paths only, so the same images hit the embedding cache wherever
    they lie, in a folder or a zip) and, when verifying, decoded from the same bytes.
    """

    def __init__(self):
        self.found: list[tuple[str, object, str]] = []  # (relative path, reader key, content digest)
        self.skipped: list[tuple[str, str]] = []
        self.sizes: list[tuple[int, int]] = []

    def admit(self, rel: str, key, verify: bool, read: Callable[[], bytes]) -> bool:
        """Add ``rel`` (read by ``read()``, found again by the reader under ``key``) when it is
        an image file that can be read (and decodes, checked only when ``verify``); else list it
        in ``skipped`` with the reason."""
        if not _io.has_image_extension(rel):
            suffix = os.path.splitext(rel)[1]
            self.skipped.append((rel, f"not an image file (extension {suffix or 'none'!r})"))
            return False
        try:
            data = read()
            if verify:
                self.sizes.append(_io.probe_image(io.BytesIO(data)))
        except Exception as exc:  # noqa: BLE001 - any failure means "skip this file"
            self.skipped.append((rel, _io.describe_error(exc)))
            return False
        self.found.append((rel, key, hashlib.blake2b(data, digest_size=20).hexdigest()))
        return True

    def build(self, kind: str, name: str, reader) -> ImageSet:
        """The admitted files, sorted by path; ``identity`` hashes each relative path with its
        content digest (not the kind of container, not file times)."""
        found = sorted(self.found, key=lambda item: item[0])
        rels = [rel for rel, _, _ in found]
        labels, class_names, split = _io.layout(rels)
        sides = [max(size) for size in self.sizes]
        return ImageSet(
            ids=rels, paths=rels, labels=labels, class_names=class_names, split=split, is_ood=None,
            skipped=sorted(self.skipped),
            description=f"{kind} {name} ({len(rels)} images, {len(class_names)} classes)",
            # NUL-separated (no path holds a NUL), so no two listings give one string
            identity=content_digest("images", *(part for rel, _, digest in found for part in (rel, digest))),
            _reader=reader, _keys=[key for _, key, _ in found],
            size_hint=int(np.median(sides)) if sides else None,
            item_digests=[digest for _, _, digest in found],
        )
