"""Runs reported with ``updateStatus``, as the live page lists them (reads only).

Queries over the status tables of the receiver's SQLite file (see
:mod:`~otel_stigmer.server.status_store`), made on any connection to that file (the
HTTP side lends one of the event store's read-only connections). Each query walks an
index and stops after ``limit`` rows; only the returned rows' statuses are decoded.

An execution that also has progress events is listed once, as a progress run: its
events say more than its status.
"""

from __future__ import annotations

import datetime
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from otel_stigmer.status.wire import ExecutionPhase, WorkflowExecutionStatus

__all__ = [
    "PHASE_STATUS",
    "StatusRun",
    "changed_runs",
    "iso_ms",
    "newest_update_id",
    "run_to_json",
    "status_run",
    "status_runs",
]

#: The live page's status word of each execution phase (unspecified: no status yet).
PHASE_STATUS: dict[int, str] = {
    ExecutionPhase.EXECUTION_PHASE_UNSPECIFIED: "",
    ExecutionPhase.EXECUTION_PENDING: "pending",
    ExecutionPhase.EXECUTION_IN_PROGRESS: "running",
    ExecutionPhase.EXECUTION_COMPLETED: "completed",
    ExecutionPhase.EXECUTION_FAILED: "failed",
    ExecutionPhase.EXECUTION_CANCELLED: "cancelled",
}
_PHASE_OF: dict[str, int] = {word: phase for phase, word in PHASE_STATUS.items()}

_COLUMNS = "s.execution_id, s.payload, s.update_count, s.first_update_id, s.last_update_ms"
# An execution with progress events is listed as a progress run.
_NO_EVENTS = "NOT EXISTS (SELECT 1 FROM executions e WHERE e.execution_id = s.execution_id)"


@dataclass(frozen=True)
class StatusRun:
    """One execution as its stored status says, in the live page's words.

    Attributes:
        execution_id: The execution id.
        status: ``running``, ``completed``, ``failed``, ``cancelled``, ``pending``, or
            ``""`` while its phase is unspecified.
        phase: Name of its ``ExecutionPhase``.
        started_ms: Its ``started_at`` (ms since the epoch), else when its first update
            arrived.
        ended_ms: Its ``completed_at``; 0 when unknown.
        task_count: Tasks in its stored list.
        update_count: ``updateStatus`` calls stored for it.
        last_update_ms: When its last update arrived.
        error: Its ``error``.
        temporal_workflow_id: Its ``temporal_workflow_id``.
    """

    execution_id: str
    status: str
    phase: str
    started_ms: int
    ended_ms: int
    task_count: int
    update_count: int
    last_update_ms: int
    error: str
    temporal_workflow_id: str


def iso_ms(text: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 time (``...Z`` or with an offset); 0 if none."""
    if not text:
        return 0
    try:
        moment = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return 0
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp() * 1000)


def _run(row: Sequence[Any], first_update_ms: int | None = None) -> StatusRun:
    execution_id, payload, update_count, _, last_update_ms = row[:5]
    status = WorkflowExecutionStatus.FromString(payload)
    started = iso_ms(status.started_at) or int(first_update_ms or last_update_ms)
    return StatusRun(
        execution_id=str(execution_id),
        status=PHASE_STATUS.get(status.phase, ""),
        phase=ExecutionPhase.Name(status.phase),
        started_ms=started,
        ended_ms=iso_ms(status.completed_at),
        task_count=len(status.tasks),
        update_count=int(update_count),
        last_update_ms=int(last_update_ms),
        error=status.error,
        temporal_workflow_id=status.temporal_workflow_id,
    )


def _first_update_ms(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> dict[int, int]:
    ids = [int(row[3]) for row in rows]
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    found = conn.execute(
        f"SELECT id, received_ms FROM status_updates WHERE id IN ({marks})",  # noqa: S608 - placeholders only
        ids,
    ).fetchall()
    return {int(update_id): int(ms) for update_id, ms in found}


def _runs(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> list[StatusRun]:
    first = _first_update_ms(conn, rows)
    return [_run(row, first.get(int(row[3]))) for row in rows]


def status_runs(
    conn: sqlite3.Connection,
    *,
    limit: int,
    status: str | None = None,
    search: str = "",
    before: str | None = None,
) -> list[StatusRun]:
    """Status-protocol runs, newest first (by arrival of their first update).

    Args:
        conn: A connection to the receiver's SQLite file.
        limit: At most this many.
        status: Only runs with this status word (``""``: phase unspecified); an unknown
            word matches none.
        search: Only runs whose execution id contains this text (case-insensitive).
        before: Only runs older than this execution id (the last of the previous page).
    """
    where = [_NO_EVENTS]
    params: list[object] = []
    if status is not None:
        if status not in _PHASE_OF:
            return []
        where.append("s.phase = ?")
        params.append(_PHASE_OF[status])
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("s.execution_id LIKE ? ESCAPE '\\'")
        params.append(f"%{escaped}%")
    if before:
        where.append(
            "s.first_update_id < coalesce((SELECT first_update_id FROM execution_status"
            " WHERE execution_id = ?), 0)"
        )
        params.append(before)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM execution_status s WHERE {' AND '.join(where)}"  # noqa: S608 - constants only
        " ORDER BY s.first_update_id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    return _runs(conn, rows)


def status_run(conn: sqlite3.Connection, execution_id: str) -> StatusRun | None:
    """The run of one execution's stored status, or None when it has none."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM execution_status s WHERE s.execution_id = ?",  # noqa: S608 - constants only
        (execution_id,),
    ).fetchall()
    runs = _runs(conn, rows)
    return runs[0] if runs else None


def newest_update_id(conn: sqlite3.Connection) -> int:
    """Arrival id of the newest stored update (0 when none): where a change feed starts."""
    row = conn.execute("SELECT coalesce(max(id), 0) FROM status_updates").fetchone()
    return int(row[0])


def changed_runs(
    conn: sqlite3.Connection, after: int, limit: int
) -> tuple[int, list[tuple[int, StatusRun]]]:
    """Runs updated after the update ``after``, as ``(their newest update id, run)``.

    One entry per execution, however many updates it got, oldest change first; at most
    ``limit`` executions. Reads only the updates newer than ``after`` (by arrival id).

    Returns:
        The update id to continue after, and the runs (executions with progress events
        are passed over: they are listed as progress runs).
    """
    changed = conn.execute(
        "SELECT execution_id, max(id) AS newest FROM status_updates WHERE id > ?"
        " GROUP BY execution_id ORDER BY newest LIMIT ?",
        (after, limit),
    ).fetchall()
    out: list[tuple[int, StatusRun]] = []
    for execution_id, newest in changed:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM execution_status s"  # noqa: S608 - constants only
            f" WHERE s.execution_id = ? AND {_NO_EVENTS}",
            (execution_id,),
        ).fetchall()
        out += [(int(newest), run) for run in _runs(conn, rows)]
    cursor = max((int(newest) for _, newest in changed), default=after)
    return cursor, out


def run_to_json(run: StatusRun) -> dict[str, Any]:
    """One status run as a JSON-ready dict (``protocol`` is ``"status"``)."""
    return {
        "execution_id": run.execution_id,
        "protocol": "status",
        "workflow_name": "",
        "status": run.status,
        "phase": run.phase,
        "started_ms": run.started_ms,
        "ended_ms": run.ended_ms,
        "task_count": run.task_count,
        "update_count": run.update_count,
        "last_update_ms": run.last_update_ms,
        "error": run.error,
        "temporal_workflow_id": run.temporal_workflow_id,
    }
