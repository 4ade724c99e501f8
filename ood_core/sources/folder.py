"""Images in a folder: class sub-folders give labels, ``train/`` and ``test/`` give the split."""

from __future__ import annotations

import os
from pathlib import Path

from . import _io
from ._imageset import ImageSet
from ._listing import Listing


def _link_problem(full: Path, root_real: Path) -> str | None:
    """Why the symbolic link ``full`` is not followed (None when it stays inside the folder)."""
    try:
        target = full.resolve(strict=True)
    except FileNotFoundError:
        return "broken symbolic link (its target does not exist)"
    except (OSError, RuntimeError):  # ELOOP, or Python's own "Symlink loop" (3.11/3.12)
        return "symbolic link loop; not followed"
    if not target.is_relative_to(root_real):
        return "symbolic link pointing outside the folder"
    return None


def image_folder(path: str | os.PathLike, *, verify: bool = True, name: str | None = None) -> ImageSet:
    """Images below ``path``, recursively.

    Class sub-folders give labels (files directly in ``path``: label -1); top-level
    ``train/`` and ``test/`` folders give the split. Non-image and unreadable files,
    anything that is not a regular file (a named pipe, a device), files over
    :data:`~ood_core.sources._io.MAX_IMAGE_BYTES`, symbolic links that leave the folder
    or loop, sub-folders that cannot be read and linked sub-folders (never followed) are
    skipped and listed with the reason. Each file is read once, for its content digest
    (the set's identity); ``verify`` also decodes it (JPEG at 1/8 scale); turn that off only
    for trusted layouts. ``name`` is shown in the description instead of the folder's name.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"image_folder: path={str(path)!r} is not a folder")
    root_real = root.resolve()
    listing = Listing()

    def unreadable(exc: OSError) -> None:
        where = Path(exc.filename or root)
        if where == root:
            raise ValueError(f"image_folder: cannot read the folder {str(path)!r} ({exc.strerror or exc})") from exc
        listing.skipped.append((where.relative_to(root).as_posix() + "/",
                                f"folder cannot be read ({exc.strerror or exc}); its files are left out"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        for dirname in dirnames:
            full = Path(dirpath) / dirname
            rel = full.relative_to(root).as_posix()
            if full.is_symlink() and not _io.is_hidden(rel):
                listing.skipped.append((rel + "/", "symbolic link to a folder; not followed"))
        for filename in filenames:
            full = Path(dirpath) / filename
            rel = full.relative_to(root).as_posix()
            if _io.is_hidden(rel):
                continue
            problem = _link_problem(full, root_real) if full.is_symlink() else None
            if problem:
                listing.skipped.append((rel, problem))
            else:
                listing.admit(rel, rel, verify, lambda: _io.read_regular_file(full))
    return listing.build("image folder", name or root.name, _io.FolderReader(root))
