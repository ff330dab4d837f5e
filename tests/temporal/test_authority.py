"""Task outcomes are the ones Temporal recorded: async completion, timeouts, cancellation."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from otel_stigmer.contrib.temporal import StigmerInterceptor, _interceptor
from otel_stigmer.contrib.temporal._once import OnceFilter

from .conftest import Harness, new_worker
from .test_acceptance import STARTED, rows, task
from .workflows import (
    CancellationWorkflow,
    Finished,
    GreetingWorkflow,
    TimeoutWorkflow,
    cleanup_activity,
    never_complete_activity,
)

pytestmark = pytest.mark.temporal


def wait_until(condition: object, timeout: float = 20.0) -> None:
    """Wait for ``condition()`` to hold, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_async_completion_reports_the_clients_completion_and_no_retry(harness: Harness) -> None:
    """raise_complete_async, then a client completes it: task_completed, never task_retry."""
    handle = harness.start_workflow(GreetingWorkflow.run, "complete")
    events = harness.finish(handle)

    assert harness.loop.run(handle.result()) == "Hello, World!"
    assert rows(events) == [
        STARTED,
        *task("compose_greeting"),
        ("workflow_completed", "", 0),
    ]


def test_async_failure_reports_the_clients_failure(harness: Harness) -> None:
    """A client fails an asynchronously completed activity: task_failed with its error."""
    handle = harness.start_workflow(GreetingWorkflow.run, "fail")
    events = harness.finish(handle)

    assert rows(events) == [
        STARTED,
        *task("compose_greeting", outcome="task_failed"),
        ("workflow_failed", "", 0),
    ]
    assert events[2].error.code == "Refused"
    assert events[2].error.message == "greeting refused"


def test_async_cancellation_reports_the_clients_confirmation(harness: Harness) -> None:
    """The workflow cancels an async activity; the client confirms: task_cancelled."""
    handle = harness.start_workflow(GreetingWorkflow.run, "cancel")
    events = harness.finish(handle)

    assert harness.loop.run(handle.result()) == "cancelled"
    assert rows(events) == [
        STARTED,
        *task("compose_greeting", outcome="task_cancelled"),
        ("workflow_completed", "", 0),
    ]


@pytest.mark.parametrize("beat", [False, True], ids=["silent", "heartbeating"])
def test_start_to_close_timeouts_are_reported_as_timeouts(harness: Harness, beat: bool) -> None:
    """Two attempts time out: task_retry then task_failed, both timeouts, before
    workflow_failed; the attempts' late returns (refused by Temporal) add nothing."""
    handle = harness.start_workflow(TimeoutWorkflow.run, beat)
    events = harness.finish(handle)
    wait_until(lambda: sorted(Finished.of(handle.id)) == [1, 2])
    harness.pipeline.force_flush(10_000)

    assert (
        rows(harness.receiver.events(handle.id))
        == rows(events)
        == [
            STARTED,
            *task("late_step", outcome="task_retry"),
            *task("late_step", attempt=2, outcome="task_failed"),
            ("workflow_failed", "", 0),
        ]
    )
    assert events[2].error.code == "StartToCloseTimeout"
    assert events[4].error.code == "StartToCloseTimeout"
    assert events[5].error.code == "StartToCloseTimeout"


def test_cancellation_sample_reports_task_cancelled_despite_worker_shutdown(
    harness: Harness,
) -> None:
    """The cancellation sample: the workflow is cancelled, the worker shuts down at once;
    the activity is task_cancelled (not a WorkerShutdown retry), the cleanup runs."""
    queue = f"cancel-{uuid.uuid4().hex[:8]}"
    with ThreadPoolExecutor(4) as executor:
        worker = harness.loop.run(
            new_worker(
                harness.client,
                task_queue=queue,
                workflows=[CancellationWorkflow],
                activities=[never_complete_activity, cleanup_activity],
                activity_executor=executor,
                max_cached_workflows=0,
            )
        )
        running = harness.loop.submit(worker.run())
        handle = harness.start_workflow(CancellationWorkflow.run, None, task_queue=queue)
        harness.wait_started(handle, "never_complete_activity")
        harness.loop.run(handle.cancel())
        events = harness.finish(handle)
        harness.loop.run(worker.shutdown())
        running.result(30)
    wait_until(lambda: Finished.of(handle.id) == [1])
    harness.pipeline.force_flush(10_000)

    assert (
        rows(harness.receiver.events(handle.id))
        == rows(events)
        == [
            STARTED,
            *task("never_complete_activity", outcome="task_cancelled"),
            *task("cleanup_activity"),
            ("workflow_cancelled", "", 0),
        ]
    )


def test_worker_restart_mid_attempt_reports_one_outcome_per_attempt(harness: Harness) -> None:
    """A worker shut down during an attempt, then a new worker: the lost attempt is one
    task_retry (WorkerShutdown), the next attempt completes, the run completes once."""
    queue = f"restart-{uuid.uuid4().hex[:8]}"
    from .workflows import LOCAL_ACTIVITIES, StepsWorkflow  # noqa: PLC0415

    def start_worker() -> tuple[object, object]:
        worker = harness.loop.run(
            new_worker(
                harness.client,
                task_queue=queue,
                workflows=[StepsWorkflow],
                activities=LOCAL_ACTIVITIES,
                max_cached_workflows=0,
                graceful_shutdown_timeout=timedelta(0),
            )
        )
        return worker, harness.loop.submit(worker.run())

    worker, running = start_worker()
    handle = harness.start_workflow(StepsWorkflow.run, ["ok_step", "hang_step"], task_queue=queue)
    harness.wait_started(handle, "hang_step")
    harness.loop.run(worker.shutdown())  # type: ignore[attr-defined]
    running.result(30)  # type: ignore[attr-defined]
    worker, running = start_worker()
    try:
        harness.receiver.wait_for_events(
            lambda events: any(e.task_name == "hang_step" and e.attempt == 2 for e in events),
            execution_id=handle.id,
            timeout=30,
        )
        harness.loop.run(handle.cancel())
        events = harness.finish(handle)
    finally:
        harness.loop.run(worker.shutdown())  # type: ignore[attr-defined]
        running.result(30)  # type: ignore[attr-defined]

    assert rows(events) == [
        STARTED,
        *task("ok_step"),
        *task("hang_step", outcome="task_retry"),
        *task("hang_step", attempt=2, outcome="task_cancelled"),
        ("workflow_cancelled", "", 0),
    ]
    assert events[4].error.code == "WorkerShutdown"


def test_interceptor_on_client_and_worker_reports_once_with_one_warning(
    harness: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered on the client and again on the worker: events once, one warning."""
    monkeypatch.setattr(_interceptor, "_warnings", OnceFilter())
    from .workflows import LOCAL_ACTIVITIES, StepsWorkflow  # noqa: PLC0415

    queue = f"twice-{uuid.uuid4().hex[:8]}"
    extra = StigmerInterceptor(harness.tracer_provider.get_tracer("tests.temporal"))
    worker = harness.loop.run(
        new_worker(
            harness.client,
            task_queue=queue,
            workflows=[StepsWorkflow],
            activities=LOCAL_ACTIVITIES,
            interceptors=[extra],
        )
    )
    running = harness.loop.submit(worker.run())
    try:
        first = harness.start_workflow(
            StepsWorkflow.run, ["ok_step", "flaky_step"], task_queue=queue
        )
        first_events = harness.finish(first)
        second = harness.start_workflow(StepsWorkflow.run, ["ok_step"], task_queue=queue)
        second_events = harness.finish(second)
    finally:
        harness.loop.run(worker.shutdown())
        running.result(10)

    assert rows(first_events) == [
        STARTED,
        *task("ok_step"),
        *task("flaky_step", outcome="task_retry"),
        *task("flaky_step", attempt=2),
        ("workflow_completed", "", 0),
    ]
    assert rows(second_events) == [STARTED, *task("ok_step"), ("workflow_completed", "", 0)]
    warnings = [r for r in caplog.records if "registered twice" in r.getMessage()]
    assert len(warnings) == 1
