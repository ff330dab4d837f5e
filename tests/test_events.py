"""Event constructors reproduce the callback guide's examples field for field."""

from __future__ import annotations

import re
import time

import pytest

from otel_stigmer.events import (
    TERMINAL_EVENT_TYPES,
    ErrorDetails,
    EventType,
    Status,
    WorkflowProgressEvent,
    new_error_progress_event,
    new_event_id,
    new_progress_event,
    new_task_progress_event,
)


def _without_stamps(event: WorkflowProgressEvent) -> WorkflowProgressEvent:
    copy = WorkflowProgressEvent()
    copy.CopyFrom(event)
    copy.ClearField("timestamp_ms")
    copy.ClearField("event_id")
    return copy


def _assert_stamped(event: WorkflowProgressEvent, before_ms: int, after_ms: int) -> None:
    assert before_ms <= event.timestamp_ms <= after_ms
    assert re.fullmatch(r"[0-9a-f]{32}", event.event_id)


def test_workflow_event_matches_the_guide() -> None:
    """NewProgressEvent("wfexec-123", "workflow_started", ...) from the guide, field for field."""
    before = time.time_ns() // 1_000_000
    event = new_progress_event(
        "wfexec-123",
        "workflow_started",
        "my-workflow",
        "running",
        "Workflow started successfully",
        1,
    )
    after = time.time_ns() // 1_000_000
    assert _without_stamps(event) == WorkflowProgressEvent(
        workflow_execution_id="wfexec-123",
        event_type="workflow_started",
        workflow_name="my-workflow",
        status="running",
        message="Workflow started successfully",
        sequence_number=1,
    )
    _assert_stamped(event, before, after)
    assert not event.HasField("error")
    assert event.task_name == ""


def test_task_event_matches_the_guide() -> None:
    """NewTaskProgressEvent("wfexec-123", "task_started", ...) from the guide, field for field."""
    before = time.time_ns() // 1_000_000
    event = new_task_progress_event(
        "wfexec-123",
        "task_started",
        "my-workflow",
        "process-data",
        "running",
        "Processing data...",
        2,
    )
    after = time.time_ns() // 1_000_000
    assert _without_stamps(event) == WorkflowProgressEvent(
        workflow_execution_id="wfexec-123",
        event_type="task_started",
        workflow_name="my-workflow",
        task_name="process-data",
        status="running",
        message="Processing data...",
        sequence_number=2,
    )
    _assert_stamped(event, before, after)


def test_error_event_matches_the_guide() -> None:
    """NewErrorProgressEvent(..., "VALIDATION_ERROR", ...) is a failed workflow with details."""
    before = time.time_ns() // 1_000_000
    event = new_error_progress_event(
        "wfexec-123",
        "my-workflow",
        "VALIDATION_ERROR",
        "Invalid input data",
        "stack trace...",
        5,
    )
    after = time.time_ns() // 1_000_000
    assert _without_stamps(event) == WorkflowProgressEvent(
        workflow_execution_id="wfexec-123",
        event_type="workflow_failed",
        workflow_name="my-workflow",
        status="failed",
        message="Invalid input data",
        sequence_number=5,
        error=ErrorDetails(
            code="VALIDATION_ERROR", message="Invalid input data", stack_trace="stack trace..."
        ),
    )
    _assert_stamped(event, before, after)
    assert event.event_type in TERMINAL_EVENT_TYPES


def test_enums_and_strings_build_the_same_event() -> None:
    """EventType/Status members and their string values are interchangeable."""
    by_enum = new_progress_event("e", EventType.WORKFLOW_PAUSED, "w", Status.PAUSED, "m", 3)
    by_text = new_progress_event("e", "workflow_paused", "w", "paused", "m", 3)
    assert _without_stamps(by_enum) == _without_stamps(by_text)


def test_event_ids_are_unique() -> None:
    """Every constructed event gets its own event id."""
    ids = {new_progress_event("e", "workflow_started", "w", "running", "", 1).event_id}
    ids |= {new_event_id() for _ in range(999)}
    assert len(ids) == 1000


def test_events_survive_the_wire() -> None:
    """A constructed event round-trips through protobuf serialization unchanged."""
    event = new_error_progress_event("wfexec-123", "my-workflow", "E", "boom", "tb", 9)
    assert WorkflowProgressEvent.FromString(event.SerializeToString()) == event


@pytest.mark.parametrize(
    ("event_type", "terminal"),
    [
        ("workflow_completed", True),
        ("workflow_failed", True),
        ("workflow_cancelled", True),
        ("task_completed", True),
        ("task_failed", True),
        ("task_cancelled", True),
        ("workflow_started", False),
        ("task_retry", False),
        ("workflow_paused", False),
        ("task_progress", False),
    ],
)
def test_terminal_event_types(event_type: str, terminal: bool) -> None:
    """Only *_completed, *_failed and *_cancelled end a workflow or task."""
    assert (event_type in TERMINAL_EVENT_TYPES) is terminal


def test_guide_vocabulary_is_complete() -> None:
    """All event types and status values listed in the guide exist."""
    guide_types = {
        "workflow_started",
        "workflow_completed",
        "workflow_failed",
        "workflow_paused",
        "workflow_resumed",
        "workflow_cancelled",
        "task_started",
        "task_completed",
        "task_failed",
        "task_retry",
    }
    guide_status = {"pending", "running", "completed", "failed", "cancelled", "paused"}
    assert guide_types <= {member.value for member in EventType}
    assert guide_status == {member.value for member in Status}
