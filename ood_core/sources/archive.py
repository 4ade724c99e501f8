"""Images inside a zip archive, read in place (nothing is extracted), with zip-bomb guards."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import BinaryIO

from . import _io
from ._imageset import ImageSet
from ._listing import Listing

# Zip-bomb caps (image_zip defaults): entries (folders included) and declared uncompressed bytes
# of all entries; one entry over _io.MAX_IMAGE_BYTES (64 MiB) is skipped without being read.
MAX_ZIP_FILES = 100_000
MAX_ZIP_BYTES = 2 * 1024**3


def _looks_truncated(source) -> bool:
    """True when ``source`` starts like a zip (a local file header) but has no directory at its end."""
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                head = f.read(4)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            head = bytes(source[:4])
        else:
            source.seek(0)
            head = source.read(4)
            source.seek(0)
    except OSError:
        return False
    return head == b"PK\x03\x04"


def image_zip(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    verify: bool = True,
    max_files: int = MAX_ZIP_FILES,
    max_total_bytes: int = MAX_ZIP_BYTES,
    name: str | None = None,
) -> ImageSet:
    """Images inside a zip archive, read in place (nothing is extracted).

    Same layout rules as :func:`image_folder`; one folder wrapping everything (as
    zipping a folder makes) is ignored. The whole archive is refused when an entry has an
    absolute path or a ``..`` component, when it holds more than ``max_files`` entries
    (folders count) or declares more than ``max_total_bytes`` uncompressed bytes in all
    (zip-bomb guard), or when it is not a readable zip (e.g. truncated). Entries are
    skipped and listed with the reason when they are encrypted, declare more than
    64 MiB, repeat an earlier entry's name, or are corrupt; an entry is never inflated
    past the size it declares. ``source`` may be a path, the archive's bytes, or a binary
    file object; ``name`` is how the archive is called in the description and errors
    (default: its file name).
    """
    if name is None:
        name = source if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "upload.zip")
        name = Path(str(name)).name
    if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        raise ValueError(f"image_zip: {name!r} is not a regular file (a named pipe, device or folder?)")
    reader = _io.ZipReader(source)
    try:
        zf = reader.open_archive(max_entries=max_files)
    except ValueError as exc:
        raise ValueError(f"image_zip: {name!r} {exc}; raise max_files if the archive is trusted") from None
    except (zipfile.BadZipFile, OSError) as exc:
        if _looks_truncated(source):
            raise ValueError(f"image_zip: {name!r} looks truncated: it starts like a zip archive but its "
                             "table of contents (at the end) is missing or damaged; copy or download it "
                             "again") from exc
        raise ValueError(f"image_zip: {name!r} is not a readable zip archive ({exc})") from exc
    entries = zf.infolist()
    for info in entries:
        if _io.unsafe_member_name(info.filename):
            raise ValueError(
                f"image_zip: entry {info.filename!r} in {name!r} has an absolute path or a '..' "
                "component; the archive is refused"
            )
    if len(entries) > max_files:
        raise ValueError(
            f"image_zip: {name!r} holds {len(entries)} entries (folders count too), more than "
            f"max_files={max_files}; raise max_files if the archive is trusted"
        )
    total = sum(info.file_size for info in entries)
    if total > max_total_bytes:
        raise ValueError(
            f"image_zip: {name!r} would inflate to {total} bytes ({_io.human_size(total)}), more than "
            f"max_total_bytes={max_total_bytes} ({_io.human_size(max_total_bytes)}); raise max_total_bytes "
            "if the archive is trusted"
        )
    members = [info for info in entries if not info.is_dir() and not _io.is_hidden(info.filename)]
    rels = _io.strip_wrapper([info.filename for info in members])
    listing, seen = Listing(), set()
    for info, rel in zip(members, rels):
        if rel in seen:
            listing.skipped.append((rel, "duplicate entry name in the archive; the first entry of that name is kept"))
            continue
        seen.add(rel)
        listing.admit(rel, info, verify, lambda: reader.read(info))
    return listing.build("zip archive", name, reader)
