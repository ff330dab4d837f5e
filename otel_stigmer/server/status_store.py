"""SQLite storage of execution statuses received through ``updateStatus``.

Two tables of their own next to the progress events: ``execution_status`` holds each
execution's merged status, ``status_updates`` every update as received, in arrival
order (what a client sent, for tests and troubleshooting).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass

from otel_stigmer.server.status_merge import merge_status
from otel_stigmer.server.store import StoreClosedError
from otel_stigmer.status.wire import ExecutionPhase, WorkflowExecutionStatus

__all__ = ["StatusStore", "StatusSummary"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS execution_status (
    execution_id TEXT PRIMARY KEY,
    phase INTEGER NOT NULL,
    update_count INTEGER NOT NULL,
    first_update_id INTEGER NOT NULL,
    last_update_ms INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS status_updates (
    id INTEGER PRIMARY KEY,
    execution_id TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS status_updates_execution ON status_updates (execution_id, id);
CREATE INDEX IF NOT EXISTS execution_status_newest ON execution_status (first_update_id);
"""


@dataclass(frozen=True)
class StatusSummary:
    """One execution as its status says.

    Attributes:
        execution_id: The execution id.
        phase: Name of its ``ExecutionPhase`` (``EXECUTION_COMPLETED``, ...).
        task_count: Tasks in its stored list.
        update_count: ``updateStatus`` calls stored for it.
        last_update_ms: When the last update arrived (ms since the epoch).
    """

    execution_id: str
    phase: str
    task_count: int
    update_count: int
    last_update_ms: int


class StatusStore:
    """Thread-safe store of merged execution statuses (WAL mode; survives a restart).

    Args:
        path: The SQLite file (the receiver's event database; these tables are its own).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self._path, check_same_thread=False, isolation_level=None, timeout=30
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        row = self._conn.execute("SELECT coalesce(max(id), 0) FROM status_updates").fetchone()
        self._last_update_id: int = row[0]

    def __repr__(self) -> str:
        return f"StatusStore(path={self._path!r})"

    @property
    def last_update_id(self) -> int:
        """Arrival id of the newest stored update (0 when none)."""
        return self._last_update_id

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosedError(f"status store {self._path!r} is closed")
        return self._conn

    def update(self, execution_id: str, update: WorkflowExecutionStatus) -> WorkflowExecutionStatus:
        """Merge ``update`` into the stored status (the upstream rules) and return the result.

        The first update of an execution creates it. The update itself is kept too.

        Raises:
            StoreClosedError: After :meth:`close`.
        """
        now_ms = time.time_ns() // 1_000_000
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute(
                    "SELECT payload FROM execution_status WHERE execution_id = ?", (execution_id,)
                ).fetchone()
                stored = WorkflowExecutionStatus.FromString(row[0]) if row else None
                merged = merge_status(stored or WorkflowExecutionStatus(), update)
                cursor = conn.execute(
                    "INSERT INTO status_updates (execution_id, received_ms, payload)"
                    " VALUES (?, ?, ?)",
                    (execution_id, now_ms, update.SerializeToString()),
                )
                update_id = int(cursor.lastrowid or 0)
                conn.execute(
                    "INSERT INTO execution_status (execution_id, phase, update_count,"
                    " first_update_id, last_update_ms, payload) VALUES (?, ?, 1, ?, ?, ?)"
                    " ON CONFLICT (execution_id) DO UPDATE SET phase = excluded.phase,"
                    " update_count = update_count + 1, last_update_ms = excluded.last_update_ms,"
                    " payload = excluded.payload",
                    (execution_id, merged.phase, update_id, now_ms, merged.SerializeToString()),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._last_update_id = update_id
            self._changed.notify_all()
        return merged

    def status(self, execution_id: str) -> WorkflowExecutionStatus | None:
        """The stored status of ``execution_id``, or None when it never got an update."""
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "SELECT payload FROM execution_status WHERE execution_id = ?", (execution_id,)
                )
                .fetchone()
            )
        return None if row is None else WorkflowExecutionStatus.FromString(row[0])

    def statuses(self) -> dict[str, WorkflowExecutionStatus]:
        """Every stored status by execution id, in order of first update."""
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT execution_id, payload FROM execution_status ORDER BY first_update_id"
                )
                .fetchall()
            )
        return {execution_id: WorkflowExecutionStatus.FromString(p) for execution_id, p in rows}

    def summaries(self) -> list[StatusSummary]:
        """One summary per execution, in order of first update."""
        return [
            StatusSummary(
                execution_id=execution_id,
                phase=ExecutionPhase.Name(status.phase),
                task_count=len(status.tasks),
                update_count=count,
                last_update_ms=last_ms,
            )
            for execution_id, status, count, last_ms in self._rows()
        ]

    def _rows(self) -> list[tuple[str, WorkflowExecutionStatus, int, int]]:
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT execution_id, payload, update_count, last_update_ms"
                    " FROM execution_status ORDER BY first_update_id"
                )
                .fetchall()
            )
        parse = WorkflowExecutionStatus.FromString
        return [(execution_id, parse(p), count, last) for execution_id, p, count, last in rows]

    def updates(self, execution_id: str | None = None) -> list[tuple[str, WorkflowExecutionStatus]]:
        """Every received update as ``(execution_id, status)``, in arrival order."""
        sql = "SELECT execution_id, payload FROM status_updates"
        params: tuple[object, ...] = ()
        if execution_id is not None:
            sql += " WHERE execution_id = ?"
            params = (execution_id,)
        with self._lock:
            rows = self._connection().execute(sql + " ORDER BY id", params).fetchall()
        return [(eid, WorkflowExecutionStatus.FromString(payload)) for eid, payload in rows]

    def wait_for_change(self, last_update_id: int, timeout: float) -> int:
        """Block until an update newer than ``last_update_id`` is stored, or ``timeout`` passes.

        Returns:
            The newest update id; returns at once when the store is closed.
        """
        with self._changed:
            self._changed.wait_for(
                lambda: self._last_update_id > last_update_id or self._conn is None, timeout
            )
            return self._last_update_id

    def close(self) -> None:
        """Close the database and wake all waiters; later calls raise ``StoreClosedError``."""
        with self._lock:
            if self._conn is None:
                return
            self._conn.close()
            self._conn = None
            self._changed.notify_all()
