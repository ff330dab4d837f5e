"""otel-stigmer: report workflow and task progress to the Stigmer Service from OpenTelemetry spans."""

from __future__ import annotations

from otel_stigmer.events import (
    ErrorDetails,
    EventType,
    ProgressAckResponse,
    Status,
    WorkflowProgressEvent,
    new_error_progress_event,
    new_progress_event,
    new_task_progress_event,
)
from otel_stigmer.exceptions import CallbackError, ConfigError

__all__ = [
    "CallbackError",
    "ConfigError",
    "ErrorDetails",
    "EventType",
    "ProgressAckResponse",
    "Status",
    "WorkflowProgressEvent",
    "new_error_progress_event",
    "new_progress_event",
    "new_task_progress_event",
]
