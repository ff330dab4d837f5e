"""Event types, status values and the event constructors of the callback contract (pure)."""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import overload

from otel_stigmer._proto.ai.stigmer.workflow.runner.v1.progress_pb2 import (
    ErrorDetails,
    ProgressAckResponse,
    ReportProgressBatchRequest,
    ReportProgressBatchResponse,
    WorkflowProgressEvent,
)

__all__ = [
    "TERMINAL_EVENT_TYPES",
    "EncodedEvents",
    "ErrorDetails",
    "EventType",
    "ProgressAckResponse",
    "ReportProgressBatchRequest",
    "ReportProgressBatchResponse",
    "Status",
    "WorkflowProgressEvent",
    "new_error_progress_event",
    "new_event_id",
    "new_progress_event",
    "new_task_progress_event",
]


class EventType(str, enum.Enum):
    """The ``event_type`` values of a progress event."""

    WORKFLOW_STARTED = "workflow_started"
    WORKFLOW_COMPLETED = "workflow_completed"
    WORKFLOW_FAILED = "workflow_failed"
    WORKFLOW_PAUSED = "workflow_paused"
    WORKFLOW_RESUMED = "workflow_resumed"
    WORKFLOW_CANCELLED = "workflow_cancelled"
    WORKFLOW_PROGRESS = "workflow_progress"
    TASK_STARTED = "task_started"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    TASK_RETRY = "task_retry"
    TASK_CANCELLED = "task_cancelled"
    TASK_PROGRESS = "task_progress"

    def __str__(self) -> str:
        return self.value


class Status(str, enum.Enum):
    """The ``status`` values of a progress event."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PAUSED = "paused"

    def __str__(self) -> str:
        return self.value


#: Event types that end a workflow or a task; a full queue keeps these longest.
TERMINAL_EVENT_TYPES: frozenset[str] = frozenset(
    {
        EventType.WORKFLOW_COMPLETED.value,
        EventType.WORKFLOW_FAILED.value,
        EventType.WORKFLOW_CANCELLED.value,
        EventType.TASK_COMPLETED.value,
        EventType.TASK_FAILED.value,
        EventType.TASK_CANCELLED.value,
    }
)


def new_event_id() -> str:
    """Return a new unique event id (a random UUID, 32 hex digits)."""
    return uuid.uuid4().hex


def new_progress_event(
    execution_id: str,
    event_type: EventType | str,
    workflow_name: str,
    status: Status | str,
    message: str,
    sequence_number: int,
) -> WorkflowProgressEvent:
    """Build a workflow-level progress event, stamped with the current time and a new event id."""
    return WorkflowProgressEvent(
        workflow_execution_id=execution_id,
        event_type=str(event_type),
        workflow_name=workflow_name,
        status=str(status),
        message=message,
        sequence_number=sequence_number,
        timestamp_ms=time.time_ns() // 1_000_000,
        event_id=new_event_id(),
    )


def new_task_progress_event(
    execution_id: str,
    event_type: EventType | str,
    workflow_name: str,
    task_name: str,
    status: Status | str,
    message: str,
    sequence_number: int,
) -> WorkflowProgressEvent:
    """Build a task-level progress event, stamped with the current time and a new event id."""
    event = new_progress_event(
        execution_id, event_type, workflow_name, status, message, sequence_number
    )
    event.task_name = task_name
    return event


def new_error_progress_event(
    execution_id: str,
    workflow_name: str,
    error_code: str,
    error_message: str,
    stack_trace: str,
    sequence_number: int,
) -> WorkflowProgressEvent:
    """Build a ``workflow_failed`` event with status ``failed`` and :class:`ErrorDetails` filled."""
    event = new_progress_event(
        execution_id,
        EventType.WORKFLOW_FAILED,
        workflow_name,
        Status.FAILED,
        error_message,
        sequence_number,
    )
    event.error.CopyFrom(
        ErrorDetails(code=error_code, message=error_message, stack_trace=stack_trace)
    )
    return event


class EncodedEvents(Sequence[WorkflowProgressEvent]):
    """Events held as their deterministic serialization, parsed only when read.

    The delivery pipeline hands these to its sink: the gRPC sink sends the bytes as they
    are (``otel_stigmer._wire.encode_batch``), any other sink reads events as usual.

    Args:
        payloads: Each event's deterministic serialization, in order.
    """

    __slots__ = ("_parsed", "payloads")

    def __init__(self, payloads: Sequence[bytes]) -> None:
        self.payloads = payloads
        self._parsed: list[WorkflowProgressEvent] | None = None

    def _events(self) -> list[WorkflowProgressEvent]:
        if self._parsed is None:
            self._parsed = [WorkflowProgressEvent.FromString(p) for p in self.payloads]
        return self._parsed

    def __len__(self) -> int:
        return len(self.payloads)

    def __iter__(self) -> Iterator[WorkflowProgressEvent]:
        return iter(self._events())

    @overload
    def __getitem__(self, index: int) -> WorkflowProgressEvent: ...
    @overload
    def __getitem__(self, index: slice) -> list[WorkflowProgressEvent]: ...
    def __getitem__(
        self, index: int | slice
    ) -> WorkflowProgressEvent | list[WorkflowProgressEvent]:
        return self._events()[index]
