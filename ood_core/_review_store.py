"""Review marks in one SQLite file: every acknowledged mark survives crashes and concurrent writers.

How nothing is lost: the file is in WAL mode with ``synchronous=FULL`` (each commit is on disk
before :meth:`ReviewStore.mark` returns, also across a power cut, not only a killed process); every
call is one short transaction (``BEGIN IMMEDIATE`` takes the write lock up front, so two writers
queue instead of failing half-way); a writer that finds the file locked waits (SQLite's busy
timeout) and retries with backoff for up to :data:`RETRY_FOR_S` seconds. A process killed
mid-transaction leaves an uncommitted tail in the WAL that SQLite discards on the next open.
Each thread (and each process after a fork) uses its own connection, so one store can be shared
by threads (dashboard sessions).
"""
from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from ._datadir import user_data_dir

logger = logging.getLogger(__name__)

VERDICTS = ("outlier", "fine", "unsure")
REVIEWS_FILE = "reviews.sqlite3"
MAX_NOTE_CHARS = 10_000
RETRY_FOR_S = 30.0  # how long a writer keeps retrying a locked file before giving up
_BUSY_TIMEOUT_S = 5.0  # SQLite's own wait inside one attempt
_APPLICATION_ID = 0x4F4F4452  # "OODR": marks the file as ours (PRAGMA application_id)
_SCHEMA_VERSION = 2  # 2: marks.split, the split a mark was made under
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS marks (
    dataset TEXT NOT NULL,
    item TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN {VERDICTS!r}),
    note TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL,
    split TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (dataset, item)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS datasets (dataset TEXT PRIMARY KEY, label TEXT NOT NULL DEFAULT '') WITHOUT ROWID;
"""
_UPSERT = ("INSERT INTO marks (dataset, item, verdict, note, updated_at, split) "
           "VALUES (?, ?, ?, COALESCE(?, ''), ?, ?) "
           "ON CONFLICT (dataset, item) DO UPDATE SET verdict = excluded.verdict, "
           "note = COALESCE(?, marks.note), updated_at = excluded.updated_at, split = excluded.split")
T = TypeVar("T")


class ReviewStoreError(RuntimeError):
    """The review database cannot be used (not ours, unreadable, locked for too long)."""


@dataclass(frozen=True)
class Mark:
    """One review decision on one item."""

    verdict: str  # one of VERDICTS
    note: str
    updated_at: datetime  # when it was last set, UTC
    split: str = ""  # the split it was made under (ood_core.review.split_key); "" when not recorded


@dataclass(frozen=True)
class DatasetMarks:
    """The marks stored for one dataset key (see :meth:`ReviewStore.datasets`)."""

    dataset: str
    label: str  # how the data was described when last marked ("" when never given)
    marks: int
    updated_at: datetime


def default_reviews_path() -> Path:
    """``reviews.sqlite3`` in the user data folder (``$OOD_DATA_DIR``, else the platform's)."""
    return user_data_dir() / REVIEWS_FILE


def check_verdict(verdict: str) -> str:
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}; got {verdict!r}")
    return verdict


def _check_dataset(dataset: str) -> str:
    if not isinstance(dataset, str) or not dataset:
        raise TypeError(f"dataset must be a non-empty dataset key (str, see dataset_key); got {dataset!r}")
    return dataset


def item_list(items: str | Iterable[str]) -> list[str]:
    """One item id or many, as a list of ids (str); anything else is a TypeError naming it."""
    values = [items] if isinstance(items, str) else items
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"items must be an item id (str) or a sequence of them; got {type(items).__name__}") from None
    for value in values:
        if not isinstance(value, str) or not value:
            raise TypeError(f"items must be non-empty item ids (str); got {value!r} ({type(value).__name__})")
    return [str(value) for value in values]


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _when(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


class ReviewStore:
    """Review marks (``outlier`` / ``fine`` / ``unsure`` and a note) per dataset key and item id.

    ``path``: the SQLite file (default :func:`default_reviews_path`); its folder is created.
    Marks are keyed by a dataset key (:func:`ood_core.dataset_key`: the data's content, not its
    path) and the item id, so they come back in every session, after a restart, and when the same
    data is run again with other settings. Safe to share between threads and processes.
    """

    def __init__(self, path: str | Path | None = None):
        self._path = Path(path).expanduser() if path is not None else default_reviews_path()
        if self._path.is_dir():
            raise ReviewStoreError(f"the review database path {str(self._path)!r} is a folder; give a file path")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReviewStoreError(f"cannot create the folder of the review database {str(self._path)!r} "
                                   f"({exc.strerror or exc}); set OOD_DATA_DIR or pass another path") from None
        self._local = threading.local()  # one connection per thread: (pid, connection)
        self._retry(self._setup)

    @property
    def path(self) -> Path:
        """The SQLite file the marks are kept in."""
        return self._path

    def __repr__(self) -> str:
        return f"ReviewStore({str(self._path)!r})"

    # ------------------------------------------------------------------ writing
    def mark(self, dataset: str, items: str | Iterable[str], verdict: str, note: str | None = None, *,
             label: str | None = None, split: str | None = None) -> int:
        """Set ``verdict`` (one of :data:`VERDICTS`) on one item id or many, in one transaction; returns
        how many. ``note``: None keeps each item's note (new marks get ""), a string replaces it.
        ``label``: how to call the data in :meth:`datasets` (e.g. ``analysis.source``). ``split``: the
        fit/query split the marks were made under (``ood_core.review.split_key(analysis)``), so an export
        can score them under the same one. When this returns, the marks are on disk."""
        dataset, verdict, ids = _check_dataset(dataset), check_verdict(verdict), item_list(items)
        if split is not None and not isinstance(split, str):
            raise TypeError(f"split must be text (ood_core.review.split_key) or None; got {type(split).__name__}")
        if note is not None and not isinstance(note, str):
            raise TypeError(f"note must be text (str) or None; got {type(note).__name__}")
        if note is not None and len(note) > MAX_NOTE_CHARS:
            raise ValueError(f"note is {len(note):,} characters long; at most {MAX_NOTE_CHARS:,} are kept")
        if not ids:
            return 0

        def write(conn: sqlite3.Connection) -> int:
            now = time.time()
            conn.executemany(_UPSERT, [(dataset, item, verdict, note, now, split or "", note) for item in ids])
            if label:
                conn.execute("INSERT INTO datasets (dataset, label) VALUES (?, ?) ON CONFLICT (dataset) "
                             "DO UPDATE SET label = excluded.label", (dataset, str(label)))
            return len(ids)

        return self._transaction(write, write=True)

    def clear(self, dataset: str, items: str | Iterable[str]) -> int:
        """Remove the marks of one item id or many (in one transaction); returns how many were there."""
        dataset, ids = _check_dataset(dataset), item_list(items)
        if not ids:
            return 0

        def delete(conn: sqlite3.Connection) -> int:
            before = conn.total_changes
            conn.executemany("DELETE FROM marks WHERE dataset = ? AND item = ?", [(dataset, i) for i in ids])
            return conn.total_changes - before

        return self._transaction(delete, write=True)

    # ------------------------------------------------------------------ reading
    def marks(self, dataset: str) -> dict[str, Mark]:
        """Every mark of ``dataset``: item id -> :class:`Mark`."""
        dataset = _check_dataset(dataset)
        rows = self._transaction(lambda conn: conn.execute(
            "SELECT item, verdict, note, updated_at, split FROM marks WHERE dataset = ?", (dataset,)).fetchall())
        return {item: Mark(verdict, note, _when(at), split) for item, verdict, note, at, split in rows}

    def counts(self, dataset: str) -> dict[str, int]:
        """How many items of ``dataset`` carry each verdict (every verdict present, 0 when none)."""
        dataset = _check_dataset(dataset)
        rows = self._transaction(lambda conn: conn.execute(
            "SELECT verdict, COUNT(*) FROM marks WHERE dataset = ? GROUP BY verdict", (dataset,)).fetchall())
        found = dict(rows)
        return {verdict: int(found.get(verdict, 0)) for verdict in VERDICTS}

    def datasets(self) -> list[DatasetMarks]:
        """Every dataset key with marks, most recently marked first."""
        rows = self._transaction(lambda conn: conn.execute(
            "SELECT m.dataset, COALESCE(d.label, ''), COUNT(*), MAX(m.updated_at) FROM marks m "
            "LEFT JOIN datasets d ON d.dataset = m.dataset GROUP BY m.dataset ORDER BY MAX(m.updated_at) DESC"
        ).fetchall())
        return [DatasetMarks(dataset, label, int(n), _when(at)) for dataset, label, n, at in rows]

    # ------------------------------------------------------------------ SQLite
    def _connect(self) -> sqlite3.Connection:
        """This thread's connection (a new one in a new thread or a forked process)."""
        held = getattr(self._local, "held", None)
        if held is not None and held[0] == os.getpid():
            return held[1]
        conn = sqlite3.connect(self._path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        self._local.held = (os.getpid(), conn)
        return conn

    def _drop_connection(self) -> None:
        """Close this thread's connection after an error; the next call opens a fresh one."""
        held, self._local.held = getattr(self._local, "held", None), None
        if held is not None and held[0] == os.getpid():
            try:
                held[1].close()
            except sqlite3.Error:
                pass

    def _setup(self) -> None:
        """Check the file is ours (or new), switch it to WAL and create the tables."""
        conn = self._connect()
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app_id not in (0, _APPLICATION_ID) or (app_id == 0 and tables - {"marks", "datasets"}):
            raise ReviewStoreError(f"{str(self._path)!r} is an SQLite database of another program, not a "
                                   "review database; pass another path (or set OOD_DATA_DIR)")
        if version > _SCHEMA_VERSION:
            raise ReviewStoreError(f"{str(self._path)!r} was written by a newer version of ood-explorer "
                                   f"(review schema {version}; this one reads {_SCHEMA_VERSION}); upgrade it")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":  # e.g. a file system without shared memory
            logger.warning("the review database %s cannot use WAL mode (journal mode %s); writers will wait "
                           "for each other longer", self._path, mode)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(marks)")}
            if "split" not in columns:  # a version 1 file: its marks' split was not recorded
                conn.execute("ALTER TABLE marks ADD COLUMN split TEXT NOT NULL DEFAULT ''")
            conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _transaction(self, work: Callable[[sqlite3.Connection], T], write: bool = False) -> T:
        """``work(conn)`` in one transaction (``BEGIN IMMEDIATE`` when it writes), retried while locked."""
        def attempt() -> T:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._retry(attempt)

    def _retry(self, attempt: Callable[[], T]) -> T:
        """``attempt()``, again after a short random backoff while the file is locked (up to
        :data:`RETRY_FOR_S` s); SQLite's errors become :class:`ReviewStoreError` naming the file."""
        deadline, delay = time.monotonic() + RETRY_FOR_S, 0.01
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as exc:
                self._drop_connection()
                if not _is_busy(exc):
                    raise self._error(exc) from None
                if time.monotonic() > deadline:
                    raise ReviewStoreError(f"the review database {str(self._path)!r} stayed locked by another "
                                           f"program for over {RETRY_FOR_S:g} s; try again") from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.5)
            except sqlite3.DatabaseError as exc:
                self._drop_connection()
                raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> ReviewStoreError:
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            return ReviewStoreError(f"{str(self._path)!r} is not a readable review database ({text}); move it "
                                    "away to start afresh, or pass another path (or set OOD_DATA_DIR)")
        return ReviewStoreError(f"cannot use the review database {str(self._path)!r} ({text}); "
                                "set OOD_DATA_DIR or pass another path")
