"""The files of a shard folder and the checks that each one is what the folder's manifest says.

The writer records, per shard, its number, its rows, its shape, its size and a SHA-256 digest of its
bytes (computed as they are written): in the shard's ``notes-NNNNN.json`` while a run is under way,
and in ``manifest.json`` once it is complete (with the digest of ``meta.npz``). A reader checks each
shard's header and size against that record when it opens the folder (a stat and 128 bytes a shard),
and its digest the first time this process reads its rows. A verified file is remembered by
(device, inode, size, modification time), so a file is hashed once per process unless it changes;
SHA-256 runs at ~1.7 GB/s here (blake2b ~0.6 GB/s), a few seconds for a 1M x 1280 set (5 GB).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ._files import file_digest

SHARDS_FORMAT = "ood-explorer-shards-v2"
_FORMATS = (SHARDS_FORMAT, "ood-explorer-shards-v1")  # v1: no record of each shard's contents
MANIFEST = "manifest.json"
META = "meta.npz"
DIGEST = "sha256"
RESUME = "run the same embed command again: it embeds the damaged or missing shards anew and keeps the others"


def shard_name(number: int) -> str:
    return f"features-{number:05d}.npy"


def notes_name(number: int) -> str:
    return f"notes-{number:05d}.json"


def stats_name(number: int) -> str:
    """The file of shard ``number``'s per-image statistics (one structured row per image)."""
    return f"stats-{number:05d}.npy"


def read_manifest(folder: Path) -> dict[str, Any]:
    """The checked ``manifest.json`` of ``folder`` (ValueError when absent or not one)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder} has no readable {MANIFEST} ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in _FORMATS:
        raise ValueError(f"{folder / MANIFEST} is not a feature-shard manifest ({SHARDS_FORMAT})")
    for name in ("n_rows", "shard_rows"):
        if not isinstance(manifest.get(name), int) or manifest[name] < 1:
            raise ValueError(f"{folder / MANIFEST}: {name} must be a positive integer; got {manifest.get(name)!r}")
    return manifest


def span(number: int, n_rows: int, shard_rows: int) -> tuple[int, int]:
    """The rows ``[start, stop)`` of shard ``number``."""
    start = number * shard_rows
    return start, min(start + shard_rows, n_rows)


@dataclass(frozen=True)
class ShardFile:
    """One shard on disk as its manifest records it: rows ``[start, stop)`` of its folder."""

    path: Path
    start: int
    stop: int
    nbytes: int
    digest: str  # SHA-256 of the file's bytes

    @property
    def name(self) -> str:
        return self.path.name


def shard_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of the ``.npy`` at ``path`` from its header alone."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version not in readers:
            raise ValueError(f"{path}: .npy format version {version[0]}.{version[1]} is not supported")
        shape, _, dtype = readers[version](f)
        return shape, dtype, f.tell()


def check_layout(path: Path, rows: int, dim: int | None) -> tuple[int, int]:
    """The shape of shard ``path`` after checking that its header says ``rows`` x ``dim`` float32
    and that the file holds all the bytes its header describes; ValueError naming the file."""
    try:
        shape, dtype, offset = shard_header(path)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path} has no readable .npy header ({exc}); {RESUME}") from None
    if dtype != np.float32 or len(shape) != 2 or shape[0] != rows or (dim is not None and shape[1] != dim):
        raise ValueError(f"{path} holds a {dtype} array of shape {shape}; expected ({rows}, "
                         f"{dim if dim is not None else 'D'}) float32; {RESUME}")
    size, expected = path.stat().st_size, offset + shape[0] * shape[1] * 4
    if size != expected:
        raise ValueError(f"{path} is {'cut short' if size < expected else 'longer than its header says'}: "
                         f"{size:,} bytes where its header describes {shape[0]:,} x {shape[1]:,} float32 rows "
                         f"({expected:,} bytes; e.g. a copy or a write that did not finish); {RESUME}")
    return shape


def check_stats_layout(path: Path, rows: int) -> np.dtype:
    """The dtype of the statistics file ``path`` after checking that its header says ``rows``
    structured rows and that the file holds all the bytes its header describes; ValueError naming it."""
    try:
        shape, dtype, offset = shard_header(path)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path} has no readable .npy header ({exc}); {RESUME}") from None
    if dtype.names is None or dtype.hasobject or shape != (rows,):
        raise ValueError(f"{path} holds a {dtype} array of shape {shape}; expected {rows} rows of image "
                         f"statistics; {RESUME}")
    size, expected = path.stat().st_size, offset + rows * dtype.itemsize
    if size != expected:
        raise ValueError(f"{path} is {'cut short' if size < expected else 'longer than its header says'}: "
                         f"{size:,} bytes where its header describes {rows:,} rows of image statistics "
                         f"({expected:,} bytes); {RESUME}")
    return dtype


class _HashingFile:
    """A binary file that hashes what is written through it (``np.save`` writes its header and its
    data in chunks through ``write``)."""

    def __init__(self, f: BinaryIO):
        self.f, self.hash, self.nbytes = f, hashlib.new(DIGEST), 0

    def write(self, data) -> int:
        self.hash.update(data)
        self.nbytes += memoryview(data).nbytes
        return self.f.write(data)


def save_npy(f: BinaryIO, array: np.ndarray) -> tuple[int, str]:
    """Write ``array`` as ``.npy`` to ``f``; its size in bytes and the digest of those bytes."""
    out = _HashingFile(f)
    np.save(out, array, allow_pickle=False)
    return out.nbytes, out.hash.hexdigest()


# Files whose digest this process has checked: (device, inode, size, mtime_ns, digest). A swap, a
# copy or an edit changes the inode or the modification time, so such a file is hashed again.
_VERIFIED: set[tuple[int, int, int, int, str]] = set()


def _stat_key(path: Path, digest: str) -> tuple[int, int, int, int, str]:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, digest


def mark_verified(path: Path, digest: str) -> None:
    """Remember that ``path``, as it is now, has ``digest`` (the writer has just written it)."""
    _VERIFIED.add(_stat_key(path, digest))


def has_digest(path: Path, digest: str) -> bool:
    """Whether the bytes of ``path`` have ``digest`` (hashed once per process while unchanged)."""
    key = _stat_key(path, digest)
    if key in _VERIFIED:
        return True
    if file_digest(path, DIGEST) != digest:
        return False
    _VERIFIED.add(key)
    return True


def verify_shard(shard: ShardFile) -> None:
    """ValueError naming ``shard`` when its bytes are not those its manifest records."""
    try:
        same = os.stat(shard.path).st_size == shard.nbytes and has_digest(shard.path, shard.digest)
    except OSError as exc:
        raise ValueError(f"{shard.path} cannot be read ({exc}); {RESUME}") from None
    if not same:
        raise ValueError(f"{shard.path} does not hold the rows {shard.start:,}..{shard.stop - 1:,} that "
                         f"{shard.path.parent / MANIFEST} records for it: its contents differ (the file was "
                         f"changed, swapped with another shard, or copied from another folder); {RESUME}")


__all__ = ["DIGEST", "MANIFEST", "META", "RESUME", "SHARDS_FORMAT", "ShardFile", "check_layout", "has_digest",
           "mark_verified", "notes_name", "read_manifest", "save_npy", "shard_header", "shard_name", "span",
           "stats_name", "check_stats_layout", "verify_shard"]
