"""The history of a saved reference: one row per batch checked, in ``history.sqlite`` beside it.

Safe with concurrent checks (threads or processes): the file is in WAL mode with
``synchronous=FULL``; every write is one short ``BEGIN IMMEDIATE`` transaction on its own
connection, so writers queue on SQLite's lock (a busy timeout) instead of failing, and a writer
that still finds the file locked retries with backoff for up to :data:`RETRY_FOR_S` seconds.
"""
from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

HISTORY_FILE = "history.sqlite"
# The files SQLite keeps beside the history (not part of the reference's manifest).
HISTORY_FILES = (HISTORY_FILE, f"{HISTORY_FILE}-wal", f"{HISTORY_FILE}-shm", f"{HISTORY_FILE}-journal")
RETRY_FOR_S = 60.0
_BUSY_TIMEOUT_S = 10.0
_APPLICATION_ID = 0x4F4F4448  # "OODH": marks the file as ours (PRAGMA application_id)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    checked_at TEXT NOT NULL,
    batch_name TEXT NOT NULL,
    batch_digest TEXT NOT NULL,
    n INTEGER NOT NULL,
    alarm INTEGER NOT NULL,
    p_value REAL NOT NULL,
    card TEXT NOT NULL
);
"""
T = TypeVar("T")


class HistoryError(RuntimeError):
    """The history file cannot be used (not ours, unreadable, locked for too long)."""


class CheckHistory:
    """Past checks of one reference, in the SQLite file ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            if app_id not in (0, _APPLICATION_ID):
                raise HistoryError(f"{self.path} is not a check history of ood-explorer (application_id {app_id})")
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            if app_id == 0:  # a new file: create the table (twice is harmless: IF NOT EXISTS)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute(_SCHEMA)
                    conn.execute(f"PRAGMA application_id={_APPLICATION_ID}")
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except BaseException:
            conn.close()
            raise
        return conn

    def _retry(self, work: Callable[[sqlite3.Connection], T]) -> T:
        deadline = time.monotonic() + RETRY_FOR_S
        delay = 0.02
        while True:
            try:
                conn = self._connect()
                try:
                    return work(conn)
                finally:
                    conn.close()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise HistoryError(f"cannot use the check history {self.path}: {exc}") from None
                if time.monotonic() > deadline:
                    raise HistoryError(f"the check history {self.path} stayed locked for {RETRY_FOR_S:.0f} s") from None
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)
            except sqlite3.DatabaseError as exc:
                raise HistoryError(f"cannot use the check history {self.path}: {exc}") from None

    def record(self, checked_at: str, batch_name: str, batch_digest: str, n: int, alarm: bool, p_value: float,
               card: dict[str, Any]) -> int:
        """Append one check; returns its id. When this returns, the row is on disk."""
        row = (checked_at, batch_name, batch_digest, int(n), int(bool(alarm)), float(p_value),
               json.dumps(card, sort_keys=True))

        def write(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = conn.execute("INSERT INTO checks (checked_at, batch_name, batch_digest, n, alarm, p_value, "
                                      "card) VALUES (?, ?, ?, ?, ?, ?, ?)", row)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return int(cursor.lastrowid)

        return self._retry(write)

    def rows(self) -> list[tuple]:
        """Every check as ``(id, checked_at, batch_name, batch_digest, n, alarm, p_value, card JSON)``,
        oldest first; empty when nothing was checked yet."""
        if not self.path.exists():
            return []
        return self._retry(lambda conn: conn.execute(
            "SELECT id, checked_at, batch_name, batch_digest, n, alarm, p_value, card FROM checks ORDER BY id"
        ).fetchall())


__all__ = ["CheckHistory", "HISTORY_FILE", "HISTORY_FILES", "HistoryError"]
