"""What the progress protocol's event stream says an execution ended as (a test oracle).

Independent of the fold under test: it reads the stream as a person would, the last
outcome event of each task call and of the workflow.
"""

from __future__ import annotations

from collections.abc import Sequence

from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.status.wire import ExecutionPhase, WorkflowExecutionStatus, WorkflowTaskStatus

#: (phase, workflow error, [(task id, task name, task status, task error)]) by names.
Outcome = tuple[str, str, list[tuple[str, str, str, str]]]

_TASK_END = {
    "task_completed": "WORKFLOW_TASK_COMPLETED",
    "task_failed": "WORKFLOW_TASK_FAILED",
    "task_cancelled": "WORKFLOW_TASK_FAILED",
}
_WORKFLOW_END = {
    "workflow_completed": "EXECUTION_COMPLETED",
    "workflow_failed": "EXECUTION_FAILED",
    "workflow_cancelled": "EXECUTION_CANCELLED",
}


def _error(event: WorkflowProgressEvent) -> str:
    if event.event_type == "task_cancelled":
        return f"cancelled: {event.message}"
    if not event.event_type.endswith("_failed"):
        return ""
    return f"{event.error.code}: {event.error.message}"


def expected_outcome(events: Sequence[WorkflowProgressEvent], *, ids: bool = True) -> Outcome:
    """The final phase, workflow error and task calls (in order of first event) of a stream."""
    phase, workflow_error = "EXECUTION_IN_PROGRESS", ""
    calls: dict[str, list[str]] = {}
    for event in sorted(events, key=lambda e: e.sequence_number):
        if event.task_name:
            call = calls.setdefault(
                event.task_instance_id,
                [event.task_instance_id, event.task_name, "WORKFLOW_TASK_IN_PROGRESS", ""],
            )
            if event.event_type in _TASK_END:
                call[2], call[3] = _TASK_END[event.event_type], _error(event)
        elif event.event_type in _WORKFLOW_END:
            phase, workflow_error = _WORKFLOW_END[event.event_type], _error(event)
    tasks = [(i if ids else "", name, status, error) for i, name, status, error in calls.values()]
    return phase, workflow_error, tasks


def stored_outcome(status: WorkflowExecutionStatus, *, ids: bool = True) -> Outcome:
    """The same view of a stored status."""
    tasks = [
        (
            task.task_id if ids else "",
            task.task_name,
            WorkflowTaskStatus.Name(task.status),
            task.error,
        )
        for task in status.tasks
    ]
    return ExecutionPhase.Name(status.phase), status.error, tasks
