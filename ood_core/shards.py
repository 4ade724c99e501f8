"""Features kept on disk as ``.npy`` shards, read memory-mapped a block at a time.

A shard folder holds ``manifest.json`` (format, rows, shard size, what was embedded) and
``features-00000.npy``, ``features-00001.npy``, ... of ``shard_rows`` rows each (the last may be
shorter), with an optional ``notes-00000.json`` per shard (e.g. the images that failed in it), an
optional ``stats-00000.npy`` per shard (one structured row per image: the statistics the issue types
need, collected in the same decoding pass, see :mod:`ood_core._shard_stats`) and a ``meta.npz`` of
per-row arrays written when the set is complete. A statistics file is recorded and checked as its
shard is (rows, size, digest): a damaged one makes its shard pending again for the writer, and is
refused by name when read. Each shard is written atomically,
then its notes with a record of it (number, rows, shape, size, digest of its bytes), so a folder
with some shards is a run interrupted half-way: :class:`ShardWriter` resumes it (a shard that does
not match its record is embedded again), :class:`FeatureShards` reads a complete one. A complete
folder's manifest holds every shard's record and ``meta.npz``'s; the reader checks each shard's
header and size when it opens the folder and its digest when its rows are first read, and refuses a
shard that was cut short, swapped or copied from another folder, naming it (see
:mod:`ood_core._shard_format`).

:class:`FeatureShards` never holds more than one block of rows in memory: a shard is mapped, the
rows wanted are copied out, the map is closed. Consumers iterate :meth:`FeatureShards.blocks` or
:func:`blocks` (which takes a plain array too), so a 1M x 1280 float32 set (5 GB) is never held
twice in RAM. :func:`concat` joins sets (and in-memory arrays) without reading them.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ._feature_shards import DEFAULT_BLOCK_ROWS, FeatureShards, blocks, concat, is_shard_folder, meta_file, rows
from ._files import atomic_write, file_digest
from ._shard_format import (DIGEST, MANIFEST, META, SHARDS_FORMAT, check_layout, check_stats_layout, has_digest,
                            mark_verified, notes_name, read_manifest, save_npy, shard_name, span, stats_name)

# Rows per shard written: 4,096 x 1280 float32 is 20 MiB; a 1M-image set is 245 shards, enough to
# keep many workers busy and to lose little work when a run is interrupted.
DEFAULT_SHARD_ROWS = 4_096


class ShardWriter:
    """Writes ``n_rows`` rows into ``folder`` as shards, resuming a run interrupted half-way.

    ``key`` names what is embedded (settings + the images' identity): a folder holding shards of
    another key is refused rather than mixed. :meth:`pending` lists the shards still to write (or
    to write again: a shard that does not match the record written with it, e.g. cut short, swapped
    or copied from another folder), :meth:`write` stores one atomically and then its record (with
    optional JSON ``notes``, read back by :meth:`notes`), :meth:`finish` stores the extra arrays
    (ids, labels, ...) in ``meta.npz``, every record in the manifest and returns the
    :class:`FeatureShards`.

    ``stats_format`` (e.g. ``ood_core.issues``' image statistics format): every shard is written with
    a structured array of per-image statistics beside it (``write(..., stats=)``), recorded like the
    shard; a shard whose statistics file is missing, damaged or of another format is pending again.
    """

    def __init__(self, folder: str | os.PathLike, *, n_rows: int, key: str,
                 shard_rows: int = DEFAULT_SHARD_ROWS, stats_format: str | None = None):
        self.folder = Path(folder)
        self.n_rows, self.key, self.shard_rows = int(n_rows), str(key), int(shard_rows)
        self.stats_format = None if stats_format is None else str(stats_format)
        if self.n_rows < 1 or self.shard_rows < 1:
            raise ValueError(f"n_rows and shard_rows must be positive; got {n_rows}, {shard_rows}")
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"{self.folder} exists and is not a folder; give a folder for the shards")
        if (self.folder / MANIFEST).is_file():
            old = read_manifest(self.folder)
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
        if self.stats_format is not None:
            manifest["stats_format"] = self.stats_format
        atomic_write(self.folder / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1).encode()))

    @property
    def n_shards(self) -> int:
        return -(-self.n_rows // self.shard_rows)

    def span(self, number: int) -> tuple[int, int]:
        """The rows ``[start, stop)`` of shard ``number``."""
        return span(number, self.n_rows, self.shard_rows)

    def _notes_file(self, number: int) -> dict[str, Any] | None:
        """The JSON beside shard ``number``: {"shard": its record, "notes": the caller's notes}."""
        try:
            data = json.loads((self.folder / notes_name(number)).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _record(self, number: int) -> dict[str, Any] | None:
        """The record written with shard ``number``, when it describes that shard's rows of this
        folder's images and settings (``key``: a shard and notes copied from another folder do not)."""
        record = (self._notes_file(number) or {}).get("shard")
        start, stop = self.span(number)
        if not (isinstance(record, dict) and record.get("file") == shard_name(number) and record.get("key") == self.key
                and record.get("index") == number and record.get("rows") == [start, stop]
                and isinstance(record.get("shape"), list) and isinstance(record.get(DIGEST), str)):
            return None
        if self.stats_format is not None:
            stats = record.get("stats")
            if not (isinstance(stats, dict) and stats.get("file") == stats_name(number)
                    and stats.get("format") == self.stats_format and stats.get("shape") == [stop - start]
                    and isinstance(stats.get(DIGEST), str)):
                return None
        return record

    def done(self, number: int) -> bool:
        """Whether shard ``number`` (and its statistics, when the folder keeps them) is on disk whole
        and holds the bytes recorded when it was written (each digest is computed once per process
        while the file is unchanged)."""
        return self._damaged(number) is None

    def _damaged(self, number: int) -> str | None:
        """None when shard ``number`` is done, else the name of its first file that is missing or
        does not match the record written with it."""
        path, record = self.folder / shard_name(number), self._record(number)
        if record is None or not path.is_file():
            return path.name
        rows = self.span(number)[1] - self.span(number)[0]
        try:
            shape = check_layout(path, rows, None)
            if not (list(shape) == record["shape"] and path.stat().st_size == record.get("bytes")
                    and has_digest(path, record[DIGEST])):
                return path.name
        except (OSError, ValueError):
            return path.name
        if self.stats_format is None:
            return None
        stats, spath = record["stats"], self.folder / stats_name(number)
        try:
            check_stats_layout(spath, rows)
            same = spath.stat().st_size == stats.get("bytes") and has_digest(spath, stats[DIGEST])
        except (OSError, ValueError):
            same = False
        return None if same else spath.name

    def pending(self) -> list[int]:
        """Numbers of the shards not yet written, or to write again: one on disk that does not match
        its record (or whose statistics file is missing or does not match its record) is listed too,
        with a warning naming the file."""
        left, damaged = [], []
        for number in range(self.n_shards):
            name = self._damaged(number)
            if name is None:
                continue
            left.append(number)
            if (self.folder / shard_name(number)).is_file():
                damaged.append(name)
        if damaged:
            warnings.warn(f"{len(damaged)} shard(s) in {self.folder} do not match the record written with them "
                          f"(first {damaged[0]}: missing, cut short, changed, swapped, or written by an earlier "
                          "version); they are embedded again", stacklevel=2)
        return left

    def write(self, number: int, features: np.ndarray, notes: dict[str, Any] | None = None,
              stats: np.ndarray | None = None) -> None:
        """Store shard ``number`` and its record (rows, shape, size, digest of the bytes written) with
        ``notes`` (JSON-able) beside it, each atomically: the record lands just before the shard is
        renamed into place, so a shard on disk always has its record (a run killed in between leaves
        a record without its shard, which the next run embeds). ``stats``: the shard's per-image
        statistics (a structured array, one row per image), required when the writer keeps them;
        written first, and recorded with the shard."""
        if not 0 <= number < self.n_shards:
            raise ValueError(f"shard number {number} is out of range for {self.n_shards} shard(s)")
        start, stop = self.span(number)
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[0] != stop - start:
            raise ValueError(f"shard {number} takes rows {start}..{stop - 1} ({stop - start} rows); "
                             f"got an array of shape {features.shape}")
        path = self.folder / shard_name(number)
        saved: list[tuple[int, str]] = []
        stats_record = self._write_stats(number, stats)

        def write_shard_then_record(f: BinaryIO) -> None:
            nbytes, digest = save_npy(f, features)
            saved.append((nbytes, digest))
            record = {"file": path.name, "key": self.key, "index": number, "rows": [start, stop],
                      "shape": list(features.shape), "bytes": nbytes, DIGEST: digest}
            if stats_record is not None:
                record["stats"] = stats_record
            atomic_write(self.folder / notes_name(number),
                         json.dumps({"shard": record, "notes": notes or {}}).encode())

        atomic_write(path, write_shard_then_record)
        mark_verified(path, saved[0][1])

    def _write_stats(self, number: int, stats: np.ndarray | None) -> dict[str, Any] | None:
        """Store shard ``number``'s statistics atomically; their record (None when not kept)."""
        if self.stats_format is None:
            if stats is not None:
                raise ValueError("this ShardWriter keeps no statistics (give stats_format= to keep them)")
            return None
        start, stop = self.span(number)
        if stats is None or not isinstance(stats, np.ndarray) or stats.dtype.names is None \
                or stats.dtype.hasobject or stats.shape != (stop - start,):
            raise ValueError(f"shard {number} needs its statistics: a structured array of {stop - start} rows "
                             f"without objects; got {None if stats is None else getattr(stats, 'dtype', type(stats))}")
        spath = self.folder / stats_name(number)
        saved: list[tuple[int, str]] = []
        atomic_write(spath, lambda f: saved.append(save_npy(f, stats)))
        mark_verified(spath, saved[0][1])
        return {"file": spath.name, "format": self.stats_format, "shape": [stop - start], "bytes": saved[0][0],
                DIGEST: saved[0][1]}

    def notes(self, number: int) -> dict[str, Any]:
        """The notes stored with shard ``number`` (empty when none were)."""
        path = self.folder / notes_name(number)
        if not path.is_file():
            return {}
        data = self._notes_file(number)
        if data is None:
            raise ValueError(f"{path} is not a readable JSON object; delete it and {shard_name(number)} "
                             "to embed that shard again")
        notes = data.get("notes", {}) if "shard" in data else data
        return notes if isinstance(notes, dict) else {}

    def finish(self, meta: dict[str, np.ndarray] | None = None) -> FeatureShards:
        """Mark the folder complete (all shards written and matching their records), store ``meta``
        arrays in ``meta.npz`` and every record (with meta's) in the manifest."""
        left = self.pending()
        if left:
            raise ValueError(f"{len(left)} shard(s) of {self.n_shards} are not written yet (first {left[0]})")
        records = [self._record(number) for number in range(self.n_shards)]
        dims = sorted({record["shape"][1] for record in records})
        if len(dims) != 1:
            raise ValueError(f"the shards in {self.folder} have different numbers of columns ({dims}); "
                             "give another folder, or delete that one to start again")
        path = atomic_write(self.folder / META, lambda f: np.savez(f, **(meta or {})))
        digest = file_digest(path, DIGEST)
        mark_verified(path, digest)
        self._manifest({"complete": True, "dim": dims[0], "shards": records,
                        "meta": {"file": META, "bytes": path.stat().st_size, DIGEST: digest}})
        return FeatureShards.open(self.folder)


def read_meta(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The extra arrays stored by :meth:`ShardWriter.finish` in a complete folder's ``meta.npz``,
    after checking that it is the file written with the shards (ValueError naming it otherwise)."""
    with np.load(meta_file(folder), allow_pickle=False) as data:
        return {name: np.asarray(data[name]) for name in data.files}


__all__ = ["DEFAULT_BLOCK_ROWS", "DEFAULT_SHARD_ROWS", "FeatureShards", "ShardWriter", "blocks", "concat",
           "is_shard_folder", "meta_file", "read_manifest", "read_meta", "rows", "shard_name"]
