"""SQLite storage of received progress events, de-duplicated by ``event_id``."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from otel_stigmer.events import WorkflowProgressEvent

__all__ = ["EventStore", "ExecutionSummary", "StoreClosedError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    event_id TEXT,
    execution_id TEXT NOT NULL,
    sequence_number INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    workflow_name TEXT NOT NULL,
    task_name TEXT NOT NULL,
    status TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_execution ON events (execution_id, sequence_number, id);
"""

_INSERT = (
    "INSERT INTO events (event_id, execution_id, sequence_number, event_type,"
    " workflow_name, task_name, status, timestamp_ms, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

_SUMMARY = """
SELECT e.execution_id,
    (SELECT w.workflow_name FROM events w
        WHERE w.execution_id = e.execution_id AND w.workflow_name != ''
        ORDER BY w.sequence_number DESC, w.id DESC LIMIT 1),
    (SELECT w.status FROM events w
        WHERE w.execution_id = e.execution_id AND w.task_name = ''
        ORDER BY w.sequence_number DESC, w.id DESC LIMIT 1),
    count(*), min(e.timestamp_ms), max(e.timestamp_ms)
FROM events e
GROUP BY e.execution_id
ORDER BY min(e.id)
"""


class StoreClosedError(RuntimeError):
    """The store was used after :meth:`EventStore.close`."""


@dataclass(frozen=True)
class ExecutionSummary:
    """One workflow execution as seen by the receiver.

    Attributes:
        execution_id: The ``workflow_execution_id``.
        workflow_name: The latest non-empty workflow name reported for it.
        status: Status of its latest workflow-level event (one without a task name),
            or ``""`` when only task events arrived so far.
        event_count: Number of stored events.
        first_timestamp_ms: Smallest event timestamp.
        last_timestamp_ms: Largest event timestamp.
    """

    execution_id: str
    workflow_name: str
    status: str
    event_count: int
    first_timestamp_ms: int
    last_timestamp_ms: int


class EventStore:
    """Thread-safe SQLite event store (WAL mode) that survives a restart.

    One connection is shared by all threads behind a lock; a condition on that
    lock wakes live readers (:meth:`wait_for_change`) when rows arrive.

    De-duplication by ``event_id`` uses a set of the stored ids, rebuilt from the
    file at open, instead of a UNIQUE index: ids are random, so an index on them
    dirties one page per event and made small batches two to three times slower
    to store. The set costs about 100 bytes of memory per stored event.

    Args:
        path: The SQLite file; created when missing, reopened with its data otherwise.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self._path, check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a process crash; only a power loss may drop the last commits.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        # Checkpoint every ~40 MB of WAL instead of 4 MB: fewer stalls of the writing RPC.
        self._conn.execute("PRAGMA wal_autocheckpoint=10000")
        self._conn.executescript(_SCHEMA)
        row = self._conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
        self._last_rowid: int = row[0]
        self._seen: set[str] = {
            event_id
            for (event_id,) in self._conn.execute(
                "SELECT event_id FROM events WHERE event_id IS NOT NULL"
            )
        }

    @property
    def path(self) -> str:
        """The SQLite file path."""
        return self._path

    @property
    def last_rowid(self) -> int:
        """Arrival id of the newest stored event (0 when empty)."""
        return self._last_rowid

    def __repr__(self) -> str:
        return f"EventStore(path={self._path!r})"

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosedError(f"event store {self._path!r} is closed")
        return self._conn

    def add(self, events: Sequence[WorkflowProgressEvent]) -> tuple[int, int]:
        """Store events in one transaction, dropping those whose ``event_id`` is known.

        Returns:
            ``(accepted, duplicates)``.

        Raises:
            StoreClosedError: After :meth:`close`.
        """
        if not events:
            return 0, 0
        with self._lock:
            conn = self._connection()
            seen = self._seen
            added: list[str] = []
            rows = []
            for e in events:
                event_id = e.event_id
                if event_id:
                    if event_id in seen:
                        continue
                    seen.add(event_id)
                    added.append(event_id)
                rows.append(
                    (
                        event_id or None,
                        e.workflow_execution_id,
                        e.sequence_number,
                        e.event_type,
                        e.workflow_name,
                        e.task_name,
                        e.status,
                        e.timestamp_ms,
                        e.SerializeToString(),
                    )
                )
            if not rows:
                return 0, len(events)
            try:
                conn.execute("BEGIN")
                conn.executemany(_INSERT, rows)
                newest = conn.execute("SELECT max(id) FROM events").fetchone()[0]
                conn.execute("COMMIT")
            except BaseException:
                seen.difference_update(added)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._last_rowid = newest
            self._changed.notify_all()
        return len(rows), len(events) - len(rows)

    def events(
        self, execution_id: str | None = None, *, after_rowid: int = 0
    ) -> list[WorkflowProgressEvent]:
        """Return stored events in sequence order (``sequence_number``, then arrival).

        Args:
            execution_id: Only this execution's events; all executions (ordered by
                execution id, then sequence) when None.
            after_rowid: Only events that arrived after this arrival id.
        """
        if execution_id is None:
            sql = (
                "SELECT payload FROM events WHERE id > ? ORDER BY execution_id, sequence_number, id"
            )
            params: tuple[object, ...] = (after_rowid,)
        else:
            sql = (
                "SELECT payload FROM events WHERE execution_id = ? AND id > ?"
                " ORDER BY sequence_number, id"
            )
            params = (execution_id, after_rowid)
        with self._lock:
            rows = self._connection().execute(sql, params).fetchall()
        parse = WorkflowProgressEvent.FromString
        return [parse(payload) for (payload,) in rows]

    def events_since(
        self, rowid: int, *, limit: int | None = None
    ) -> list[tuple[int, WorkflowProgressEvent]]:
        """Return ``(arrival id, event)`` pairs newer than ``rowid``, in arrival order.

        Args:
            rowid: The last arrival id the caller has seen (0 for everything).
            limit: At most this many pairs, oldest first.
        """
        sql = "SELECT id, payload FROM events WHERE id > ? ORDER BY id"
        params: tuple[object, ...] = (rowid,)
        if limit is not None:
            sql += " LIMIT ?"
            params = (rowid, limit)
        with self._lock:
            rows = self._connection().execute(sql, params).fetchall()
        parse = WorkflowProgressEvent.FromString
        return [(row_id, parse(payload)) for row_id, payload in rows]

    def executions(self) -> list[ExecutionSummary]:
        """Return one summary per execution, in order of first arrival."""
        with self._lock:
            rows = self._connection().execute(_SUMMARY).fetchall()
        return [
            ExecutionSummary(
                execution_id=execution_id,
                workflow_name=workflow_name or "",
                status=status or "",
                event_count=count,
                first_timestamp_ms=first,
                last_timestamp_ms=last,
            )
            for execution_id, workflow_name, status, count, first, last in rows
        ]

    def count(self) -> int:
        """Return the number of stored events."""
        with self._lock:
            row = self._connection().execute("SELECT count(*) FROM events").fetchone()
        return int(row[0])

    def wait_for_change(self, last_rowid: int, timeout: float) -> int:
        """Block until an event newer than ``last_rowid`` is stored, or ``timeout`` passes.

        Returns immediately when the store is closed.

        Returns:
            The newest arrival id (equal to ``last_rowid`` or older on timeout).
        """
        with self._changed:
            self._changed.wait_for(
                lambda: self._last_rowid > last_rowid or self._conn is None, timeout
            )
            return self._last_rowid

    def close(self) -> None:
        """Close the database and wake all waiters; later calls raise :class:`StoreClosedError`."""
        with self._lock:
            if self._conn is None:
                return
            self._conn.close()
            self._conn = None
            self._changed.notify_all()
