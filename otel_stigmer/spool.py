"""A durable spool: undelivered events survive a crash in a local SQLite file.

Enabled with ``STIGMER_SPOOL_PATH``. Events are written when they enter the outbox and
deleted once delivered (or dropped); a process that starts with a non-empty spool
delivers those events first, with their original event ids and sequence numbers, so the
receiver de-duplicates anything that had in fact arrived before the crash.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from otel_stigmer.config import ENV_SPOOL_PATH
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.exceptions import ConfigError

__all__ = ["Spool", "SqliteSpool"]


class Spool(Protocol):
    """Durable storage for undelivered events; the delivery outbox calls these hooks.

    ``store`` runs when events enter the outbox, ``remove`` once they were delivered or
    dropped, ``load`` once at start-up. All run on the sender thread.
    """

    def load(self) -> list[WorkflowProgressEvent]:
        """Events left undelivered by an earlier process, in delivery order."""

    def store(self, events: Sequence[WorkflowProgressEvent]) -> None:
        """Persist events that entered the outbox."""

    def remove(self, event_ids: Sequence[str]) -> None:
        """Forget events that were delivered or dropped."""

    def close(self) -> None:
        """Release the file."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS spooled_events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL
)
"""


class SqliteSpool:
    """Undelivered events in a SQLite file (WAL, synchronous=NORMAL).

    Raises:
        ConfigError: At construction, when the file cannot be created or written, or is
            not a spool (corrupted, or another kind of file).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            check = self._db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            self._db.execute(_SCHEMA)
            self._db.execute("SELECT position, event_id, payload FROM spooled_events LIMIT 1")
        except sqlite3.Error as error:
            raise ConfigError(
                f"{ENV_SPOOL_PATH}={str(self.path)!r} cannot be used as a spool ({error}). "
                "Fix: point it to a new file in a writable directory, or move the damaged "
                "file away."
            ) from None

    def load(self) -> list[WorkflowProgressEvent]:
        """Events left by an earlier process, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT payload FROM spooled_events ORDER BY position"
            ).fetchall()
        return [WorkflowProgressEvent.FromString(payload) for (payload,) in rows]

    def store(self, events: Sequence[WorkflowProgressEvent]) -> None:
        """Persist ``events`` (ignoring ids already spooled)."""
        rows = [(event.event_id, event.SerializeToString()) for event in events]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO spooled_events (event_id, payload) VALUES (?, ?)", rows
            )
            self._db.execute("COMMIT")

    def remove(self, event_ids: Sequence[str]) -> None:
        """Forget delivered or dropped events."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "DELETE FROM spooled_events WHERE event_id = ?", [(i,) for i in event_ids]
            )
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM spooled_events").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
