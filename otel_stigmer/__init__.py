"""otel-stigmer: report workflow and task progress to the Stigmer Service from OTel spans."""

from __future__ import annotations

from otel_stigmer._configure import StigmerPipeline, configure
from otel_stigmer.client import CallbackClient
from otel_stigmer.config import StigmerConfig
from otel_stigmer.decorators import new_execution_id, task, workflow
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
from otel_stigmer.exporter import StigmerSpanExporter
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.sinks import EventSink
from otel_stigmer.stats import DeliveryStats

__all__ = [
    "CallbackClient",
    "CallbackError",
    "ConfigError",
    "DeliveryStats",
    "ErrorDetails",
    "EventSink",
    "EventType",
    "ProgressAckResponse",
    "RetryPolicy",
    "Status",
    "StigmerConfig",
    "StigmerPipeline",
    "StigmerSpanExporter",
    "StigmerSpanProcessor",
    "WorkflowProgressEvent",
    "configure",
    "new_error_progress_event",
    "new_execution_id",
    "new_progress_event",
    "new_task_progress_event",
    "task",
    "workflow",
]
