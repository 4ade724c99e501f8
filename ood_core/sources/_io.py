"""Private I/O helpers of the sources: decoding, readers, zip safety, folder layouts.

Nothing here is public API; :mod:`ood_core.sources` is the front door.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import threading
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np
from PIL import Image, ImageOps

# Extensions treated as images; everything else is skipped with a reason.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
# Names of top-level folders that give the split (anything else is a class folder).
SPLIT_NAMES = ("train", "test")
_HIGH_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# One image file (or zip entry) larger than this is not an image here: skipped, never read.
MAX_IMAGE_BYTES = 64 * 1024**2


class Refused(ValueError):
    """A file left out for a reason that is the whole message (too big, not a regular file...)."""


def human_size(n: int) -> str:
    """``n`` bytes in MiB or GiB, for messages."""
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


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


@contextmanager
def open_image(stream: BinaryIO) -> Iterator[Image.Image]:
    """``Image.open(stream)``, refused above ``Image.MAX_IMAGE_PIXELS`` pixels.

    Pillow itself only warns between that limit and twice it; here a decompression-bomb
    *warning* is an error too (raised before any pixel is decoded).
    """
    with Image.open(stream) as img:
        limit = Image.MAX_IMAGE_PIXELS
        pixels = img.width * img.height
        if limit is not None and pixels > limit:
            raise Image.DecompressionBombError(
                f"{img.width}x{img.height} image ({pixels:,} pixels) is over the {int(limit):,}-pixel limit"
            )
        yield img


def decode_image(stream: BinaryIO, draft_size: int | None = None) -> Image.Image:
    """Decode the first frame of an image file into a loaded RGB image.

    ``draft_size`` lets JPEG decode at a reduced scale that still covers
    ``draft_size`` pixels on both sides (much faster for large photos). Images over
    Pillow's pixel limit are refused (:func:`open_image`).
    """
    with open_image(stream) as img:  # Image.open leaves the first frame current
        source_size = img.size
        if draft_size is not None and img.format == "JPEG":
            img.draft("RGB", (draft_size, draft_size))
        img.load()
        loaded = img.size
        ImageOps.exif_transpose(img, in_place=True)
        if img.size != loaded:  # turned by its EXIF orientation
            source_size = source_size[::-1]
        rgb = to_rgb(img)  # pixel data is loaded; leaving the block only closes the file
        rgb.info["source_size"] = source_size  # (width, height) of the file, before any draft reduction
        return rgb


def probe_image(stream: BinaryIO) -> tuple[int, int]:
    """Cheaply check that ``stream`` decodes; return its (width, height).

    JPEG is decoded at 1/8 scale, other formats fully (first frame only).
    """
    with open_image(stream) as img:
        size = img.size
        if img.format == "JPEG":
            img.draft(img.mode, (1, 1))
        img.load()
    return size


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a file that could not be read."""
    if isinstance(exc, Refused):
        return str(exc)
    if isinstance(exc, Image.DecompressionBombError):
        return f"refused by Pillow's decompression-bomb guard: {exc}"
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not a readable image (Pillow cannot identify the file)"
    if isinstance(exc, OSError) and exc.errno is not None:  # the system's error, not Pillow's
        return f"cannot read the file ({exc.strerror or exc})"
    text = str(exc).strip() or type(exc).__name__
    return f"cannot decode: {text}"


# --------------------------------------------------------------------------- readers
def read_regular_file(path: str | os.PathLike, cap: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``cap`` bytes.

    Opened non-blocking, so a named pipe, device or socket is refused instead of hanging
    the read; a file that grows past ``cap`` while being read is refused too.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused("not a regular file (a named pipe, device or socket); not read")
        if info.st_size > cap:
            raise Refused(f"file is {human_size(info.st_size)}, over the {human_size(cap)} limit for one image; "
                          "not read")
        data = f.read(cap + 1)
    if len(data) > cap:
        raise Refused(f"file grew past the {human_size(cap)} limit for one image while being read")
    return data


class FolderReader:
    """Reads image files below ``root``; keys are relative POSIX paths."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def load(self, key: str, draft_size: int | None = None) -> Image.Image:
        return decode_image(io.BytesIO(read_regular_file(self.root / key)), draft_size)

    def portable(self, keys: list) -> tuple["FolderReader", list]:
        """A reader of ``keys`` that works from any working directory (its root made absolute)."""
        return FolderReader(self.root.resolve()), list(keys)


class ZipReader:
    """Reads members of one zip archive in place, with a single shared handle.

    Reads of the stored bytes are serialised by a lock (one bounded read per entry);
    decoding happens outside the lock, so worker threads decode in parallel. An entry is
    read only when it declares at most :data:`MAX_IMAGE_BYTES`, and never inflates beyond
    the size it declares (zip-bomb guard): a header that lies is caught, not believed.
    """

    def __init__(self, source: str | os.PathLike | bytes | BinaryIO):
        self._source = source
        self._lock = threading.Lock()
        self._zf: zipfile.ZipFile | None = None

    def open_archive(self, max_entries: int | None = None) -> zipfile.ZipFile:
        """The archive; with ``max_entries``, one holding more entries is refused (ValueError)
        before Python builds its table of contents (which costs memory per entry)."""
        if self._zf is None:
            source = self._source
            if isinstance(source, (bytes, bytearray, memoryview)):
                source = io.BytesIO(bytes(source))
            if max_entries is not None:
                if isinstance(source, (str, os.PathLike)):
                    with open(source, "rb") as f:
                        count = zip_entry_count(f, max_entries)
                else:
                    count = zip_entry_count(source, max_entries)
                if count > max_entries:
                    raise ValueError(f"holds more than max_files={max_entries} entries (folders count too)")
            self._zf = zipfile.ZipFile(source)
        return self._zf

    def read(self, key: zipfile.ZipInfo | str) -> bytes:
        """The bytes of one entry, or :class:`Refused` saying why not."""
        with self._lock:
            zf = self.open_archive()
            info = key if isinstance(key, zipfile.ZipInfo) else zf.getinfo(key)
            if info.flag_bits & 0x1:
                raise Refused("encrypted (password-protected) zip entry; not supported")
            if info.file_size > MAX_IMAGE_BYTES:
                raise Refused(f"entry would inflate to {human_size(info.file_size)}, over the "
                              f"{human_size(MAX_IMAGE_BYTES)} limit for one image; not read")
            try:
                with zf.open(info) as member:
                    data = member.read(info.file_size + 1)
            except (zipfile.BadZipFile, zlib.error, EOFError, struct.error) as exc:
                raise Refused(f"zip entry is corrupt or truncated ({exc})") from None
            except NotImplementedError as exc:
                raise Refused(f"zip entry cannot be read ({exc})") from None
        if len(data) != info.file_size:
            raise Refused(f"zip entry holds {'more' if len(data) > info.file_size else 'less'} than the "
                          f"{info.file_size} bytes its header declares")
        return data

    def load(self, key: zipfile.ZipInfo | str, draft_size: int | None = None) -> Image.Image:
        return decode_image(io.BytesIO(self.read(key)), draft_size)

    def portable(self, keys: list) -> tuple["ZipReader", list]:
        """A reader of ``keys`` that pickles as the archive's absolute path (or its bytes) and opens
        it on first use where it is unpickled; an archive given as an open file cannot travel."""
        source = self._source
        return ZipReader(os.path.abspath(source) if isinstance(source, (str, os.PathLike)) else source), list(keys)

    def __getstate__(self) -> dict:
        if not isinstance(self._source, (str, os.PathLike, bytes, bytearray, memoryview)):
            raise TypeError("a zip given as an open file cannot be sent to another process; give its path")
        return {"_source": self._source}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["_source"])

    def __del__(self):  # pragma: no cover - best effort at interpreter shutdown
        try:
            if self._zf is not None:
                self._zf.close()
        except Exception:
            pass


def zip_entry_count(fp: BinaryIO, limit: int) -> int:
    """Entries in the zip archive ``fp`` (folders included), counted from its central directory
    without building Python's table of contents; counting stops past ``limit``.

    Raises zipfile.BadZipFile when ``fp`` has no end-of-central-directory record.
    """
    endrec = zipfile._EndRecData(fp)  # the reader zipfile itself uses, so both agree on the layout
    if not endrec:
        raise zipfile.BadZipFile("File is not a zip file")
    size_cd = endrec[zipfile._ECD_SIZE]
    start = endrec[zipfile._ECD_LOCATION] - size_cd
    if endrec[zipfile._ECD_SIGNATURE] == zipfile.stringEndArchive64:
        start -= zipfile.sizeEndCentDir64 + zipfile.sizeEndCentDir64Locator
    pos, end, count = max(start, 0), max(start, 0) + size_cd, 0
    while pos < end and count <= limit:
        fp.seek(pos)
        header = fp.read(46)
        if len(header) < 46 or header[:4] != b"PK\x01\x02":
            break  # a damaged directory: zipfile's own reader says what is wrong
        name_len, extra_len, comment_len = struct.unpack("<3H", header[28:34])
        pos += 46 + name_len + extra_len + comment_len
        count += 1
    fp.seek(0)
    return count


class ArrayReader:
    """Images held in memory as a uint8 array (N, H, W) or (N, H, W, 3); keys are row numbers."""

    def __init__(self, pixels: np.ndarray):
        self.pixels = pixels

    def load(self, key: int, draft_size: int | None = None) -> Image.Image:
        return Image.fromarray(self.pixels[key]).convert("RGB")

    def portable(self, keys: list) -> tuple["ArrayReader", list]:
        """A reader holding only the images of ``keys`` (renumbered 0..), so little travels."""
        return ArrayReader(np.asarray(self.pixels)[np.asarray(keys, dtype=np.int64)]), list(range(len(keys)))


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
