"""Features kept on disk as ``.npy`` shards, read memory-mapped a block at a time.

A shard folder holds ``manifest.json`` (format, rows, shard size, what was embedded) and
``features-00000.npy``, ``features-00001.npy``, ... of ``shard_rows`` rows each (the last may be
shorter), with an optional ``notes-00000.json`` per shard (e.g. the images that failed in it) and a
``meta.npz`` of per-row arrays written when the set is complete. Each shard is written atomically
(its notes first), so a folder with some shards is a run interrupted half-way: :class:`ShardWriter`
resumes it, :class:`FeatureShards` reads a complete one.

:class:`FeatureShards` never holds more than one block of rows in memory: a shard is mapped, the
rows wanted are copied out, the map is closed. Consumers iterate :meth:`FeatureShards.blocks` or
:func:`blocks` (which takes a plain array too), so a 1M x 1280 float32 set (5 GB) is never held
twice in RAM. :func:`concat` joins sets (and in-memory arrays) without reading them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ._files import atomic_write

SHARDS_FORMAT = "ood-explorer-shards-v1"
MANIFEST = "manifest.json"
# Rows per shard written: 4,096 x 1280 float32 is 20 MiB; a 1M-image set is 245 shards, enough to
# keep many workers busy and to lose little work when a run is interrupted.
DEFAULT_SHARD_ROWS = 4_096
# Rows per block handed to a consumer: 65,536 x 1280 float32 is 320 MiB.
DEFAULT_BLOCK_ROWS = 65_536


def shard_name(number: int) -> str:
    return f"features-{number:05d}.npy"


def notes_name(number: int) -> str:
    return f"notes-{number:05d}.json"


def is_shard_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a shard manifest."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The checked ``manifest.json`` of a shard folder (ValueError when absent or not one)."""
    return _read_manifest(Path(folder))


def _read_manifest(folder: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{folder} has no readable {MANIFEST} ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != SHARDS_FORMAT:
        raise ValueError(f"{folder / MANIFEST} is not a feature-shard manifest ({SHARDS_FORMAT})")
    for name in ("n_rows", "shard_rows"):
        if not isinstance(manifest.get(name), int) or manifest[name] < 1:
            raise ValueError(f"{folder / MANIFEST}: {name} must be a positive integer; got {manifest.get(name)!r}")
    return manifest


def _shard_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the ``.npy`` at ``path`` from its header alone."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version not in readers:
            raise ValueError(f"{path}: .npy format version {version[0]}.{version[1]} is not supported")
        shape, _, dtype = readers[version](f)
    return shape, dtype


class FeatureShards:
    """An (N, D) float32 feature matrix stored as ``.npy`` shards (optionally a subset of its rows).

    ``len``, ``shape``, ``dtype`` and ``ndim`` behave as an array's. Indexing (``shards[rows]``,
    ``shards[rows, cols]``) copies those rows into memory; :meth:`blocks` walks the rows a block at
    a time; :meth:`subset` is a lazy view of some rows (nothing is read). ``np.asarray(shards)``
    reads everything. A part may also be an in-memory array (see :func:`concat`).
    """

    def __init__(self, files: Sequence[Path | np.ndarray], counts: Sequence[int], dim: int,
                 positions: np.ndarray | None = None, folder: Path | None = None):
        self.files = [f if isinstance(f, np.ndarray) else Path(f) for f in files]
        self.counts = np.asarray(counts, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.dim = int(dim)
        self.positions = None if positions is None else np.asarray(positions, dtype=np.int64)
        self.folder = folder

    @classmethod
    def open(cls, folder: str | os.PathLike) -> "FeatureShards":
        """The complete shard set in ``folder``; ValueError naming what is missing or wrong."""
        folder = Path(folder)
        manifest = _read_manifest(folder)
        n, size = manifest["n_rows"], manifest["shard_rows"]
        files, counts, dim = [], [], manifest.get("dim")
        missing = []
        for number in range(-(-n // size)):
            path = folder / shard_name(number)
            rows = min(size, n - number * size)
            if not path.is_file():
                missing.append(path.name)
                continue
            shape, dtype = _shard_header(path)
            if dtype != np.float32 or len(shape) != 2 or shape[0] != rows or (dim is not None and shape[1] != dim):
                raise ValueError(f"{path} holds a {dtype} array of shape {shape}; expected ({rows}, "
                                 f"{dim if dim is not None else 'D'}) float32")
            dim = shape[1]
            files.append(path)
            counts.append(rows)
        if missing:
            raise ValueError(f"{folder} is incomplete: {len(missing)} of {-(-n // size)} shard(s) missing "
                             f"(first {missing[0]}); run the same embed command again to resume it")
        if manifest.get("complete") is False:
            raise ValueError(f"{folder} is incomplete: its shards are written but the run did not finish; "
                             "run the same embed command again to complete it")
        return cls(files, counts, dim, folder=folder)

    # ----------------------------------------------------------------- array-like surface
    def __len__(self) -> int:
        return int(self.starts[-1]) if self.positions is None else len(self.positions)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self), self.dim)

    dtype = np.dtype(np.float32)
    ndim = 2

    @property
    def nbytes(self) -> int:
        """Bytes the rows would take in memory (none are held)."""
        return len(self) * self.dim * 4

    def __repr__(self) -> str:
        where = f" in {self.folder}" if self.folder else ""
        return f"FeatureShards({len(self):,} x {self.dim}, {len(self.files)} shard(s){where})"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.take(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype, copy=False)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):  # shards[rows, cols]: the rows read, then their columns
            if len(key) != 2:
                raise IndexError(f"FeatureShards is 2-D; got {len(key)} indices")
            return self[key[0]][:, key[1]] if not isinstance(key[0], (int, np.integer)) else self[key[0]][key[1]]
        if isinstance(key, (int, np.integer)):
            return self.take(np.array([key]))[0]
        if isinstance(key, slice):
            return self.take(np.arange(len(self))[key])
        key = np.asarray(key)
        if key.dtype == bool:
            if key.shape != (len(self),):
                raise IndexError(f"boolean index of shape {key.shape} for {len(self):,} rows")
            key = np.flatnonzero(key)
        return self.take(key)

    def subset(self, positions: np.ndarray) -> "FeatureShards":
        """A lazy view of rows ``positions`` (into this set): nothing is read until used."""
        positions = np.asarray(positions)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        positions = positions.astype(np.int64)
        base = positions if self.positions is None else self.positions[positions]
        return FeatureShards(self.files, self.counts, self.dim, positions=base, folder=self.folder)

    def _base_rows(self) -> np.ndarray:
        """Rows of this set as positions into its parts' rows."""
        return np.arange(self.starts[-1]) if self.positions is None else self.positions

    @staticmethod
    def _map(part: Path | np.ndarray) -> np.ndarray:
        """A part's rows: memory-mapped for a file (drop the reference to close the map)."""
        return part if isinstance(part, np.ndarray) else np.load(part, mmap_mode="r", allow_pickle=False)

    # ----------------------------------------------------------------- reading
    def take(self, positions: np.ndarray) -> np.ndarray:
        """Rows ``positions`` (into this set), in that order, as an in-memory float32 array."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        n = len(self)
        if positions.size and (positions.min() < -n or positions.max() >= n):
            raise IndexError(f"row index out of range for {n:,} rows")
        positions = positions % n if n else positions
        rows = positions if self.positions is None else self.positions[positions]
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        shard_of = np.searchsorted(self.starts, rows, side="right") - 1
        for number in np.unique(shard_of):
            where = np.flatnonzero(shard_of == number)
            mapped = self._map(self.files[number])
            out[where] = mapped[rows[where] - self.starts[number]]
            del mapped  # closes the map: its pages leave this process
        return out

    def blocks(self, block_rows: int = DEFAULT_BLOCK_ROWS) -> Iterator[np.ndarray]:
        """The rows in order, ``block_rows`` at a time, each block an in-memory copy."""
        for start in range(0, len(self), block_rows):
            stop = min(start + block_rows, len(self))
            if self.positions is None:
                yield self._contiguous(start, stop)
            else:
                yield self.take(np.arange(start, stop))

    def _contiguous(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.dim), dtype=np.float32)
        first = int(np.searchsorted(self.starts, start, side="right") - 1)
        at = start
        for number in range(first, len(self.files)):
            if at >= stop:
                break
            lo, hi = at - self.starts[number], min(stop, self.starts[number + 1]) - self.starts[number]
            mapped = self._map(self.files[number])
            out[at - start: at - start + hi - lo] = mapped[lo:hi]
            del mapped
            at += hi - lo
        return out


def concat(parts: Sequence[np.ndarray | FeatureShards]) -> np.ndarray | FeatureShards:
    """The rows of ``parts`` one after the other: ``np.concatenate`` when all are in-memory arrays,
    else a lazy :class:`FeatureShards` (shards stay on disk; an array part is kept as it is, as
    float32)."""
    parts = list(parts)
    if not parts:
        raise ValueError("concat needs at least one part")
    dims = {int(p.shape[1]) for p in parts}
    if len(dims) != 1 or any(p.ndim != 2 for p in parts):
        raise ValueError(f"concat: parts must be 2-D with the same number of columns; got {[p.shape for p in parts]}")
    if not any(isinstance(p, FeatureShards) for p in parts):
        dtype = np.result_type(*parts)
        return np.concatenate([np.asarray(p, dtype=dtype) for p in parts])
    files: list[Path | np.ndarray] = []
    counts: list[int] = []
    positions: list[np.ndarray] = []
    offset = 0
    for part in parts:
        if isinstance(part, FeatureShards):
            files += part.files
            counts += part.counts.tolist()
            positions.append(part._base_rows() + offset)
            offset += int(part.starts[-1])
        else:
            files.append(np.ascontiguousarray(part, dtype=np.float32))
            counts.append(len(part))
            positions.append(np.arange(len(part), dtype=np.int64) + offset)
            offset += len(part)
    whole = all(not isinstance(p, FeatureShards) or p.positions is None for p in parts)
    return FeatureShards(files, counts, dims.pop(), positions=None if whole else np.concatenate(positions))


def blocks(X: np.ndarray | FeatureShards, block_rows: int = DEFAULT_BLOCK_ROWS) -> Iterator[np.ndarray]:
    """Rows of ``X`` (an array, a memmap or :class:`FeatureShards`) ``block_rows`` at a time."""
    if isinstance(X, FeatureShards):
        yield from X.blocks(block_rows)
        return
    for start in range(0, len(X), block_rows):
        yield np.asarray(X[start:start + block_rows])


def rows(X: np.ndarray | FeatureShards, positions: np.ndarray) -> np.ndarray | FeatureShards:
    """Rows ``positions`` of ``X``: a copy for an in-memory array, a lazy view of shards or of a
    memmap (which is wrapped so that its rows are read a block at a time)."""
    if isinstance(X, FeatureShards):
        if len(positions) == len(X) and np.array_equal(positions, np.arange(len(X))):
            return X
        return X.subset(positions)
    if isinstance(X, np.memmap) and len(positions) == len(X) and np.array_equal(positions, np.arange(len(X))):
        return X
    return X[positions]


class ShardWriter:
    """Writes ``n_rows`` rows into ``folder`` as shards, resuming a run interrupted half-way.

    ``key`` names what is embedded (settings + the images' identity): a folder holding shards of
    another key is refused rather than mixed. :meth:`pending` lists the shards still to write,
    :meth:`write` stores one atomically (with optional JSON ``notes``, read back by
    :meth:`notes`), :meth:`finish` records the dimension and the extra arrays (ids, labels, ...)
    in ``meta.npz`` and returns the :class:`FeatureShards`.
    """

    def __init__(self, folder: str | os.PathLike, *, n_rows: int, key: str,
                 shard_rows: int = DEFAULT_SHARD_ROWS):
        self.folder = Path(folder)
        self.n_rows, self.key, self.shard_rows = int(n_rows), str(key), int(shard_rows)
        if self.n_rows < 1 or self.shard_rows < 1:
            raise ValueError(f"n_rows and shard_rows must be positive; got {n_rows}, {shard_rows}")
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"{self.folder} exists and is not a folder; give a folder for the shards")
        if (self.folder / MANIFEST).is_file():
            old = _read_manifest(self.folder)
            if old.get("key") != self.key or old["n_rows"] != self.n_rows:
                rows = f" ({old['n_rows']:,} rows; this run: {self.n_rows:,})" if old["n_rows"] != self.n_rows else ""
                raise ValueError(f"{self.folder} holds shards of other images or embedding settings{rows}; give "
                                 "another folder, or delete that one to start again")
            if old["shard_rows"] != self.shard_rows:
                raise ValueError(f"{self.folder} was written with shards of {old['shard_rows']:,} rows; this run "
                                 f"asks for {self.shard_rows:,}: give the same shard size to resume it, another "
                                 "folder, or delete that one to start again")
            for leftover in self.folder.glob(".*.tmp"):  # half-written by a run that was killed
                leftover.unlink(missing_ok=True)
        elif self.folder.is_dir() and any(self.folder.iterdir()):
            raise ValueError(f"{self.folder} is not empty and holds no shard manifest; give an empty or new folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._manifest({"complete": False})

    def _manifest(self, extra: dict[str, Any]) -> None:
        manifest = {"format": SHARDS_FORMAT, "key": self.key, "n_rows": self.n_rows,
                    "shard_rows": self.shard_rows, **extra}
        atomic_write(self.folder / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1).encode()))

    @property
    def n_shards(self) -> int:
        return -(-self.n_rows // self.shard_rows)

    def span(self, number: int) -> tuple[int, int]:
        """The rows ``[start, stop)`` of shard ``number``."""
        start = number * self.shard_rows
        return start, min(start + self.shard_rows, self.n_rows)

    def done(self, number: int) -> bool:
        """Whether shard ``number`` is on disk whole (an atomic write either happened or did not)."""
        path = self.folder / shard_name(number)
        if not path.is_file():
            return False
        try:
            shape, dtype = _shard_header(path)
        except (OSError, ValueError):
            return False
        start, stop = self.span(number)
        return dtype == np.float32 and len(shape) == 2 and shape[0] == stop - start

    def pending(self) -> list[int]:
        """Numbers of the shards not yet written."""
        return [number for number in range(self.n_shards) if not self.done(number)]

    def write(self, number: int, features: np.ndarray, notes: dict[str, Any] | None = None) -> None:
        """Store shard ``number`` atomically; ``notes`` (JSON-able) are stored first, beside it."""
        if not 0 <= number < self.n_shards:
            raise ValueError(f"shard number {number} is out of range for {self.n_shards} shard(s)")
        start, stop = self.span(number)
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] != stop - start:
            raise ValueError(f"shard {number} takes rows {start}..{stop - 1} ({stop - start} rows); "
                             f"got an array of shape {features.shape}")
        if notes is not None:
            atomic_write(self.folder / notes_name(number), json.dumps(notes).encode())
        atomic_write(self.folder / shard_name(number), lambda f: np.save(f, features, allow_pickle=False))

    def notes(self, number: int) -> dict[str, Any]:
        """The notes stored with shard ``number`` (empty when none were)."""
        path = self.folder / notes_name(number)
        if not path.is_file():
            return {}
        try:
            notes = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} is not readable JSON ({exc}); delete it and {shard_name(number)} "
                             "to embed that shard again") from None
        return notes if isinstance(notes, dict) else {}

    def finish(self, meta: dict[str, np.ndarray] | None = None) -> FeatureShards:
        """Mark the folder complete (all shards written) and store ``meta`` arrays beside them."""
        left = self.pending()
        if left:
            raise ValueError(f"{len(left)} shard(s) of {self.n_shards} are not written yet (first {left[0]})")
        dim = _shard_header(self.folder / shard_name(0))[0][1]
        if meta:
            atomic_write(self.folder / "meta.npz", lambda f: np.savez(f, **meta))
        self._manifest({"complete": True, "dim": int(dim)})
        return FeatureShards.open(self.folder)


def read_meta(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The extra arrays stored by :meth:`ShardWriter.finish` (empty when there are none)."""
    path = Path(folder) / "meta.npz"
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return {name: np.asarray(data[name]) for name in data.files}


__all__ = ["FeatureShards", "ShardWriter", "blocks", "concat", "is_shard_folder", "read_manifest", "read_meta", "rows"]
