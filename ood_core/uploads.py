"""Uploaded files: stored in the cache's ``uploads`` folder under their content hash, so no name a
user gives ever reaches the disk (and the same upload is stored once)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from ._files import atomic_write
from .cache import default_cache_dir

UPLOAD_SUFFIXES = (".zip", ".npz", ".npy")  # what a source can be made from


def upload_dir() -> Path:
    """The folder uploads are stored in: ``uploads`` inside the cache dir ($OOD_CACHE_DIR when set)."""
    return Path(default_cache_dir()) / "uploads"


def save_upload(name: str, data: bytes, allowed: tuple[str, ...] = UPLOAD_SUFFIXES) -> Path:
    """Check an uploaded file's extension (from its user-given ``name``) against ``allowed``, store
    ``data`` under its content hash and return the stored path, ready for :func:`ood_core.analyze`."""
    suffix = Path(name or "").suffix.lower()
    if suffix not in allowed or suffix not in UPLOAD_SUFFIXES:
        raise ValueError(f"{name!r} is not a {' / '.join(allowed)} file")
    if not data:
        raise ValueError(f"{name!r} is empty")
    path = upload_dir() / f"{hashlib.sha256(data).hexdigest()}{suffix}"
    if not path.exists():
        atomic_write(path, data)
    return path


def discard_upload(path: str | Path) -> bool:
    """Delete a stored upload (e.g. one that could not be read, so it is not kept); a path
    outside the uploads folder is left alone. Returns whether a file was deleted."""
    path, folder = Path(path).resolve(), upload_dir().resolve()
    if path.parent != folder or not path.is_file():
        return False
    path.unlink(missing_ok=True)
    return True
