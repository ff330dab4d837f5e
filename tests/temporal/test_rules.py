"""Pure rules: deterministic ids, task results, attempt deadlines, marker event ids."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
    TimeoutError,
    TimeoutType,
)

from otel_stigmer.contrib.temporal import _ids
from otel_stigmer.contrib.temporal._attempts import AttemptBook, AttemptState
from otel_stigmer.contrib.temporal._identity import Identity
from otel_stigmer.contrib.temporal._outcome import task_result
from otel_stigmer.contrib.temporal._report import MarkerParams, emit_marker
from otel_stigmer.events import EventType
from otel_stigmer.mapping import started_events

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
SECOND = timedelta(seconds=1)


def activity_error(cause: BaseException, retry_state: RetryState) -> ActivityError:
    """An ActivityError as a workflow sees it, caused by ``cause``."""
    err = ActivityError(
        "Activity task failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="step",
        activity_id="1",
        retry_state=retry_state,
    )
    err.__cause__ = cause
    return err


def test_event_ids_are_deterministic_and_distinct_per_fact() -> None:
    """The same fact always gets the same id; different facts different ids."""
    instance = _ids.task_instance_id("run-1", "3")
    assert instance == "run-1/3"
    assert _ids.task_outcome_id(instance) == _ids.task_outcome_id("run-1/3")
    ids = {
        _ids.workflow_started_id("run-1"),
        _ids.workflow_outcome_id("run-1"),
        _ids.workflow_outcome_id("run-2"),
        _ids.task_started_id(instance, 1),
        _ids.task_started_id(instance, 2),
        _ids.task_retry_id(instance, 1),
        _ids.task_outcome_id(instance),
        _ids.task_outcome_id(_ids.child_instance_id("run-1", "3")),
    }
    assert len(ids) == 8
    assert all(i.startswith("temporal-") and len(i) < 64 for i in ids)


def test_task_results_follow_what_the_workflow_received() -> None:
    """Success, cancellation, timeout (named, last attempt from the policy), failure."""
    policy = RetryPolicy(maximum_attempts=2)
    assert task_result(None, policy).event_type == EventType.TASK_COMPLETED
    cancelled = activity_error(CancelledError("x"), RetryState.CANCEL_REQUESTED)
    assert task_result(cancelled, policy).event_type == EventType.TASK_CANCELLED
    timeout = TimeoutError(
        "activity StartToClose timeout", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[]
    )
    timed_out = task_result(activity_error(timeout, RetryState.MAXIMUM_ATTEMPTS_REACHED), policy)
    assert (timed_out.event_type, timed_out.error_code, timed_out.final_attempt) == (
        EventType.TASK_FAILED,
        "StartToCloseTimeout",
        2,
    )
    failed = task_result(
        activity_error(ApplicationError("no", type="Bad"), RetryState.NON_RETRYABLE_FAILURE),
        policy,
    )
    assert (failed.event_type, failed.error_code, failed.message, failed.final_attempt) == (
        EventType.TASK_FAILED,
        "Bad",
        "no",
        0,
    )


def test_attempt_deadlines_name_the_timeout_that_fired() -> None:
    """Heartbeat and start-to-close deadlines, measured from the last beat and the start."""
    state = AttemptState(1, T0, 10 * SECOND, 2 * SECOND, T0)
    assert state.timed_out_by(T0 + SECOND) is None
    assert state.timed_out_by(T0 + 3 * SECOND) == "HeartbeatTimeout"
    state.last_beat = T0 + 9 * SECOND
    assert state.timed_out_by(T0 + 10 * SECOND) is None
    assert state.timed_out_by(T0 + 11 * SECOND) == "StartToCloseTimeout"


def test_attempt_book_returns_the_superseded_open_attempt_once() -> None:
    """A new attempt supersedes an open earlier one (returned once); a closed one is not."""
    book = AttemptBook(capacity=2)
    first = AttemptState(1, T0, None, None, T0)
    assert book.start("a", first) is None
    assert book.start("a", AttemptState(2, T0, None, None, T0)) is first
    assert not first.open
    closed = AttemptState(1, T0, None, None, T0, open=False)
    book.start("b", closed)
    assert book.start("b", AttemptState(2, T0, None, None, T0)) is None
    book.start("c", AttemptState(1, T0, None, None, T0))
    assert book.get("a") is None  # beyond capacity, the oldest is forgotten


def test_marker_reports_its_explicit_event_id_once_per_process() -> None:
    """A marker's event id is the deterministic one; emitting the same id again is a no-op."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    params = MarkerParams(
        event_type="task_retry",
        event_id=_ids.task_retry_id("run-x/1", 1),
        identity=Identity("exec-1", "Flow", parent_workflow_id="parent", parent_run_id="pr"),
        workflow_id="wf",
        run_id="run-x",
        error_code="StartToCloseTimeout",
        message="attempt 1 timed out",
        task_name="step",
        instance_id="run-x/1",
        attempt=1,
    )
    assert emit_marker(tracer, params)
    assert not emit_marker(tracer, params)
    (span,) = exporter.get_finished_spans()
    (event,) = started_events(span)
    assert event.event_id == params.event_id
    assert (event.event_type, event.task_name, event.attempt) == ("task_retry", "step", 1)
    assert event.task_instance_id == "run-x/1"
    assert event.error.code == "StartToCloseTimeout"
    assert event.metadata["temporal.parent_workflow_id"] == "parent"


def test_importing_otel_stigmer_does_not_import_temporalio() -> None:
    """The sandbox check in configure() costs no temporalio import."""
    code = "import sys, otel_stigmer; otel_stigmer.configure; print('temporalio' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
