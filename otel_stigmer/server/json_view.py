"""JSON views of stored progress events and executions (pure; used by the HTTP side and `tail`)."""

from __future__ import annotations

from typing import Any

from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.server.store import ExecutionSummary

__all__ = [
    "ROW_COLUMNS",
    "event_from_json",
    "event_to_json",
    "event_to_row",
    "execution_to_json",
    "is_late",
]


def event_to_json(
    event: WorkflowProgressEvent, rowid: int | None = None, *, late: bool = False
) -> dict[str, Any]:
    """Return one event as a JSON-ready dict (``error`` is None when the event has none).

    Args:
        event: The stored event.
        rowid: Its arrival id in the store, the ``id`` of an SSE message; None when unknown.
        late: A task event that arrived after its workflow's terminal event.
    """
    error: dict[str, str] | None = None
    if event.HasField("error"):
        error = {
            "code": event.error.code,
            "message": event.error.message,
            "stack_trace": event.error.stack_trace,
        }
    return {
        "rowid": rowid,
        "event_id": event.event_id,
        "execution_id": event.workflow_execution_id,
        "event_type": event.event_type,
        "workflow_name": event.workflow_name,
        "task_name": event.task_name,
        "task_instance_id": event.task_instance_id,
        "status": event.status,
        "message": event.message,
        "timestamp_ms": event.timestamp_ms,
        "sequence_number": event.sequence_number,
        "task_progress": event.task_progress,
        "attempt": event.attempt,
        "trace_id": event.trace_id,
        "span_id": event.span_id,
        "parent_span_id": event.parent_span_id,
        "metadata": dict(event.metadata),
        "error": error,
        "late": late,
    }


def event_from_json(data: dict[str, Any]) -> WorkflowProgressEvent:
    """Rebuild an event from :func:`event_to_json` output (unknown keys are ignored)."""
    event = WorkflowProgressEvent(
        workflow_execution_id=str(data.get("execution_id", "")),
        event_type=str(data.get("event_type", "")),
        workflow_name=str(data.get("workflow_name", "")),
        task_name=str(data.get("task_name", "")),
        task_instance_id=str(data.get("task_instance_id", "")),
        status=str(data.get("status", "")),
        message=str(data.get("message", "")),
        timestamp_ms=int(data.get("timestamp_ms") or 0),
        sequence_number=int(data.get("sequence_number") or 0),
        task_progress=int(data.get("task_progress") or 0),
        attempt=int(data.get("attempt") or 0),
        event_id=str(data.get("event_id", "")),
        trace_id=str(data.get("trace_id", "")),
        span_id=str(data.get("span_id", "")),
        parent_span_id=str(data.get("parent_span_id", "")),
    )
    metadata = data.get("metadata")
    if isinstance(metadata, dict):
        event.metadata.update({str(k): str(v) for k, v in metadata.items()})
    error = data.get("error")
    if isinstance(error, dict):
        event.error.code = str(error.get("code", ""))
        event.error.message = str(error.get("message", ""))
        event.error.stack_trace = str(error.get("stack_trace", ""))
    return event


def execution_to_json(summary: ExecutionSummary) -> dict[str, Any]:
    """Return one execution summary as a JSON-ready dict."""
    return {
        "execution_id": summary.execution_id,
        "workflow_name": summary.workflow_name,
        "status": summary.status,
        "event_count": summary.event_count,
        "first_timestamp_ms": summary.first_timestamp_ms,
        "last_timestamp_ms": summary.last_timestamp_ms,
        "last_rowid": summary.last_rowid,
    }


def is_late(data: dict[str, Any]) -> bool:
    """Return whether a JSON event is marked late (arrived after its workflow ended)."""
    return data.get("late") is True


#: The columns of :func:`event_to_row`, in order.
ROW_COLUMNS = (
    "rowid",
    "event_type",
    "status",
    "task_name",
    "task_instance_id",
    "attempt",
    "timestamp_ms",
    "sequence_number",
    "task_progress",
    "message",
    "late",
    "error",
    "workflow",
)


def event_to_row(event: WorkflowProgressEvent, rowid: int, late: bool) -> list[Any]:
    """Return one event as a compact row (:data:`ROW_COLUMNS`) for loading big runs.

    ``error`` is ``[code, message]`` or None (no stack trace); ``workflow`` is None for
    task events and ``{"workflow_name", "trace_id", "metadata"}`` for workflow events.
    """
    error = [event.error.code, event.error.message] if event.HasField("error") else None
    workflow = (
        None
        if event.task_name
        else {
            "workflow_name": event.workflow_name,
            "trace_id": event.trace_id,
            "metadata": dict(event.metadata),
        }
    )
    return [
        rowid,
        event.event_type,
        event.status,
        event.task_name,
        event.task_instance_id,
        event.attempt,
        event.timestamp_ms,
        event.sequence_number,
        event.task_progress,
        event.message,
        late,
        error,
        workflow,
    ]
