"""Private I/O helpers of the sources: decoding, readers, zip safety, folder layouts.

Nothing here is public API; :mod:`ood_core.sources` is the front door.
"""

from __future__ import annotations

import io
import os
import threading
import zipfile
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np
from PIL import Image, ImageOps

# Extensions treated as images; everything else is skipped with a reason.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
# Names of top-level folders that give the split (anything else is a class folder).
SPLIT_NAMES = ("train", "test")
_HIGH_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


# --------------------------------------------------------------------------- decoding
def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    16-bit / 32-bit integer images are scaled from 0..65535 to 0..255 (Pillow's own
    conversion clips instead); float images in 0..1 are scaled by 255; images with an
    alpha channel (or a transparent palette entry) are composited onto white.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _HIGH_BIT_MODES or mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        elif mode != "F" and arr.size and arr.max() > 255:
            arr = arr / 257.0
        arr8 = np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8).convert("RGB")
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def decode_image(stream: BinaryIO, draft_size: int | None = None) -> Image.Image:
    """Decode the first frame of an image file into a loaded RGB image.

    ``draft_size`` lets JPEG decode at a reduced scale that still covers
    ``draft_size`` pixels on both sides (much faster for large photos). Pillow's
    decompression-bomb guard stays on: oversized images raise and are reported.
    """
    with Image.open(stream) as img:
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)
        if draft_size is not None and img.format == "JPEG":
            img.draft("RGB", (draft_size, draft_size))
        img.load()
        ImageOps.exif_transpose(img, in_place=True)
        return to_rgb(img)  # pixel data is loaded; leaving the block only closes the file


def probe_image(stream: BinaryIO) -> tuple[int, int]:
    """Cheaply check that ``stream`` decodes; return its (width, height).

    JPEG is decoded at 1/8 scale, other formats fully (first frame only).
    """
    with Image.open(stream) as img:
        size = img.size
        if img.format == "JPEG":
            img.draft(img.mode, (1, 1))
        img.load()
    return size


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a file that could not be read."""
    if isinstance(exc, Image.DecompressionBombError):
        return f"refused by Pillow's decompression-bomb guard: {exc}"
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not a readable image (Pillow cannot identify the file)"
    text = str(exc).strip() or type(exc).__name__
    return f"cannot decode: {text}"


# --------------------------------------------------------------------------- readers
class FolderReader:
    """Reads image files below ``root``; keys are relative POSIX paths."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def load(self, key: str, draft_size: int | None = None) -> Image.Image:
        with open(self.root / key, "rb") as f:
            return decode_image(f, draft_size)


class ZipReader:
    """Reads members of one zip archive in place, with a single shared handle.

    Reads of the stored bytes are serialised by a lock (one seek and one read);
    decoding happens outside the lock, so worker threads decode in parallel. A
    member may not inflate beyond the size its header declares (zip-bomb guard).
    """

    def __init__(self, source: str | os.PathLike | bytes | BinaryIO):
        self._source = source
        self._lock = threading.Lock()
        self._zf: zipfile.ZipFile | None = None

    def open_archive(self) -> zipfile.ZipFile:
        if self._zf is None:
            source = self._source
            if isinstance(source, (bytes, bytearray, memoryview)):
                source = io.BytesIO(bytes(source))
            self._zf = zipfile.ZipFile(source)
        return self._zf

    def read(self, key: str) -> bytes:
        with self._lock:
            zf = self.open_archive()
            info = zf.getinfo(key)
            with zf.open(info) as member:
                data = member.read(info.file_size + 1)
        if len(data) > info.file_size:
            raise ValueError(f"zip member inflates beyond its declared {info.file_size} bytes")
        return data

    def load(self, key: str, draft_size: int | None = None) -> Image.Image:
        return decode_image(io.BytesIO(self.read(key)), draft_size)

    def __del__(self):  # pragma: no cover - best effort at interpreter shutdown
        try:
            if self._zf is not None:
                self._zf.close()
        except Exception:
            pass


class ArrayReader:
    """Images held in memory as a uint8 array (N, H, W) or (N, H, W, 3); keys are row numbers."""

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels

    def load(self, key: int, draft_size: int | None = None) -> Image.Image:
        return Image.fromarray(self.pixels[key]).convert("RGB")


# --------------------------------------------------------------------------- listing
def is_hidden(relpath: str) -> bool:
    """Hidden files/folders and macOS zip metadata are ignored silently."""
    return ("/" + relpath).find("/.") >= 0 or "__MACOSX" in relpath


def has_image_extension(relpath: str) -> bool:
    return os.path.splitext(relpath)[1].lower() in IMAGE_EXTENSIONS


def unsafe_member_name(name: str) -> bool:
    """True for zip entry names that are absolute or climb out with ``..``."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return True
    parts = name.replace("\\", "/").split("/")
    return ".." in parts


def strip_wrapper(relpaths: Sequence[str]) -> list[str]:
    """Remove one top-level folder that wraps every path (as zipping a folder makes).

    A wrapper named like a split folder is kept.
    """
    firsts = {p.split("/", 1)[0] for p in relpaths}
    if len(firsts) != 1 or any("/" not in p for p in relpaths) or firsts.pop().lower() in SPLIT_NAMES:
        return list(relpaths)
    return [p.split("/", 1)[1] for p in relpaths]


def layout(relpaths: Sequence[str]) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """Labels, class names and split from relative paths.

    ``train/`` and ``test/`` top-level folders (and nothing else at the top) give the
    split; below them (or below the root otherwise) the first folder is the class.
    Files directly in the root (or directly in train/test) get label -1.
    """
    parts = [p.split("/") for p in relpaths]
    tops = {p[0].lower() for p in parts if len(p) > 1}
    has_root_files = any(len(p) == 1 for p in parts)
    split_layout = bool(parts) and not has_root_files and tops <= set(SPLIT_NAMES)
    split = None
    if split_layout:
        split = np.array([p[0].lower() for p in parts], dtype=object)
        parts = [p[1:] for p in parts]
    classes = [p[0] if len(p) > 1 else None for p in parts]
    class_names = sorted({c for c in classes if c is not None})
    index = {c: i for i, c in enumerate(class_names)}
    labels = np.array([index[c] if c is not None else -1 for c in classes], dtype=np.int64)
    return labels, class_names, split
