"""Copies of chosen images into a folder (curation): the original bytes, at their relative paths."""
from __future__ import annotations

import io
import os
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import numpy as np

from ._files import atomic_write
from ._progress import StepProgress
from .sources import _io
from .sources._imageset import ImageSet


def _images_of(data: Any) -> ImageSet:
    """The ImageSet behind an Analysis (its ``items``) or the ImageSet itself."""
    if isinstance(data, ImageSet):
        return data
    images = getattr(data, "items", None)
    if isinstance(images, ImageSet):
        return images
    what = getattr(data, "source", None) or getattr(data, "description", None) or type(data).__name__
    raise ValueError(f"{what} holds precomputed features, not images: there are no image files to copy "
                     "(copy from the image folder or zip the features were computed from)")


def _positions(positions: Iterable[int], n: int) -> list[int]:
    """Item positions as distinct ints in [0, n), in the order given."""
    index = np.asarray(list(positions) if not isinstance(positions, np.ndarray) else positions)
    if index.size and (index.ndim != 1 or not np.issubdtype(index.dtype, np.integer)):
        raise TypeError(f"positions must be item positions (whole numbers); got {index.dtype} of shape {index.shape}")
    bad = [int(p) for p in index if not 0 <= p < n]
    if bad:
        raise ValueError(f"positions {bad[:5]} are out of range for {n} items")
    return list(dict.fromkeys(int(p) for p in index))


def _relative(rel: str) -> PurePosixPath:
    """``rel`` as a relative path that cannot leave the destination (no absolute path, drive, ``..``)."""
    parts = rel.replace("\\", "/").split("/")
    if not rel or "\0" in rel or any(p in ("", ".", "..") for p in parts) or ":" in parts[0]:
        raise ValueError(f"refusing to copy {rel!r}: its path is absolute or climbs out with '..', so it could "
                         "land outside the destination folder")
    return PurePosixPath(*parts)


def _inside(dest: Path, dest_real: Path, path: Path) -> bool:
    """True when ``path`` (below ``dest`` by name) lies in ``dest_real`` once links are resolved:
    its nearest existing folder up to ``dest`` is checked (nothing existing: no link on the way)."""
    probe = path
    while not probe.exists() and probe != dest:
        probe = probe.parent
    return not probe.exists() or probe.resolve().is_relative_to(dest_real)


def _same_bytes(path: Path, data: bytes) -> bool:
    return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data


def _source_file(images: ImageSet, position: int) -> tuple[PurePosixPath, Any]:
    """Where item ``position`` goes (its relative path) and how to read its original bytes."""
    reader, key = images._reader, images._keys[position]
    rel = images.paths[position]
    if isinstance(reader, _io.FolderReader):
        return _relative(rel), lambda: _io.read_regular_file(reader.root / key)
    if isinstance(reader, _io.ZipReader):
        return _relative(rel), lambda: reader.read(key)
    if isinstance(reader, _io.ArrayReader):  # pixels in memory (digits, CIFAR-10 batches): lossless PNG
        if not _io.has_image_extension(rel):
            rel += ".png"
        return _relative(rel), lambda: _png(reader.pixels[key])
    raise TypeError(f"cannot copy images of {images.description}: its images come from no file")


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _read(read, rel: PurePosixPath) -> bytes:
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - any read failure names the file
        raise ValueError(f"cannot read {str(rel)!r} from the source ({_io.describe_error(exc)})") from exc


def copy_items(data: Any, positions: Iterable[int], dest: str | os.PathLike,
               progress: StepProgress | None = None) -> list[Path]:
    """Copy the original image files of the items at ``positions`` (into ``data.ids``) of ``data``
    (an :class:`~ood_core.Analysis` of images, or an ``ImageSet``) into the folder ``dest``, at their
    relative paths (``cat/003.jpg`` -> ``dest/cat/003.jpg``); returns the files, in that order.

    Files and zip entries are copied byte for byte, never decoded and re-encoded; images held in
    memory (the digits, torchvision's CIFAR-10 batches) are written as lossless PNG. Nothing is
    written when a path would leave ``dest`` (``..``, an absolute path, a linked sub-folder) or
    when ``dest`` already holds a different file at one of the paths; a file there with the same
    bytes is left as it is. ``progress(done, total)`` follows the copies.
    """
    images = _images_of(data)
    chosen = _positions(positions, len(images))
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"the destination {str(dest)!r} is a file; give a folder")
    dest_real = dest.resolve()
    plan, conflicts = [], []
    for position in chosen:  # check every target before writing anything
        rel, read = _source_file(images, position)
        target = dest.joinpath(*rel.parts)
        if target.is_symlink() or not _inside(dest, dest_real, target.parent):
            raise ValueError(f"refusing to copy {str(rel)!r}: {str(target)!r} is or lies under a symbolic link "
                             "that leads out of the destination folder")
        if target.exists():
            if not _same_bytes(target, _read(read, rel)):
                conflicts.append(str(rel))
                continue
            plan.append((target, rel, None))  # already there, identical
        else:
            plan.append((target, rel, read))
    if conflicts:
        listed = ", ".join(repr(c) for c in conflicts[:3]) + (", ..." if len(conflicts) > 3 else "")
        raise ValueError(f"{len(conflicts)} file(s) in {str(dest)!r} differ from the images to copy ({listed}); "
                         "nothing was copied. Choose an empty folder or move those files away")
    for done, (target, rel, read) in enumerate(plan, 1):
        if read is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not _inside(dest, dest_real, target.parent):
                raise ValueError(f"refusing to copy {str(rel)!r}: a symbolic link out of {str(dest)!r} appeared")
            try:
                data_bytes = _read(read, rel)
            except ValueError as exc:
                raise ValueError(f"{exc}; {done - 1} of {len(plan)} image(s) were copied into {str(dest)!r}") from None
            atomic_write(target, data_bytes)
        if progress is not None:
            progress(done, len(plan))
    return [target for target, _, _ in plan]
