"""Images in a folder: class sub-folders give labels, ``train/`` and ``test/`` give the split."""

from __future__ import annotations

import os
from pathlib import Path

from . import _io
from ._imageset import ImageSet
from ._listing import Listing


def image_folder(path: str | os.PathLike, *, verify: bool = True, name: str | None = None) -> ImageSet:
    """Images below ``path``, recursively.

    Class sub-folders give labels (files directly in ``path``: label -1); top-level
    ``train/`` and ``test/`` folders give the split. Non-image and unreadable files
    are skipped and listed with the reason. ``verify`` decodes each file once while
    listing (JPEG at 1/8 scale); turn it off only for trusted layouts. ``name`` is
    shown in the description instead of the folder's own name.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"image_folder: path={str(path)!r} is not a folder")
    root_real = root.resolve()
    listing = Listing()
    for dirpath, _dirnames, filenames in os.walk(root):
        for filename in filenames:
            full = Path(dirpath) / filename
            rel = full.relative_to(root).as_posix()
            if _io.is_hidden(rel):
                continue
            if full.is_symlink() and not full.resolve().is_relative_to(root_real):
                listing.skipped.append((rel, "symbolic link pointing outside the folder"))
            elif listing.admit(rel, verify, lambda: open(full, "rb")):
                st = full.stat()
                listing.add(rel, rel, f"{st.st_size}\t{st.st_mtime_ns}")
    return listing.build("image folder", name or root.name, _io.FolderReader(root))
