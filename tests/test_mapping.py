"""Unit tests of the pure span -> event mapping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from otel_stigmer import conventions as conv
from otel_stigmer.mapping import (
    MAX_MESSAGE_CHARS,
    TRUNCATION_MARKER,
    ended_events,
    started_events,
)
from otel_stigmer.roles import NO_ROLE, Kind, SpanRole, role_of

WF: dict[str, AttributeValue] = {conv.WORKFLOW_EXECUTION_ID: "ex-1", conv.WORKFLOW_NAME: "ingest"}
TASK: dict[str, AttributeValue] = {**WF, conv.TASK_NAME: "fetch"}


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _one(spans: tuple[TracerProvider, InMemorySpanExporter]) -> ReadableSpan:
    (span,) = spans[1].get_finished_spans()
    return span


def _summary(span: ReadableSpan) -> list[tuple[str, str, str]]:
    return [
        (e.event_type, e.status, e.task_name) for e in [*started_events(span), *ended_events(span)]
    ]


def test_roles() -> None:
    """Roles come from the conventions; a task without an execution id has none."""
    assert role_of(WF) == SpanRole(Kind.WORKFLOW, "ex-1")
    assert role_of(TASK).kind is Kind.TASK
    marker = role_of({**WF, conv.EVENT_TYPE: "workflow_completed"})
    assert marker == SpanRole(Kind.MARKER, "ex-1", "workflow_completed")
    assert marker.terminal
    assert not role_of({**WF, conv.EVENT_TYPE: "workflow_started"}).terminal
    orphan = role_of({conv.TASK_NAME: "orphan"})
    assert orphan.kind is Kind.TASK
    assert not orphan.reported
    assert role_of({"http.method": "GET"}) is NO_ROLE
    assert role_of(None) is NO_ROLE
    assert not NO_ROLE.reported


def test_workflow_span_completed(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """A workflow span maps to workflow_started then workflow_completed."""
    with spans[0].get_tracer("t").start_as_current_span("ingest", attributes=WF):
        pass
    span = _one(spans)
    assert _summary(span) == [
        ("workflow_started", "running", ""),
        ("workflow_completed", "completed", ""),
    ]
    started = started_events(span)[0]
    assert started.workflow_execution_id == "ex-1"
    assert started.workflow_name == "ingest"
    assert started.event_id.endswith(".s")
    assert started.trace_id == format(span.context.trace_id, "032x")


def test_workflow_name_defaults_to_span_name(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Without stigmer.workflow.name the span name is the workflow name."""
    with (
        spans[0]
        .get_tracer("t")
        .start_as_current_span("nightly", attributes={conv.WORKFLOW_EXECUTION_ID: "ex-2"})
    ):
        pass
    assert started_events(_one(spans))[0].workflow_name == "nightly"


def test_failed_task_carries_error_details(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """An ERROR span reports *_failed with code, message and stack trace from the exception."""
    with (
        pytest.raises(KeyError),
        spans[0].get_tracer("t").start_as_current_span("fetch", attributes=TASK),
    ):
        raise KeyError("missing")
    (failed,) = ended_events(_one(spans))
    assert (failed.event_type, failed.status) == ("task_failed", "failed")
    assert failed.error.code == "KeyError"
    assert failed.error.message == "'missing'"
    assert "raise KeyError" in failed.error.stack_trace


def test_explicit_error_code_wins(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """stigmer.error.code overrides exception.type."""
    with (
        pytest.raises(ValueError, match="bad"),
        spans[0]
        .get_tracer("t")
        .start_as_current_span("v", attributes={**TASK, conv.ERROR_CODE: "VALIDATION_ERROR"}),
    ):
        raise ValueError("bad")
    assert ended_events(_one(spans))[0].error.code == "VALIDATION_ERROR"


def test_cancellation(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """stigmer.status=cancelled and a recorded CancelledError both report cancelled."""
    tracer = spans[0].get_tracer("t")
    with tracer.start_as_current_span("a", attributes={**TASK, conv.STATUS: conv.CANCELLED}):
        pass
    with tracer.start_as_current_span("b", attributes=WF) as span:
        span.record_exception(TimeoutError())
        span.add_event("exception", {"exception.type": "asyncio.exceptions.CancelledError"})
        span.set_status(Status(StatusCode.ERROR))
    a, b = spans[1].get_finished_spans()
    assert [(e.event_type, e.status) for e in ended_events(a)] == [("task_cancelled", "cancelled")]
    assert [(e.event_type, e.status) for e in ended_events(b)] == [
        ("workflow_cancelled", "cancelled")
    ]


def test_retrying_task_reports_task_retry(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A failed attempt marked retrying is task_retry with the attempt and the error."""
    attrs: dict[str, AttributeValue] = {**TASK, conv.STATUS: conv.RETRYING, conv.TASK_ATTEMPT: 1}
    with (
        pytest.raises(ConnectionError),
        spans[0].get_tracer("t").start_as_current_span("fetch", attributes=attrs),
    ):
        raise ConnectionError("reset")
    (retry,) = ended_events(_one(spans))
    assert (retry.event_type, retry.status, retry.attempt) == ("task_retry", "running", 1)
    assert (retry.error.code, retry.error.message) == ("ConnectionError", "reset")


def test_span_events_become_events_in_order(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Span events named after event types and `progress` become events at their own times."""
    with spans[0].get_tracer("t").start_as_current_span("fetch", attributes=TASK) as span:
        span.add_event("progress", {conv.PROGRESS: 40, conv.MESSAGE: "40 of 100 rows"})
        span.add_event("task_retry", {conv.TASK_ATTEMPT: 2, "exception.type": "IOError"})
        span.add_event("unrelated", {"x": 1})
        span.add_event("task_completed")  # lifecycle types come from the span itself
        span.add_event("progress", {conv.PROGRESS: 250})
    events = ended_events(_one(spans))
    assert [(e.event_type, e.task_progress, e.message) for e in events] == [
        ("task_progress", 40, "40 of 100 rows"),
        ("task_retry", 0, "task fetch will be retried"),
        ("task_progress", 100, "task fetch at 100%"),
        ("task_completed", 0, "task fetch completed"),
    ]
    assert events[1].attempt == 2
    assert events[1].error.code == "IOError"
    assert events[0].timestamp_ms <= events[1].timestamp_ms <= events[3].timestamp_ms
    assert len({e.event_id for e in events}) == 4


def test_workflow_pause_resume(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """workflow_paused / workflow_resumed span events report paused / running."""
    with spans[0].get_tracer("t").start_as_current_span("wf", attributes=WF) as span:
        span.add_event("workflow_paused")
        span.add_event("workflow_resumed")
    assert [(e.event_type, e.status) for e in ended_events(_one(spans))] == [
        ("workflow_paused", "paused"),
        ("workflow_resumed", "running"),
        ("workflow_completed", "completed"),
    ]


def test_marker_span_is_one_event(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """A marker span stands for exactly one event, reported at its start."""
    attrs: dict[str, AttributeValue] = {
        **WF,
        conv.EVENT_TYPE: "workflow_failed",
        conv.ERROR_CODE: "Boom",
    }
    with spans[0].get_tracer("t").start_as_current_span("CompleteWorkflow:x", attributes=attrs):
        pass
    span = _one(spans)
    assert [(e.event_type, e.status, e.error.code) for e in started_events(span)] == [
        ("workflow_failed", "failed", "Boom")
    ]
    assert ended_events(span) == []


def test_role_less_span_maps_to_nothing(spans: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    """A span without a Stigmer role produces no events."""
    with spans[0].get_tracer("t").start_as_current_span("GET /", attributes={"a": 1}):
        pass
    assert _summary(_one(spans)) == []


def test_oversized_and_odd_values_are_bounded(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """Long strings are cut with a visible marker; non-string metadata renders as text."""
    attrs: dict[str, AttributeValue] = {
        **TASK,
        conv.MESSAGE: "x" * 100_000,
        conv.METADATA_PREFIX + "rows": 12,
        conv.METADATA_PREFIX + "tags": ("a", "b"),
        conv.METADATA_PREFIX + "emoji": "ok \U0001f680",
    }
    with spans[0].get_tracer("t").start_as_current_span("fetch", attributes=attrs):
        pass
    (done,) = ended_events(_one(spans))
    assert len(done.message) == MAX_MESSAGE_CHARS
    assert TRUNCATION_MARKER in done.message
    assert dict(done.metadata) == {"rows": "12", "tags": "[a, b]", "emoji": "ok \U0001f680"}
    assert done.ByteSize() < 16_000


def test_error_code_of_a_script_exception_has_no_main_prefix(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """An exception class defined in the running script reports its bare name as the code."""
    error = type("GatewayTimeoutError", (ConnectionError,), {"__module__": "__main__"})
    with (
        pytest.raises(ConnectionError),
        spans[0].get_tracer("t").start_as_current_span("pay", attributes=TASK),
    ):
        raise error("timed out")
    assert ended_events(_one(spans))[0].error.code == "GatewayTimeoutError"


def test_events_only_span_reports_its_span_events_and_no_start_or_outcome(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """With stigmer.span.events_only, start and end map to nothing; progress still maps."""
    with (
        spans[0]
        .get_tracer("t")
        .start_as_current_span(
            "RunActivity:fetch", attributes={**TASK, conv.EVENTS_ONLY: True}
        ) as span
    ):
        span.add_event("progress", {conv.PROGRESS: 40})
    ended = _one(spans)
    assert started_events(ended) == []
    assert [(e.event_type, e.task_progress) for e in ended_events(ended)] == [("task_progress", 40)]
