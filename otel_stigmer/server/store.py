"""SQLite storage of received progress events, de-duplicated by ``event_id``.

Besides the events, the store keeps one summary row per execution, updated in the
transaction that stores its events, so listing runs never scans the events; reads use
their own connections (WAL readers), so a long read never holds up the writing RPC.
"""

from __future__ import annotations

import copy
import os
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from otel_stigmer.events import TERMINAL_EVENT_TYPES, WorkflowProgressEvent

__all__ = ["EventStore", "ExecutionSummary", "StoreClosedError", "StoredEvent"]

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
CREATE TABLE IF NOT EXISTS executions (
    execution_id TEXT PRIMARY KEY,
    workflow_name TEXT NOT NULL,
    status TEXT NOT NULL,
    status_sequence INTEGER NOT NULL,
    ended INTEGER NOT NULL,
    event_count INTEGER NOT NULL,
    first_timestamp_ms INTEGER NOT NULL,
    last_timestamp_ms INTEGER NOT NULL,
    first_rowid INTEGER NOT NULL,
    last_rowid INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_newest ON executions (first_timestamp_ms, first_rowid);
CREATE INDEX IF NOT EXISTS executions_status
    ON executions (status, first_timestamp_ms, first_rowid);
"""
# Arrival order per execution: pages of one run and its live stream read this index.
_EVENTS_INDEX = "CREATE INDEX IF NOT EXISTS events_arrival ON events (execution_id, id)"
_OLD_INDEX = "DROP INDEX IF EXISTS events_execution"

_INSERT = (
    "INSERT INTO events (id, event_id, execution_id, sequence_number, event_type,"
    " workflow_name, task_name, status, timestamp_ms, payload, late)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SUMMARY_COLUMNS = (
    "execution_id, workflow_name, status, status_sequence, ended, event_count,"
    " first_timestamp_ms, last_timestamp_ms, first_rowid, last_rowid"
)
_UPSERT = f"INSERT OR REPLACE INTO executions ({_SUMMARY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"  # noqa: S608 - constants only
_READERS = 4
# SQLite's default limit on bound variables per statement: 32766 since 3.32, 999 before.
_MAX_VARIABLES = 30_000 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
_REBUILD_BATCH = 5000


class StoreClosedError(RuntimeError):
    """The store was used after :meth:`EventStore.close`."""


@dataclass(frozen=True)
class ExecutionSummary:
    """One workflow execution as seen by the receiver.

    Attributes:
        execution_id: The ``workflow_execution_id``.
        workflow_name: The latest non-empty workflow name reported for it.
        status: Its workflow-level status: the terminal one once the workflow ended (a
            later event never reopens it), else that of its latest workflow-level event
            by sequence number; ``""`` when only task events arrived so far.
        event_count: Number of stored events.
        first_timestamp_ms: Smallest event timestamp.
        last_timestamp_ms: Largest event timestamp.
        last_rowid: Arrival id of its newest event.
    """

    execution_id: str
    workflow_name: str
    status: str
    event_count: int
    first_timestamp_ms: int
    last_timestamp_ms: int
    last_rowid: int = 0


@dataclass(frozen=True)
class StoredEvent:
    """One stored event with what the store knows about its arrival.

    Attributes:
        rowid: Its arrival id.
        event: The event as received.
        late: A task event that arrived after its workflow's terminal event.
    """

    rowid: int
    event: WorkflowProgressEvent
    late: bool


class _Summary:
    """The mutable summary row of one execution while a batch is stored."""

    __slots__ = (
        "ended",
        "event_count",
        "execution_id",
        "first_rowid",
        "first_ts",
        "last_rowid",
        "last_ts",
        "status",
        "status_sequence",
        "workflow_name",
    )

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        self.workflow_name = ""
        self.status = ""
        self.status_sequence = -1
        self.ended = False
        self.event_count = 0
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.first_rowid = 0
        self.last_rowid = 0

    @classmethod
    def of(cls, row: Sequence[object]) -> _Summary:
        summary = cls(str(row[0]))
        summary.workflow_name = str(row[1])
        summary.status = str(row[2])
        summary.status_sequence = _int(row[3])
        summary.ended = bool(row[4])
        summary.event_count = _int(row[5])
        summary.first_ts = _int(row[6])
        summary.last_ts = _int(row[7])
        summary.first_rowid = _int(row[8])
        summary.last_rowid = _int(row[9])
        return summary

    def copy(self) -> _Summary:
        """An independent copy."""
        other = _Summary.__new__(_Summary)
        for name in _Summary.__slots__:
            setattr(other, name, getattr(self, name))
        return other

    def row(self) -> tuple[object, ...]:
        return (
            self.execution_id,
            self.workflow_name,
            self.status,
            self.status_sequence,
            int(self.ended),
            self.event_count,
            self.first_ts,
            self.last_ts,
            self.first_rowid,
            self.last_rowid,
        )

    def apply(self, event: WorkflowProgressEvent, rowid: int) -> bool:
        """Fold one event in; returns whether it is a late task event."""
        late = bool(event.task_name) and self.ended
        self.event_count += 1
        ts = event.timestamp_ms
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        self.first_rowid = self.first_rowid or rowid
        self.last_rowid = rowid
        if event.workflow_name:
            self.workflow_name = event.workflow_name
        if event.task_name or not event.status:
            return late
        terminal = event.event_type in TERMINAL_EVENT_TYPES
        sequence = event.sequence_number
        if terminal and not self.ended:
            self.status, self.status_sequence, self.ended = event.status, sequence, True
        elif terminal == self.ended and sequence >= self.status_sequence:
            self.status, self.status_sequence = event.status, sequence
        return late


class _PendingAdd:
    """One :meth:`EventStore.add` call waiting for its group's transaction."""

    __slots__ = ("accepted", "done", "error", "events", "ready")

    def __init__(self, events: Sequence[WorkflowProgressEvent]) -> None:
        self.events = events
        self.accepted = 0
        self.done = False
        self.error: BaseException | None = None
        #: Set when this call's group is written (``done``) or when it writes the next.
        self.ready = threading.Event()

    def outcome(self) -> tuple[int, int]:
        """``(accepted, duplicates)``, or the group's failure raised in this thread."""
        if self.error is not None:
            copied = _copy_of(self.error)
            if copied is self.error:
                raise copied
            raise copied from self.error
        return self.accepted, len(self.events) - self.accepted


def _copy_of(error: BaseException) -> BaseException:
    """The same failure as a new exception, so threads do not share one traceback."""
    try:
        return copy.copy(error).with_traceback(None)
    except Exception:  # an exception type that cannot be copied
        return error


def _insert_many(conn: sqlite3.Connection, insert: str, rows: Sequence[tuple[object, ...]]) -> None:
    """Run ``insert`` (one ``VALUES (?, ...)`` group) for many rows, a few statements in all.

    One multi-row statement instead of one step per row: the sqlite3 module releases the
    GIL around every step, and each time it is taken back a busy reading thread can make
    the writer wait a switch interval.
    """
    if not rows:
        return
    head, _, group = insert.partition(" VALUES ")
    per_statement = max(1, _MAX_VARIABLES // len(rows[0]))
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        sql = f"{head} VALUES {','.join([group] * len(chunk))}"
        conn.execute(sql, [value for row in chunk for value in row])


def _int(value: object) -> int:
    return int(value) if isinstance(value, int) else int(str(value))


def _summary(row: tuple[object, ...]) -> ExecutionSummary:
    execution_id, name, status, count, first, last, last_rowid = row
    return ExecutionSummary(
        execution_id=str(execution_id),
        workflow_name=str(name),
        status=str(status),
        event_count=_int(count),
        first_timestamp_ms=_int(first),
        last_timestamp_ms=_int(last),
        last_rowid=_int(last_rowid),
    )


class EventStore:
    """Thread-safe SQLite event store (WAL mode) that survives a restart.

    Writes share one connection behind a lock; a condition on that lock wakes live
    readers (:meth:`wait_for_change`) when rows arrive. Reads take a connection of
    their own from a small pool, so they never wait for, nor hold up, a write.

    De-duplication by ``event_id`` uses a set of the stored ids, rebuilt from the
    file at open, instead of a UNIQUE index: ids are random, so an index on them
    dirties one page per event and made small batches two to three times slower
    to store. The set costs about 100 bytes of memory per stored event; the summary row
    of each execution written since the open is kept in memory too (and read again when
    another connection wrote the file).

    Concurrent :meth:`add` calls are committed in groups (one transaction for the calls
    that queued while the previous one was written); each returns once its own events
    are committed.

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
        self._migrate(self._conn)
        row = self._conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
        self._last_rowid: int = row[0]
        self._data_version: int = self._conn.execute("PRAGMA data_version").fetchone()[0]
        self._seen: set[str] = {
            event_id
            for (event_id,) in self._conn.execute(
                "SELECT event_id FROM events WHERE event_id IS NOT NULL"
            )
        }
        #: Summary rows of the executions written since the file was opened, as committed.
        self._summaries: dict[str, _Summary] = {}
        # Group commit: calls waiting for the transaction being written, and whether one is.
        self._group_lock = threading.Lock()
        self._group: list[_PendingAdd] = []
        self._committing = False
        self._transactions = 0
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        had_summaries = (
            conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='executions'"
            ).fetchone()
            is not None
        )
        conn.executescript(_SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        if "late" not in columns:
            conn.execute("ALTER TABLE events ADD COLUMN late INTEGER NOT NULL DEFAULT 0")
        conn.execute(_OLD_INDEX)
        conn.execute(_EVENTS_INDEX)
        if not had_summaries:
            self._rebuild_summaries(conn)

    def _rebuild_summaries(self, conn: sqlite3.Connection) -> None:
        """Fill the summary table from the events of a file written by an older version."""
        summaries: dict[str, _Summary] = {}
        last = 0
        while True:
            rows = conn.execute(
                "SELECT id, payload FROM events WHERE id > ? ORDER BY id LIMIT ?",
                (last, _REBUILD_BATCH),
            ).fetchall()
            if not rows:
                break
            for rowid, payload in rows:
                event = WorkflowProgressEvent.FromString(payload)
                summary = summaries.get(event.workflow_execution_id)
                if summary is None:
                    summary = summaries[event.workflow_execution_id] = _Summary(
                        event.workflow_execution_id
                    )
                summary.apply(event, rowid)
                last = rowid
        conn.execute("BEGIN")
        conn.executemany(_UPSERT, [s.row() for s in summaries.values()])
        conn.execute("COMMIT")

    @property
    def path(self) -> str:
        """The SQLite file path."""
        return self._path

    @property
    def transactions(self) -> int:
        """Write transactions committed since the store was opened (one per group of calls)."""
        return self._transactions

    @property
    def writing(self) -> bool:
        """True while a call of :meth:`add` writes a transaction."""
        with self._group_lock:
            return self._committing

    @property
    def waiting(self) -> int:
        """Calls of :meth:`add` queued for the next transaction (group commit)."""
        with self._group_lock:
            return len(self._group)

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

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """Lend a read-only connection (WAL readers see the last commit, never wait)."""
        self._connection()
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True, check_same_thread=False)
            with self._readers_lock:
                self._all_readers.append(conn)
        try:
            yield conn
        except sqlite3.ProgrammingError:
            self._connection()  # closed under the read: say so
            raise
        finally:
            if self._conn is not None and self._readers.qsize() < _READERS:
                self._readers.put(conn)

    def reading(self) -> AbstractContextManager[sqlite3.Connection]:
        """Lend a read-only connection to the file, for reads of its other tables.

        Raises:
            StoreClosedError: After :meth:`close`.
        """
        return self._reader()

    def add(self, events: Sequence[WorkflowProgressEvent]) -> tuple[int, int]:
        """Store events in one transaction, dropping those whose ``event_id`` is known.

        Calls that arrive while a transaction is being written are stored together in the
        next one (group commit): one commit for many concurrent calls, each answered only
        once its events are committed. When a group's transaction fails, every call of the
        group raises and none of its events is stored.

        Returns:
            ``(accepted, duplicates)``.

        Raises:
            StoreClosedError: After :meth:`close`.
        """
        if not events:
            return 0, 0
        call = _PendingAdd(events)
        with self._group_lock:
            self._group.append(call)
            lead = not self._committing
            self._committing = True
        if not lead:
            call.ready.wait()
            if call.done:
                return call.outcome()
            # The previous writer handed the next group to this call.
        with self._group_lock:
            group, self._group = self._group, []
        try:
            self._store_group(group)
        except BaseException as error:
            for other in group:
                other.error = error
            raise
        finally:
            with self._group_lock:
                for other in group:
                    other.done = True
                    if other is not call:
                        other.ready.set()
                if self._group:
                    self._group[0].ready.set()  # it writes the next group
                else:
                    self._committing = False
        return call.outcome()

    def _store_group(self, group: Sequence[_PendingAdd]) -> None:
        """Write the events of ``group``'s calls in one transaction, in call order."""
        with self._lock:
            conn = self._connection()
            seen = self._seen
            added: list[str] = []
            fresh: list[WorkflowProgressEvent] = []
            for call in group:
                before = len(fresh)
                for e in call.events:
                    event_id = e.event_id
                    if event_id:
                        if event_id in seen:
                            continue
                        seen.add(event_id)
                        added.append(event_id)
                    fresh.append(e)
                call.accepted = len(fresh) - before
            if not fresh:
                return
            try:
                # IMMEDIATE: the arrival ids taken here stay ours until the commit.
                conn.execute("BEGIN IMMEDIATE")
                self._catch_up(conn)
                rowid = self._last_rowid
                summaries = self._summaries_of(conn, fresh)
                rows = []
                for e in fresh:
                    rowid += 1
                    late = summaries[e.workflow_execution_id].apply(e, rowid)
                    rows.append(
                        (
                            rowid,
                            e.event_id or None,
                            e.workflow_execution_id,
                            e.sequence_number,
                            e.event_type,
                            e.workflow_name,
                            e.task_name,
                            e.status,
                            e.timestamp_ms,
                            e.SerializeToString(),
                            int(late),
                        )
                    )
                _insert_many(conn, _INSERT, rows)
                _insert_many(conn, _UPSERT, [s.row() for s in summaries.values()])
                conn.execute("COMMIT")
            except BaseException:
                seen.difference_update(added)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._summaries.update(summaries)
            self._transactions += 1
            self._last_rowid = rowid
            self._changed.notify_all()

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """Forget what is kept in memory if another connection wrote the file meanwhile.

        ``PRAGMA data_version`` changes only with commits of other connections (another
        store on the same file, or the status tables' writer), so alone this costs one
        pragma per transaction instead of reading the newest arrival id and the summaries.
        """
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        self._data_version = version
        self._summaries.clear()
        row = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
        self._last_rowid = max(self._last_rowid, int(row[0]))

    def _summaries_of(
        self, conn: sqlite3.Connection, events: Sequence[WorkflowProgressEvent]
    ) -> dict[str, _Summary]:
        """Copies of the summaries of ``events``' executions, to fold a transaction into.

        Known ones come from memory (kept while no other connection writes the file); the
        others are read from the file. The copies replace the kept ones once committed.
        """
        kept = self._summaries
        summaries: dict[str, _Summary] = {}
        missing: list[str] = []
        for event in events:
            execution_id = event.workflow_execution_id
            if execution_id in summaries:
                continue
            summary = kept.get(execution_id)
            if summary is None:
                summaries[execution_id] = _Summary(execution_id)
                missing.append(execution_id)
            else:
                summaries[execution_id] = summary.copy()
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM executions WHERE execution_id IN ({marks})",  # noqa: S608 - placeholders only
                chunk,
            ):
                summaries[str(row[0])] = _Summary.of(row)
        return summaries

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
            sql = "SELECT execution_id, sequence_number, id, payload FROM events WHERE id > ?"
            params: tuple[object, ...] = (after_rowid,)
        else:
            sql = (
                "SELECT execution_id, sequence_number, id, payload FROM events"
                " WHERE execution_id = ? AND id > ?"
            )
            params = (execution_id, after_rowid)
        with self._reader() as conn:
            rows = conn.execute(sql, params).fetchall()
        rows.sort(key=lambda row: (row[0], row[1], row[2]))
        parse = WorkflowProgressEvent.FromString
        return [parse(row[3]) for row in rows]

    def page(
        self, execution_id: str, *, after_rowid: int = 0, limit: int = 1000
    ) -> list[StoredEvent]:
        """Return up to ``limit`` events of one execution in arrival order, after ``after_rowid``.

        Page through a run by passing the last returned ``rowid`` as ``after_rowid``.
        """
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT id, payload, late FROM events WHERE execution_id = ? AND id > ?"
                " ORDER BY id LIMIT ?",
                (execution_id, after_rowid, limit),
            ).fetchall()
        parse = WorkflowProgressEvent.FromString
        return [StoredEvent(rowid, parse(payload), bool(late)) for rowid, payload, late in rows]

    def latest(self, execution_id: str, count: int) -> list[StoredEvent]:
        """Return the newest ``count`` events of one execution, in arrival order."""
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT id, payload, late FROM events WHERE execution_id = ?"
                " ORDER BY id DESC LIMIT ?",
                (execution_id, count),
            ).fetchall()
        parse = WorkflowProgressEvent.FromString
        return [
            StoredEvent(rowid, parse(payload), bool(late))
            for rowid, payload, late in reversed(rows)
        ]

    def events_since(
        self, rowid: int, *, limit: int | None = None, execution_id: str | None = None
    ) -> list[tuple[int, WorkflowProgressEvent]]:
        """Return ``(arrival id, event)`` pairs newer than ``rowid``, in arrival order.

        Args:
            rowid: The last arrival id the caller has seen (0 for everything).
            limit: At most this many pairs, oldest first.
            execution_id: Only this execution's events.
        """
        return [
            (stored.rowid, stored.event)
            for stored in self.stored_since(rowid, limit=limit, execution_id=execution_id)
        ]

    def stored_since(
        self, rowid: int, *, limit: int | None = None, execution_id: str | None = None
    ) -> list[StoredEvent]:
        """Like :meth:`events_since`, with each event's arrival facts."""
        sql = "SELECT id, payload, late FROM events WHERE id > ?"
        params: list[object] = [rowid]
        if execution_id is not None:
            sql += " AND execution_id = ?"
            params.append(execution_id)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._reader() as conn:
            rows = conn.execute(sql, params).fetchall()
        parse = WorkflowProgressEvent.FromString
        return [StoredEvent(row_id, parse(payload), bool(late)) for row_id, payload, late in rows]

    def executions(
        self,
        *,
        limit: int | None = None,
        status: str | None = None,
        search: str = "",
        before: tuple[int, int] | None = None,
    ) -> list[ExecutionSummary]:
        """Return execution summaries, newest first (by first event time, then arrival).

        Args:
            limit: At most this many.
            status: Only executions with this workflow-level status (``""`` for those
                whose workflow reported none yet).
            search: Only executions whose id or workflow name contains this text
                (case-insensitive).
            before: Only executions older than this ``(first_timestamp_ms, first_rowid)``
                key: the key of the last summary of the previous page.
        """
        sql = (
            "SELECT execution_id, workflow_name, status, event_count, first_timestamp_ms,"
            " last_timestamp_ms, last_rowid FROM executions"
        )
        where: list[str] = []
        params: list[object] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("(execution_id LIKE ? ESCAPE '\\' OR workflow_name LIKE ? ESCAPE '\\')")
            params += [f"%{escaped}%", f"%{escaped}%"]
        if before is not None:
            where.append("(first_timestamp_ms, first_rowid) < (?, ?)")
            params += list(before)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY first_timestamp_ms DESC, first_rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._reader() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_summary(tuple(row)) for row in rows]

    def execution(self, execution_id: str) -> ExecutionSummary | None:
        """Return the summary of one execution, or None when nothing of it is stored."""
        with self._reader() as conn:
            row = conn.execute(
                "SELECT execution_id, workflow_name, status, event_count, first_timestamp_ms,"
                " last_timestamp_ms, last_rowid FROM executions WHERE execution_id = ?",
                (execution_id,),
            ).fetchone()
        return None if row is None else _summary(tuple(row))

    def page_key(self, execution_id: str) -> tuple[int, int] | None:
        """Return the ``before`` key of :meth:`executions` that pages after this execution."""
        with self._reader() as conn:
            row = conn.execute(
                "SELECT first_timestamp_ms, first_rowid FROM executions WHERE execution_id = ?",
                (execution_id,),
            ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def count(self) -> int:
        """Return the number of stored events."""
        with self._reader() as conn:
            row = conn.execute("SELECT count(*) FROM events").fetchone()
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
            with self._readers_lock:
                readers, self._all_readers = self._all_readers, []
            for reader in readers:
                reader.close()
            self._changed.notify_all()
