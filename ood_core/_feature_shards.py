"""Reading a folder of feature shards: :class:`FeatureShards`, an (N, D) float32 array-like that is
never loaded whole, and the helpers that take it or a plain array (:func:`blocks`, :func:`rows`,
:func:`concat`). Public through :mod:`ood_core.shards`, which also holds the writer."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ._shard_format import (DIGEST, MANIFEST, META, RESUME, ShardFile, check_layout, check_stats_layout, has_digest,
                            read_manifest, shard_name, span, stats_name, verify_shard)

# Rows per block handed to a consumer: 65,536 x 1280 float32 is 320 MiB.
DEFAULT_BLOCK_ROWS = 65_536


def is_shard_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a shard manifest."""
    return (Path(path) / MANIFEST).is_file()


def meta_file(folder: str | os.PathLike) -> Path:
    """The ``meta.npz`` of the complete shard folder ``folder`` after checking that it is the one
    written with its shards; ValueError naming the file and saying how to fix it."""
    folder = Path(folder)
    manifest, path = read_manifest(folder), folder / META
    if not path.is_file():
        raise ValueError(f"{path} is missing: it holds the ids, labels and class names of the folder's rows; "
                         "run the same embed command again to finish the folder (its shards are kept)")
    record = manifest.get("meta")
    if not isinstance(record, dict) or not isinstance(record.get(DIGEST), str):
        raise ValueError(_unrecorded(folder))
    if path.stat().st_size != record.get("bytes") or not has_digest(path, record[DIGEST]):
        raise ValueError(f"{path} is not the {META} written with these shards (it was changed, or copied from "
                         "another folder); run the same embed command again to write it anew")
    return path


def _unrecorded(folder: Path) -> str:
    return (f"{folder / MANIFEST} records no digest of the folder's files (it was written by an earlier version "
            f"of ood-explorer, or edited), so its shards cannot be checked; {RESUME}")


class FeatureShards:
    """An (N, D) float32 feature matrix stored as ``.npy`` shards (optionally a subset of its rows).

    ``len``, ``shape``, ``dtype`` and ``ndim`` behave as an array's. Indexing (``shards[rows]``,
    ``shards[rows, cols]``) copies those rows into memory; :meth:`blocks` walks the rows a block at
    a time; :meth:`subset` is a lazy view of some rows (nothing is read). ``np.asarray(shards)``
    reads everything. A part may also be an in-memory array (see :func:`concat`).
    """

    def __init__(self, files: Sequence[ShardFile | Path | np.ndarray], counts: Sequence[int], dim: int,
                 positions: np.ndarray | None = None, folder: Path | None = None,
                 stats: tuple[str, Sequence[ShardFile]] | None = None):
        # A ShardFile is checked against its digest when first read; a bare Path is read unchecked.
        self.files = [f if isinstance(f, (np.ndarray, ShardFile)) else Path(f) for f in files]
        self.counts = np.asarray(counts, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self.dim = int(dim)
        self.positions = None if positions is None else np.asarray(positions, dtype=np.int64)
        self.folder = folder
        # (format, one ShardFile per shard): the per-image statistics written beside the shards, if any
        self.stats = None if stats is None else (str(stats[0]), list(stats[1]))

    @classmethod
    def open(cls, folder: str | os.PathLike) -> "FeatureShards":
        """The complete shard set in ``folder``; ValueError naming what is missing or wrong.

        Each shard's header and size are checked against the manifest's record here; its digest
        when its rows are first read (a shard cut short, swapped or copied from another folder is
        refused, naming it). The statistics files, when the manifest records them, are checked the
        same way (header and size here, digest when first read by :meth:`take_stats`)."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        n, size = manifest["n_rows"], manifest["shard_rows"]
        n_shards = -(-n // size)
        missing = [shard_name(k) for k in range(n_shards) if not (folder / shard_name(k)).is_file()]
        if missing:
            raise ValueError(f"{folder} is incomplete: {len(missing)} of {n_shards} shard(s) missing "
                             f"(first {missing[0]}); run the same embed command again to resume it")
        if manifest.get("complete") is False:
            raise ValueError(f"{folder} is incomplete: its shards are written but the run did not finish; "
                             "run the same embed command again to complete it")
        records, dim = manifest.get("shards"), manifest.get("dim")
        if not isinstance(records, list) or len(records) != n_shards or not isinstance(dim, int):
            raise ValueError(_unrecorded(folder))
        files = []
        for number, record in enumerate(records):
            path, (start, stop) = folder / shard_name(number), span(number, n, size)
            if not (isinstance(record, dict) and record.get("file") == path.name and record.get("index") == number
                    and record.get("rows") == [start, stop] and record.get("shape") == [stop - start, dim]):
                raise ValueError(f"{folder / MANIFEST}: the record of shard {number} ({record!r:.200}) does not "
                                 f"describe {path.name} (rows {start}..{stop - 1}, {dim} columns); {RESUME}")
            check_layout(path, stop - start, dim)
            shard = ShardFile(path, start, stop, int(record.get("bytes", -1)), str(record.get(DIGEST)))
            if path.stat().st_size != shard.nbytes:
                verify_shard(shard)  # says the contents differ
            files.append(shard)
        stats = _stats_files(folder, manifest, files) if "stats_format" in manifest else None
        return cls(files, [f.stop - f.start for f in files], dim, folder=folder, stats=stats)

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
        return FeatureShards(self.files, self.counts, self.dim, positions=base, folder=self.folder, stats=self.stats)

    def _base_rows(self) -> np.ndarray:
        """Rows of this set as positions into its parts' rows."""
        return np.arange(self.starts[-1]) if self.positions is None else self.positions

    @staticmethod
    def _map(part: ShardFile | Path | np.ndarray) -> np.ndarray:
        """A part's rows: memory-mapped for a file (drop the reference to close the map), whose
        digest is checked first (once per process while the file is unchanged)."""
        if isinstance(part, np.ndarray):
            return part
        if isinstance(part, ShardFile):
            verify_shard(part)
            part = part.path
        try:
            return np.load(part, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{part} cannot be read ({exc}); {RESUME}") from None

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

    def take_stats(self) -> dict[str, np.ndarray]:
        """The per-image statistics of this set's rows, in order, one array per field of the
        statistics files (text fields as str); each file's digest is checked when first read
        (ValueError naming a damaged or swapped one). ValueError when the folder keeps none."""
        if self.stats is None:
            raise ValueError(f"{self.folder or 'these features'} keeps no image statistics")
        rows = self._base_rows()
        shard_of = np.searchsorted(self.starts, rows, side="right") - 1
        out: dict[str, np.ndarray] = {}
        for number in np.unique(shard_of):
            where = np.flatnonzero(shard_of == number)
            part = self.stats[1][number]
            verify_shard(part)
            try:
                kept = np.load(part.path, allow_pickle=False)[rows[where] - self.starts[number]]
            except (OSError, ValueError) as exc:
                raise ValueError(f"{part.path} cannot be read ({exc}); {RESUME}") from None
            for name in kept.dtype.names:
                column = kept[name]
                if column.dtype.kind == "S":
                    column = column.astype(object)
                if name not in out:
                    out[name] = np.empty((len(rows), *column.shape[1:]), dtype=column.dtype)
                elif out[name].shape[1:] != column.shape[1:]:
                    raise ValueError(f"{part.path}: field {name!r} has shape {column.shape[1:]}, the other "
                                     f"statistics files {out[name].shape[1:]}; {RESUME}")
                out[name][where] = column
        return {name: (np.array([b.decode() for b in col], dtype=str) if col.dtype == object else col)
                for name, col in out.items()}

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


def _stats_files(folder: Path, manifest: dict, shards: list[ShardFile]) -> tuple[str, list[ShardFile]]:
    """(format, the statistics file of each shard) as the manifest records them, each file's header
    and size checked (ValueError naming a missing or damaged one)."""
    files = []
    for number, (record, shard) in enumerate(zip(manifest["shards"], shards)):
        path, stats = folder / stats_name(number), record.get("stats")
        if not (isinstance(stats, dict) and stats.get("file") == path.name
                and stats.get("format") == manifest["stats_format"] and stats.get("shape") == [shard.stop - shard.start]
                and isinstance(stats.get(DIGEST), str)):
            raise ValueError(f"{folder / MANIFEST}: the record of shard {number} does not describe its statistics "
                             f"file {path.name}; {RESUME}")
        if not path.is_file():
            raise ValueError(f"{path} is missing: it holds the image statistics of rows {shard.start:,}.."
                             f"{shard.stop - 1:,}; {RESUME}")
        check_stats_layout(path, shard.stop - shard.start)
        part = ShardFile(path, shard.start, shard.stop, int(stats.get("bytes", -1)), str(stats[DIGEST]))
        if path.stat().st_size != part.nbytes:
            verify_shard(part)  # says the contents differ
        files.append(part)
    return str(manifest["stats_format"]), files


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
    files: list[ShardFile | Path | np.ndarray] = []
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


__all__ = ["DEFAULT_BLOCK_ROWS", "FeatureShards", "blocks", "concat", "is_shard_folder", "meta_file", "rows"]
