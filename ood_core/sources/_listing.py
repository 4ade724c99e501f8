"""What a folder or zip scan admitted (and skipped), turned into an :class:`ImageSet`."""

from __future__ import annotations

import os
from typing import BinaryIO, Callable

import numpy as np

from . import _io
from ._imageset import ImageSet, content_digest


class Listing:
    """Collects the files of one scan; :meth:`build` applies the layout rules of :func:`_io.layout`."""

    def __init__(self):
        self.found: list[tuple[str, object, str]] = []  # (relative path, reader key, stat line)
        self.skipped: list[tuple[str, str]] = []
        self.sizes: list[tuple[int, int]] = []

    def admit(self, rel: str, verify: bool, open_stream: Callable[[], BinaryIO]) -> bool:
        """True for an image file that decodes (checked only when ``verify``)."""
        if not _io.has_image_extension(rel):
            suffix = os.path.splitext(rel)[1]
            self.skipped.append((rel, f"not an image file (extension {suffix or 'none'!r})"))
            return False
        if verify:
            try:
                with open_stream() as stream:
                    self.sizes.append(_io.probe_image(stream))
            except Exception as exc:  # noqa: BLE001 - any failure means "skip this file"
                self.skipped.append((rel, _io.describe_error(exc)))
                return False
        return True

    def add(self, rel: str, key, stat: str) -> None:
        self.found.append((rel, key, stat))

    def build(self, kind: str, name: str, reader) -> ImageSet:
        """The admitted files, sorted by path; ``identity`` hashes each path with its stat line."""
        found = sorted(self.found, key=lambda item: item[0])
        rels = [rel for rel, _, _ in found]
        labels, class_names, split = _io.layout(rels)
        sides = [max(size) for size in self.sizes]
        return ImageSet(
            ids=rels, paths=rels, labels=labels, class_names=class_names, split=split, is_ood=None,
            skipped=sorted(self.skipped),
            description=f"{kind} {name} ({len(rels)} images, {len(class_names)} classes)",
            identity=content_digest(kind, "\n".join(f"{rel}\t{stat}" for rel, _, stat in found)),
            _reader=reader, _keys=[key for _, key, _ in found],
            size_hint=int(np.median(sides)) if sides else None,
        )
