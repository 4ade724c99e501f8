"""Data sources: image folders, zip archives, CIFAR-10, the demo split, digits, arrays.

Every image source returns an :class:`ImageSet` (ids, display paths, labels, optional
split and out-of-distribution truth, skipped files, a stable identity for caching)
whose images are decoded lazily with :meth:`ImageSet.load_image`. Precomputed
features (a ``.npz``/``.npy``, or a folder of feature shards written by ``embed --out FOLDER``)
come back as an :class:`ArraySet` from :func:`load_arrays`.
:func:`open_source` is the one place that maps what a user types (a built-in name or
a path) to a loader.

Modules: ``_imageset`` (ImageSet), ``_io`` (decoding, readers, layout rules),
``_listing`` (folder/zip scans), ``folder``, ``archive`` (zip), ``cifar``,
``builtin`` (demo split, digits, the named-source registry), ``arrays``, ``split`` (fit and
query sets by class).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .._download import DownloadError
from ..shards import is_shard_folder
from ._imageset import ImageSet
from .archive import MAX_ZIP_BYTES, MAX_ZIP_FILES, image_zip
from .arrays import ArraySet, load_arrays
from .builtin import ANIMALS, BUILTIN_SOURCES, demo_split, digits, list_sources, register_source
from .cifar import CIFAR10_CLASSES, CIFAR10_ENV, cifar10, cifar10_data_dir, cifar10_location, download_cifar10
from .folder import image_folder
from .split import fit_query_arrays, in_out_split

# file suffix -> loader(path, name=...) for a path that is a file
_FILE_LOADERS: dict[str, Callable[..., ImageSet | ArraySet]] = {
    ".zip": image_zip,
    ".npz": load_arrays,
    ".npy": load_arrays,
}


def open_source(spec: str | os.PathLike, *, name: str | None = None, verify: bool = True) -> ImageSet | ArraySet:
    """A built-in name (see :func:`list_sources`), an image folder, a zip of images, a
    ``.npz``/``.npy`` of precomputed features, or a folder of feature shards (it holds a
    ``manifest.json``; its features stay on disk, see :mod:`ood_core.shards`).

    ``name`` (for a path) is how the source is called in its description instead of the
    file or folder name, e.g. the user's own name for an upload stored under a hash.
    ``verify=False`` lists a folder or zip without decoding its images (fast: enough to read
    its classes; undecodable files are then found when embedding), and opens a shard folder
    without reading its features.
    """
    if isinstance(spec, str) and spec in BUILTIN_SOURCES:
        return BUILTIN_SOURCES[spec][1]()
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"source {str(spec)!r} is neither a built-in source ({', '.join(list_sources())}) nor an existing path"
        )
    if path.is_dir():
        if is_shard_folder(path):
            return load_arrays(path, name=name, verify=verify)
        return image_folder(path, name=name, verify=verify)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return image_zip(path, name=name, verify=verify)
    if suffix in _FILE_LOADERS:
        return _FILE_LOADERS[suffix](path, name=name)
    raise ValueError(
        f"source {str(spec)!r}: expected a folder of images, a .zip of images, or a .npz/.npy of features; "
        f"got a {suffix or 'extension-less'} file"
    )


__all__ = [
    "ANIMALS",
    "BUILTIN_SOURCES",
    "CIFAR10_CLASSES",
    "CIFAR10_ENV",
    "DownloadError",
    "MAX_ZIP_BYTES",
    "MAX_ZIP_FILES",
    "ArraySet",
    "ImageSet",
    "cifar10",
    "cifar10_data_dir",
    "cifar10_location",
    "download_cifar10",
    "demo_split",
    "digits",
    "fit_query_arrays",
    "image_folder",
    "image_zip",
    "in_out_split",
    "list_sources",
    "load_arrays",
    "open_source",
    "register_source",
]
