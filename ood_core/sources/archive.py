"""Images inside a zip archive, read in place (nothing is extracted), with zip-bomb guards."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import BinaryIO

from . import _io
from ._imageset import ImageSet
from ._listing import Listing

# Zip-bomb caps (image_zip defaults): number of files and declared uncompressed bytes.
MAX_ZIP_FILES = 100_000
MAX_ZIP_BYTES = 2 * 1024**3


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
    zipping a folder makes) is ignored. Entries with absolute paths or ``..`` make
    the whole archive refused; more than ``max_files`` files or more than
    ``max_total_bytes`` declared uncompressed bytes too (zip-bomb guard).
    ``source`` may be a path, the archive's bytes, or a binary file object; ``name``
    is how the archive is called in the description and errors (default: its file name).
    """
    if name is None:
        name = source if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "upload.zip")
        name = Path(str(name)).name
    reader = _io.ZipReader(source)
    try:
        zf = reader.open_archive()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"image_zip: {name!r} is not a readable zip archive ({exc})") from exc
    infos = [info for info in zf.infolist() if not info.is_dir()]
    for info in zf.infolist():
        if _io.unsafe_member_name(info.filename):
            raise ValueError(
                f"image_zip: entry {info.filename!r} in {name!r} has an absolute path or a '..' "
                "component; the archive is refused"
            )
    if len(infos) > max_files:
        raise ValueError(
            f"image_zip: {name!r} holds {len(infos)} files, more than max_files={max_files}; "
            "raise max_files if the archive is trusted"
        )
    total = sum(info.file_size for info in infos)
    if total > max_total_bytes:
        raise ValueError(
            f"image_zip: {name!r} would inflate to {total} bytes, more than "
            f"max_total_bytes={max_total_bytes}; raise max_total_bytes if the archive is trusted"
        )
    members = [info for info in infos if not _io.is_hidden(info.filename)]
    rels = _io.strip_wrapper([info.filename for info in members])
    listing = Listing()
    for info, rel in zip(members, rels):
        if info.flag_bits & 0x1:
            listing.skipped.append((rel, "encrypted zip entry"))
        elif listing.admit(rel, verify, lambda: io.BytesIO(reader.read(info.filename))):
            listing.add(rel, info.filename, f"{info.CRC}\t{info.file_size}")
    return listing.build("zip archive", name, reader)
