"""File helpers shared by the cache, the sources, the weights and the dashboard: content digests,
atomic writes (a reader never sees half a file) and reading a kept ``.npz``."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

_BLOCK = 1 << 20


def digest(payload: Any) -> str:
    """A short stable name for a JSON-able payload (run ids, cache keys of derived views)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's contents, read in 1 MiB blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, content: bytes | Callable[[BinaryIO], None]) -> Path:
    """Write ``content`` (bytes, or a function writing to a binary file) to ``path`` through a
    temporary file in the same folder and ``os.replace``; the folder is created when missing.
    On any error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:24]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(content, (bytes, bytearray, memoryview)):
                f.write(content)
            else:
                content(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def open_npz(path: str | os.PathLike) -> Iterator[Any]:
    """``np.load(path, allow_pickle=False)`` of a ``.npz`` as a context manager whose file is closed
    however the load ends (``np.load`` leaves the file open when it is not a valid zip)."""
    import numpy as np

    with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
        yield data


def read_kept(path: str | os.PathLike, what: str, check: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
    """The arrays of a ``.npz`` a run kept to reuse (a map, pred_probs: ``cache.run_file``), or None
    when there is none. A file that cannot be read (truncated, not a zip, an array missing or pickled)
    or that ``check`` refuses (it raises ``ValueError``, e.g. rows that disagree with the run) gives a
    ``RuntimeWarning`` naming the file and ``what`` it held, and None: the caller computes it again and
    writes it over the damaged one."""
    import warnings
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with open_npz(path) as data:
            arrays = {name: np.asarray(data[name]) for name in data.files}
        check(arrays)
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        warnings.warn(f"the kept {what} {path} is unreadable or does not match this run "
                      f"({type(exc).__name__}: {exc}); computing it again", RuntimeWarning, stacklevel=2)
        return None
    return arrays
