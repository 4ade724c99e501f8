"""Builders of the hostile corpus: every file is generated into a temporary folder by the
fixtures (nothing big is committed). Bombs are written by hand from one deflated block of
zeros repeated, so a 2 GiB entry costs a few MB on disk and well under a second to make.
"""
from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MiB = 1024**2
GiB = 1024**3
VALID = {"red.png": (200, 30, 30), "blue.jpg": (20, 40, 220), "green.bmp": (30, 200, 30), "grey.webp": (90, 90, 90)}
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP", ".webp": "WEBP", ".gif": "GIF"}


# --------------------------------------------------------------------------- images
def image_bytes(img: Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def solid(name: str, colour) -> bytes:
    return image_bytes(Image.new("RGB", (12, 10), colour), _FORMATS[Path(name).suffix])


def noise(fmt: str, size: int = 64) -> bytes:
    rng = np.random.default_rng(0)
    return image_bytes(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)), fmt)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_1bit(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG of any size: ``width`` x ``height`` pixels in a few KB."""
    raw = (b"\0" + bytes((width + 7) // 8)) * height
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw, 9))
            + _png_chunk(b"IEND", b""))


def png_header_bomb() -> bytes:
    """A PNG whose header claims 100,000 x 100,000 pixels (10 gigapixels) with almost no data."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def jpeg_header_bomb() -> bytes:
    """A small JPEG whose frame header is patched to claim 65,000 x 65,000 pixels."""
    data = bytearray(solid("x.jpg", (10, 10, 10)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", 65_000, 65_000)
    return bytes(data)


def exif_rotated_jpeg() -> bytes:
    """20 x 10 pixels stored, orientation 6 (rotate 90 degrees): shown 10 x 20."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return image_bytes(Image.new("RGB", (20, 10), (200, 30, 30)), "JPEG", exif=exif.tobytes())


def palette_alpha_png() -> bytes:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([10, 20, 30] * 256)
    return image_bytes(img, "PNG", transparency=0)


def animated_gif() -> bytes:
    return image_bytes(Image.new("RGB", (8, 8), (200, 30, 30)), "GIF", save_all=True,
                       append_images=[Image.new("RGB", (8, 8), (20, 40, 220))])


@dataclass(frozen=True)
class Case:
    """One file of the corpus: its name and bytes, and the reason it is skipped (a regex; None: kept)."""

    name: str
    data: bytes
    skip: str | None = None


def image_cases() -> list[Case]:
    """The files that a folder and a zip can both hold (valid ones included)."""
    jpeg, png = noise("JPEG"), noise("PNG")
    bomb_reason = "refused by Pillow's decompression-bomb guard"
    return [
        *(Case(name, solid(name, colour)) for name, colour in VALID.items()),
        Case("zero-byte.jpg", b"", r"not a readable image \(Pillow cannot identify the file\)"),
        Case("truncated.jpg", jpeg[: len(jpeg) // 2], "cannot decode: image file is truncated"),
        Case("truncated.png", png[: len(png) // 2], "cannot decode: .*(truncated|broken)"),
        Case("renamed-text.png", b"just some notes, not a picture\n" * 4,
             r"not a readable image \(Pillow cannot identify the file\)"),
        Case("notes.txt", b"hello", r"not an image file \(extension '.txt'\)"),
        Case("png-header-bomb.png", png_header_bomb(), bomb_reason + r": Image size \(10000000000 pixels\)"),
        Case("jpeg-header-bomb.jpg", jpeg_header_bomb(), bomb_reason),
        Case("megapixels-144.png", png_1bit(12_000, 12_000),
             bomb_reason + r": 12000x12000 image \(144,000,000 pixels\) is over the 89,478,485-pixel limit"),
        Case("sixteen-bit.png", image_bytes(Image.fromarray(np.full((6, 6), 25700, np.uint16)), "PNG")),
        Case("cmyk.jpg", image_bytes(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG")),
        Case("palette-alpha.png", palette_alpha_png()),
        Case("exif-rotated.jpg", exif_rotated_jpeg()),
        Case("animated.gif", animated_gif()),
        Case("猫 café ünïcode.png", solid("x.png", (120, 60, 30))),
        Case("new\nline.png", solid("x.png", (30, 60, 120))),
    ]


# --------------------------------------------------------------------------- zips by hand
@dataclass
class Entry:
    """One zip entry as written: ``payload`` is stored as is (already deflated for method 8)."""

    name: str
    payload: bytes
    size: int  # declared uncompressed size
    crc: int
    method: int = zipfile.ZIP_DEFLATED
    flags: int = 0


def stored(name: str, data: bytes, **kw) -> Entry:
    return Entry(name, data, len(data), zlib.crc32(data), zipfile.ZIP_STORED, **kw)


def deflated_zeros(name: str, n_mib: int, prefix: bytes = b"", declared: int | None = None) -> Entry:
    """``prefix`` then ``n_mib`` MiB of zeros, deflated: one 1 MiB block (about 1 KB compressed)
    repeated, each ending in a full flush so the copies join into one valid stream."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = co.compress(prefix) + co.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(MiB)
    block = co.compress(zeros) + co.flush(zlib.Z_FULL_FLUSH)
    payload = head + block * n_mib + co.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(n_mib):
        crc = zlib.crc32(zeros, crc)
    size = len(prefix) + n_mib * MiB
    return Entry(name, payload, size if declared is None else declared, crc)


def write_zip(path: Path, entries: list[Entry]) -> Path:
    """A zip archive of ``entries`` exactly as given (sizes and flags may lie); zip64 end records
    when there are more than 65,535 entries."""
    local, central, offset = [], [], 0
    for e in entries:
        name = e.name.encode()
        flags = e.flags | 0x800  # UTF-8 names
        header = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, e.method, 0, 33, e.crc, len(e.payload),
                             e.size, len(name), 0) + name
        local += [header, e.payload]
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags, e.method, 0, 33, e.crc,
                                   len(e.payload), e.size, len(name), 0, 0, 0, 0, 0, offset) + name)
        offset += len(header) + len(e.payload)
    cd = b"".join(central)
    n = len(entries)
    tail = b""
    if n > 0xFFFF:
        tail = (struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(cd), offset)
                + struct.pack("<4sLQL", b"PK\x06\x07", 0, offset + len(cd), 1))
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(n, 0xFFFF), min(n, 0xFFFF), len(cd), offset, 0)
    with open(path, "wb") as f:
        f.writelines(local)
        f.write(cd + tail + end)
    return path


# --------------------------------------------------------------------------- arrays
def npy_header(shape: tuple, dtype=np.float32) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue()


def npz_bomb(path: Path, n_mib: int) -> Path:
    """An .npz whose ``features.npy`` is ``n_mib`` MiB of float32 zeros (1280 columns), deflated."""
    rows = n_mib * MiB // (4 * 1280)
    return write_zip(path, [deflated_zeros("features.npy", n_mib, prefix=npy_header((rows, 1280)))])


# --------------------------------------------------------------------------- expectations
# What only a folder can hold: name -> the reason it is skipped (a regex).
FOLDER_ONLY = {
    "outside-link.png": "symbolic link pointing outside the folder",
    "loop.png": "symbolic link loop; not followed",
    "broken-link.png": r"broken symbolic link \(its target does not exist\)",
    "pipe.jpg": r"not a regular file \(a named pipe, device or socket\); not read",
    "huge.png": "file is 65.0 MiB, over the 64.0 MiB limit for one image; not read",
    "linked-folder/": "symbolic link to a folder; not followed",
}
# What only a zip can hold: name -> the reason it is skipped (a regex).
ZIP_ONLY = {
    "red.png": "duplicate entry name in the archive; the first entry of that name is kept",
    "encrypted.png": r"encrypted \(password-protected\) zip entry; not supported",
    "bad-crc.png": r"zip entry is corrupt or truncated \(Bad CRC-32",
    "oversized.png": "entry would inflate to 65.0 MiB, over the 64.0 MiB limit for one image; not read",
}


def tree(root: Path) -> dict[str, tuple]:
    """Every path below ``root`` (links not followed) with its type, size and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(Path(dirpath) / name)
            out[str(Path(dirpath, name).relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out
