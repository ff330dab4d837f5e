"""A durable spool: undelivered events survive a crash in a local SQLite file.

Enabled with ``STIGMER_SPOOL_PATH``. Events are written when they enter the outbox and
deleted once delivered (or dropped); a process that starts with a non-empty spool
delivers those events first, with their original event ids and sequence numbers, so the
receiver de-duplicates anything that had in fact arrived before the crash.

What keeps the file usable whatever happens around it:

- every write is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` that is rolled back when any step
  fails (a lock held past the busy timeout, a full disk), so no transaction stays open;
- a forked child never uses its parent's connection or lock: a fork waits for the spool
  operation in progress, and the child opens its own connection on first use;
- a row that no longer decodes is removed, counted in :attr:`SqliteSpool.skipped` and
  logged once per restore, instead of failing every start;
- a restore takes at most ``max_restore`` events, oldest first; the rest stay in the file
  for the next start.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from google.protobuf.message import DecodeError

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


_log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spooled_events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL
)
"""
#: How long a fork waits for a spool write in progress before going ahead without it.
_FORK_WAIT_SECONDS = 10.0

_T = TypeVar("_T")


class SqliteSpool:
    """Undelivered events in a SQLite file (WAL, synchronous=NORMAL).

    Args:
        path: The SQLite file; created when missing.
        max_restore: At most this many events are returned by :meth:`load` (None: all).
        busy_timeout: Seconds a write waits for a lock held by another connection before
            it fails (and is rolled back).

    Attributes:
        skipped: Rows removed because they no longer decode as events.

    Raises:
        ConfigError: At construction, when the file cannot be created or written, or is
            not a spool (corrupted, or another kind of file).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_restore: int | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = Path(path)
        self.max_restore = max_restore
        self.skipped = 0
        self._busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._held_for_fork = False
        self._closed = False
        self._db: sqlite3.Connection | None = None
        try:
            db = self._connection()
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            db.execute(_SCHEMA)
            db.execute("SELECT position, event_id, payload FROM spooled_events LIMIT 1")
            # SQLite opens a file it may not write read-only without a word: take the write
            # lock once, so a spool that cannot be written fails here and not at run time.
            # Another process writing to the same file just now is no reason to refuse.
            try:
                self._write(lambda db: db.execute("DELETE FROM spooled_events WHERE 0"))
            except sqlite3.OperationalError as error:
                if not _is_busy(error):
                    raise
        except sqlite3.Error as error:
            self._close_connection()
            raise ConfigError(
                f"{ENV_SPOOL_PATH}={str(self.path)!r} cannot be used as a spool ({error}). "
                "Fix: point it to a new file in a writable directory, or move the damaged "
                "file away."
            ) from None
        _track(self)

    def __repr__(self) -> str:
        return f"SqliteSpool({str(self.path)!r})"

    def load(self, limit: int | None = None) -> list[WorkflowProgressEvent]:
        """Events left by an earlier process, oldest first.

        Args:
            limit: At most this many events (default: ``max_restore``, else all).
        """
        limit = self.max_restore if limit is None else limit
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT position, payload FROM spooled_events ORDER BY position LIMIT ?",
                    (-1 if limit is None else max(0, limit),),
                )
                .fetchall()
            )
        events: list[WorkflowProgressEvent] = []
        bad: list[int] = []
        for position, payload in rows:
            try:
                events.append(WorkflowProgressEvent.FromString(payload))
            except (DecodeError, TypeError, ValueError):
                bad.append(position)
        if bad:
            self.skipped += len(bad)
            _log.warning(
                "otel-stigmer: %d spool rows of %s could not be decoded; removed and skipped",
                len(bad),
                self.path,
            )
            self._write(
                lambda db: db.executemany(
                    "DELETE FROM spooled_events WHERE position = ?", [(p,) for p in bad]
                )
            )
        return events

    def store(self, events: Sequence[WorkflowProgressEvent]) -> None:
        """Persist ``events`` (ignoring ids already spooled)."""
        rows = [(event.event_id, event.SerializeToString()) for event in events]
        self._write(
            lambda db: db.executemany(
                "INSERT OR IGNORE INTO spooled_events (event_id, payload) VALUES (?, ?)", rows
            )
        )

    def remove(self, event_ids: Sequence[str]) -> None:
        """Forget delivered or dropped events."""
        self._write(
            lambda db: db.executemany(
                "DELETE FROM spooled_events WHERE event_id = ?", [(i,) for i in event_ids]
            )
        )

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._connection().execute("SELECT COUNT(*) FROM spooled_events").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._closed = True
            self._close_connection()

    # ---- internals -------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The connection of this process, opened on first use (again in a forked child)."""
        if self._closed:
            raise sqlite3.ProgrammingError("the spool is closed")
        if self._db is None:
            db = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                check_same_thread=False,
                isolation_level=None,
            )
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:
                db.close()
                raise
            self._db = db
        return self._db

    def _write(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` in one transaction that is committed, or rolled back on any error."""
        with self._lock:
            db = self._connection()
            _rollback(db)  # never build on a transaction an earlier failure left open
            try:
                db.execute("BEGIN IMMEDIATE")
                result = work(db)
                db.execute("COMMIT")
            except BaseException:
                _rollback(db)
                raise
            return result

    def _close_connection(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()

    def _before_fork(self) -> None:
        # Let a write in progress finish, so the child never inherits a half-used
        # connection or a lock held by a thread it does not have.
        self._held_for_fork = self._lock.acquire(timeout=_FORK_WAIT_SECONDS)

    def _after_fork_in_parent(self) -> None:
        if self._held_for_fork:
            self._held_for_fork = False
            self._lock.release()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._held_for_fork = False
        if self._db is not None:
            # Never closed here: closing the parent's connection in the child could
            # checkpoint or delete the parent's WAL. The child opens its own on first use.
            _inherited.append(self._db)
            self._db = None


def _is_busy(error: sqlite3.Error) -> bool:
    """True for "database is locked" (Python 3.10 has no error codes on exceptions)."""
    name = getattr(error, "sqlite_errorname", None)
    return name == "SQLITE_BUSY" if name is not None else "locked" in str(error)


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            _log.debug("otel-stigmer: spool rollback failed", exc_info=True)


_spools: weakref.WeakSet[SqliteSpool] = weakref.WeakSet()
# Connections inherited from a parent process: kept referenced so they are never closed.
_inherited: list[sqlite3.Connection] = []
_fork_hooks_installed = False
_hooks_lock = threading.Lock()


def _track(spool: SqliteSpool) -> None:
    global _fork_hooks_installed  # noqa: PLW0603 - one set of hooks per process
    with _hooks_lock:
        _spools.add(spool)
        if not _fork_hooks_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(
                before=_before_fork,
                after_in_parent=_after_fork_in_parent,
                after_in_child=_after_fork_in_child,
            )
            _fork_hooks_installed = True


def _before_fork() -> None:
    for spool in list(_spools):
        spool._before_fork()


def _after_fork_in_parent() -> None:
    for spool in list(_spools):
        spool._after_fork_in_parent()


def _after_fork_in_child() -> None:
    for spool in list(_spools):
        spool._after_fork_in_child()
