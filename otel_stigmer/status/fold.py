"""Progress events -> the current ``WorkflowExecutionStatus`` of one execution (pure).

:class:`ExecutionFold` keeps, for one execution, what its progress events say so far and
renders it as the open-source Stigmer's ``WorkflowExecutionStatus``: the phase, one
``WorkflowTask`` per task call (keyed by ``task_instance_id``, shared by the attempts of
a call), errors, timestamps, and what fits no field in the task's ``metadata``.

The fold never regresses and does not depend on arrival order: a terminal status or
phase is never replaced by an in-progress one, between two terminal outcomes the later
event (by ``sequence_number``) wins, and every other value is "latest event wins" by
``sequence_number``. Applying an event twice changes nothing, so a batch delivered
again after a failure folds to the same status.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

from google.protobuf.struct_pb2 import Struct

from otel_stigmer.events import EventType, WorkflowProgressEvent
from otel_stigmer.status.wire import (
    TERMINAL_PHASES,
    TERMINAL_TASK_STATUSES,
    ExecutionPhase,
    WorkflowExecutionStatus,
    WorkflowTask,
    WorkflowTaskStatus,
    WorkflowTaskType,
)

__all__ = [
    "TASK_TYPE",
    "TEMPORAL_WORKFLOW_ID_KEY",
    "ExecutionFold",
    "error_text",
    "fold_events",
    "iso_utc",
]

#: Every task is reported as a custom task, as the open-source Stigmer's runner does.
TASK_TYPE = WorkflowTaskType.WORKFLOW_TASK_CUSTOM
#: Event metadata key whose value becomes ``temporal_workflow_id``.
TEMPORAL_WORKFLOW_ID_KEY = "temporal.workflow_id"

_PHASE_OF: dict[str, int] = {
    EventType.WORKFLOW_STARTED.value: ExecutionPhase.EXECUTION_IN_PROGRESS,
    EventType.WORKFLOW_RESUMED.value: ExecutionPhase.EXECUTION_IN_PROGRESS,
    EventType.WORKFLOW_PAUSED.value: ExecutionPhase.EXECUTION_IN_PROGRESS,
    EventType.WORKFLOW_PROGRESS.value: ExecutionPhase.EXECUTION_IN_PROGRESS,
    EventType.WORKFLOW_COMPLETED.value: ExecutionPhase.EXECUTION_COMPLETED,
    EventType.WORKFLOW_FAILED.value: ExecutionPhase.EXECUTION_FAILED,
    EventType.WORKFLOW_CANCELLED.value: ExecutionPhase.EXECUTION_CANCELLED,
}
_TASK_STATUS_OF: dict[str, int] = {
    EventType.TASK_STARTED.value: WorkflowTaskStatus.WORKFLOW_TASK_IN_PROGRESS,
    EventType.TASK_PROGRESS.value: WorkflowTaskStatus.WORKFLOW_TASK_IN_PROGRESS,
    EventType.TASK_RETRY.value: WorkflowTaskStatus.WORKFLOW_TASK_IN_PROGRESS,
    EventType.TASK_COMPLETED.value: WorkflowTaskStatus.WORKFLOW_TASK_COMPLETED,
    EventType.TASK_FAILED.value: WorkflowTaskStatus.WORKFLOW_TASK_FAILED,
    # No CANCELLED task status upstream; its own runner reports a cancelled call as failed.
    EventType.TASK_CANCELLED.value: WorkflowTaskStatus.WORKFLOW_TASK_FAILED,
}
_CANCELLED = "cancelled"


def iso_utc(timestamp_ms: int) -> str:
    """Return ``timestamp_ms`` as ISO 8601 UTC with milliseconds (``2025-01-11T14:30:27.450Z``)."""
    try:
        moment = _dt.datetime.fromtimestamp(timestamp_ms / 1000, tz=_dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{timestamp_ms % 1000:03d}Z"


def error_text(event: WorkflowProgressEvent) -> str:
    """The one-line error of a failed, retried or cancelled event: ``CODE: message``."""
    code, message = event.error.code, event.error.message
    if code and message:
        return f"{code}: {message}"
    return code or message or event.message


def _rank(status: int, terminal: frozenset[int]) -> int:
    if status in terminal:
        return 2
    return 1 if status else 0


class _Outcome:
    """A status-like value that only moves forward: unset < in progress < terminal.

    Between two terminal values the later event (by sequence number) wins.
    """

    __slots__ = ("error", "sequence", "timestamp_ms", "value")

    def __init__(self) -> None:
        self.value = 0
        self.sequence = -1
        self.timestamp_ms = 0
        self.error = ""

    def offer(
        self, value: int, event: WorkflowProgressEvent, terminal: frozenset[int], error: str
    ) -> None:
        new, old = _rank(value, terminal), _rank(self.value, terminal)
        if new < old or (new == old and (new < 2 or event.sequence_number <= self.sequence)):
            return
        self.value = value
        self.sequence = event.sequence_number
        self.timestamp_ms = event.timestamp_ms if new == 2 else 0
        self.error = error


class _Latest:
    """A value where the event with the highest sequence number wins."""

    __slots__ = ("sequence", "value")

    def __init__(self, value: object = None) -> None:
        self.value = value
        self.sequence = -1

    def offer(self, value: object, sequence: int) -> None:
        if sequence > self.sequence:
            self.value = value
            self.sequence = sequence


class _TaskCall:
    """What the events of one task call say so far."""

    __slots__ = (
        "attempt",
        "attributes",
        "first_sequence",
        "key",
        "last_retry_error",
        "message",
        "name",
        "outcome",
        "progress",
        "retry_attempt",
        "retry_ids",
        "started_ms",
        "status",
    )

    def __init__(self, key: str, name: str, sequence: int) -> None:
        self.key = key
        self.name = name
        self.first_sequence = sequence
        self.status = _Outcome()
        self.outcome = _Latest("")
        self.started_ms = 0
        self.attempt = 0
        self.retry_ids: set[str] = set()
        self.retry_attempt = 0
        self.last_retry_error = _Latest("")
        self.progress = _Latest()
        self.message = _Latest("")
        self.attributes: dict[str, _Latest] = {}

    def apply(self, event: WorkflowProgressEvent) -> None:
        sequence = event.sequence_number
        kind = event.event_type
        self.first_sequence = min(self.first_sequence, sequence)
        self.name = self.name or event.task_name
        status = _TASK_STATUS_OF[kind]
        error = ""
        if kind == EventType.TASK_FAILED.value:
            error = error_text(event)
        elif kind == EventType.TASK_CANCELLED.value:
            error = f"{_CANCELLED}: {event.message}" if event.message else _CANCELLED
        self.status.offer(status, event, TERMINAL_TASK_STATUSES, error)
        if status in TERMINAL_TASK_STATUSES:
            cancelled = kind == EventType.TASK_CANCELLED.value
            self.outcome.offer(_CANCELLED if cancelled else "", sequence)
        if kind == EventType.TASK_STARTED.value and event.timestamp_ms > 0:
            start = event.timestamp_ms
            self.started_ms = min(self.started_ms, start) if self.started_ms else start
        self.attempt = max(self.attempt, event.attempt)
        if kind == EventType.TASK_RETRY.value:
            self.retry_ids.add(event.event_id or str(sequence))
            self.retry_attempt = max(self.retry_attempt, event.attempt)
            self.last_retry_error.offer(error_text(event), sequence)
        if kind == EventType.TASK_PROGRESS.value:
            self.progress.offer(event.task_progress, sequence)
        if event.message:
            self.message.offer(event.message, sequence)
        for name, value in event.metadata.items():
            self.attributes.setdefault(name, _Latest()).offer(value, sequence)

    def render(self) -> WorkflowTask:
        task = WorkflowTask(
            task_id=self.key,
            task_name=self.name,
            task_type=TASK_TYPE,
            status=self.status.value,  # type: ignore[arg-type]
            error=self.status.error,
        )
        if self.started_ms:
            task.started_at = iso_utc(self.started_ms)
        if self.status.timestamp_ms:
            task.completed_at = iso_utc(self.status.timestamp_ms)
        metadata = self._metadata()
        if metadata:
            task.metadata.update(metadata)
        return task

    def _metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.attempt:
            out["attempt"] = self.attempt
        retries = max(len(self.retry_ids), self.retry_attempt)
        if retries:
            out["retries"] = retries
            out["last_retry_error"] = self.last_retry_error.value
        if self.progress.value is not None:
            out["progress"] = self.progress.value
        if self.message.value:
            out["message"] = self.message.value
        if self.outcome.value:
            out["outcome"] = self.outcome.value
        if self.attributes:
            attributes = Struct()
            attributes.update({name: str(latest.value) for name, latest in self.attributes.items()})
            out["attributes"] = attributes
        return out


class ExecutionFold:
    """The status of one execution, folded from its progress events.

    Args:
        execution_id: The execution all folded events belong to.
    """

    __slots__ = ("_phase", "_started_ms", "_tasks", "_temporal_id", "execution_id")

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        self._phase = _Outcome()
        self._started_ms = 0
        self._temporal_id = _Latest("")
        self._tasks: dict[str, _TaskCall] = {}

    @property
    def phase(self) -> int:
        """The current ``ExecutionPhase``; unspecified until a workflow event arrives."""
        return self._phase.value

    @property
    def terminal(self) -> bool:
        """True once the phase is completed, failed or cancelled."""
        return self._phase.value in TERMINAL_PHASES

    def apply(self, event: WorkflowProgressEvent) -> None:
        """Fold one event of this execution in; unknown event types are ignored."""
        kind = event.event_type
        temporal_id = event.metadata.get(TEMPORAL_WORKFLOW_ID_KEY)
        if temporal_id:
            self._temporal_id.offer(temporal_id, event.sequence_number)
        if kind in _TASK_STATUS_OF:
            key = event.task_instance_id or event.task_name
            task = self._tasks.get(key)
            if task is None:
                task = self._tasks[key] = _TaskCall(key, event.task_name, event.sequence_number)
            task.apply(event)
            return
        phase = _PHASE_OF.get(kind)
        if phase is None:
            return
        error = error_text(event) if kind == EventType.WORKFLOW_FAILED.value else ""
        self._phase.offer(phase, event, TERMINAL_PHASES, error)
        if kind == EventType.WORKFLOW_STARTED.value and event.timestamp_ms > 0:
            start = event.timestamp_ms
            self._started_ms = min(self._started_ms, start) if self._started_ms else start

    def status(self) -> WorkflowExecutionStatus:
        """Render the current status: every task call in order of its first event."""
        status = WorkflowExecutionStatus(
            phase=self._phase.value,  # type: ignore[arg-type]
            error=self._phase.error,
            temporal_workflow_id=str(self._temporal_id.value),
        )
        if self._started_ms:
            status.started_at = iso_utc(self._started_ms)
        if self._phase.timestamp_ms:
            status.completed_at = iso_utc(self._phase.timestamp_ms)
        calls = sorted(self._tasks.values(), key=lambda task: (task.first_sequence, task.key))
        status.tasks.extend(task.render() for task in calls)
        return status


def fold_events(events: Iterable[WorkflowProgressEvent]) -> dict[str, WorkflowExecutionStatus]:
    """Fold events of any executions into one status per execution id, in first-seen order."""
    folds: dict[str, ExecutionFold] = {}
    for event in events:
        execution_id = event.workflow_execution_id
        fold = folds.get(execution_id)
        if fold is None:
            fold = folds[execution_id] = ExecutionFold(execution_id)
        fold.apply(event)
    return {execution_id: fold.status() for execution_id, fold in folds.items()}
