"""Acceptance: what the receiver stores for real Temporal runs, per execution, in order."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from otel_stigmer import WorkflowProgressEvent
from otel_stigmer.contrib.temporal import StigmerInterceptor, from_memo

from .conftest import CANARY_KEY, Harness, new_worker
from .workflows import LOCAL_ACTIVITIES, StepsWorkflow

pytestmark = pytest.mark.temporal

Row = tuple[str, str, int]


def rows(events: list[WorkflowProgressEvent]) -> list[Row]:
    """Render events as ``(event_type, task_name, attempt)``, checking the sequence order."""
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == len(numbers)
    assert len({e.event_id for e in events}) == len(events)
    return [(e.event_type, e.task_name, e.attempt) for e in events]


def task(name: str, *, attempt: int = 1, outcome: str = "task_completed") -> list[Row]:
    """The two rows one activity attempt reports."""
    return [("task_started", name, attempt), (outcome, name, attempt)]


STARTED: Row = ("workflow_started", "", 0)
COMPLETED: Row = ("workflow_completed", "", 0)


def test_three_activities_report_started_pairs_completed(harness: Harness) -> None:
    """Three activities: workflow started, three started/completed pairs, workflow completed."""
    handle = harness.start(["ok_step", "ok_step", "ok_step"])
    events = harness.finish(handle)

    assert rows(events) == [STARTED, *task("ok_step") * 3, COMPLETED]
    assert {e.workflow_name for e in events} == {"StepsWorkflow"}
    assert {e.workflow_execution_id for e in events} == {handle.id}
    assert events[1].metadata["temporal.task_queue"] == "stigmer-tests"


def test_progress_an_activity_adds_to_its_span_is_reported_between_its_start_and_end(
    harness: Harness,
) -> None:
    """Progress span events on the activity's span are task_progress events of that call."""
    handle = harness.start(["progress_step"])
    events = harness.finish(handle)

    assert rows(events) == [
        STARTED,
        ("task_started", "progress_step", 1),
        ("task_progress", "progress_step", 1),
        ("task_progress", "progress_step", 1),
        ("task_completed", "progress_step", 1),
        COMPLETED,
    ]
    assert [e.task_progress for e in events if e.event_type == "task_progress"] == [25, 75]
    assert len({e.task_instance_id for e in events if e.task_name}) == 1


def test_failed_attempt_that_will_be_retried_reports_task_retry(harness: Harness) -> None:
    """An attempt that fails and is retried reports task_retry (attempt 1, the error)."""
    events = harness.finish(harness.start(["flaky_step"]))

    assert rows(events) == [
        STARTED,
        *task("flaky_step", outcome="task_retry"),
        *task("flaky_step", attempt=2),
        COMPLETED,
    ]
    retry = events[2]
    assert retry.error.code == "RuntimeError"
    assert retry.error.message == "flaky failure"


def test_failed_workflow_reports_workflow_failed_with_the_error(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A non-retryable activity error fails the task and the workflow, with code and message."""
    events = harness.finish(harness.start(["ok_step", "fatal_step"]))

    assert rows(events) == [
        STARTED,
        *task("ok_step"),
        *task("fatal_step", outcome="task_failed"),
        ("workflow_failed", "", 0),
    ]
    assert events[4].error.code == "InvalidInput"
    failed = events[-1]
    assert failed.status == "failed"
    assert failed.error.code == "InvalidInput"
    assert "bad input" in failed.message
    assert "bad input" in failed.error.message
    assert "bad input" in caplog.text  # the worker logged the failure...
    assert CANARY_KEY not in caplog.text  # ...and never the API key


def test_cancelled_workflow_reports_task_and_workflow_cancelled(harness: Harness) -> None:
    """Cancelling a run from the client reports task_cancelled, then workflow_cancelled."""
    handle = harness.start(["hang_step"])
    harness.receiver.wait_for_events(
        lambda events: any(e.event_type == "task_started" for e in events),
        execution_id=handle.id,
        timeout=20,
    )
    harness.loop.run(handle.cancel())
    events = harness.finish(handle)

    assert rows(events) == [
        STARTED,
        *task("hang_step", outcome="task_cancelled"),
        ("workflow_cancelled", "", 0),
    ]
    assert events[-1].status == "cancelled"


def test_workflow_started_without_the_client_interceptor_reports(harness: Harness) -> None:
    """A run started by a client without the interceptor (CLI, schedule) still reports."""
    handle = harness.start(["ok_step"], client=harness.plain_client)
    events = harness.finish(handle)

    assert rows(events) == [STARTED, *task("ok_step"), COMPLETED]
    assert {e.workflow_execution_id for e in events} == {handle.id}


def test_replay_on_every_task_reports_each_event_once(harness: Harness) -> None:
    """With max_cached_workflows=0 every task replays history; nothing is reported twice."""
    events = harness.finish(harness.start(["ok_step", "flaky_step", "ok_step", "ok_step"]))

    assert rows(events) == [
        STARTED,
        *task("ok_step"),
        *task("flaky_step", outcome="task_retry"),
        *task("flaky_step", attempt=2),
        *task("ok_step") * 2,
        COMPLETED,
    ]


def test_retried_first_workflow_task_reports_one_start(harness: Harness) -> None:
    """A first workflow task that fails and is retried (no replay) reports one start."""
    handle = harness.start(["fail_first_task", "ok_step"])
    events = harness.finish(handle)

    history = harness.loop.run(handle.fetch_history())
    assert any(e.HasField("workflow_task_failed_event_attributes") for e in history.events)
    assert rows(events) == [STARTED, *task("ok_step"), COMPLETED]


def test_continue_as_new_goes_on_with_the_same_execution(harness: Harness) -> None:
    """A run continued as new is one execution: one start, all tasks, one completion."""
    handle = harness.start(["ok_step", "continue_as_new", "ok_step"])
    events = harness.finish(handle)

    assert rows(events) == [STARTED, *task("ok_step") * 2, COMPLETED]
    assert len({e.metadata["temporal.run_id"] for e in events}) == 2


def test_activities_on_another_worker_process_are_ordered(harness: Harness) -> None:
    """Activities run by a second worker process share the execution id, in order."""
    script = Path(__file__).with_name("remote_worker.py")
    env = {**_inherited_env(), **harness.receiver.env()}
    with subprocess.Popen(
        [sys.executable, str(script), harness.address],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        with ThreadPoolExecutor(1) as pool:
            ready = pool.submit(proc.stdout.readline).result(timeout=60)
        try:
            assert ready.strip() == "ready", proc.stderr.read()
            plan = ["ok_step", "remote_step", "ok_step", "remote_step"]
            expected = [STARTED, *(row for name in plan for row in task(name)), COMPLETED]
            handle = harness.start(plan)
            events = harness.finish(handle, count=len(expected))
        finally:
            # Closing its standard input (communicate does) stops the remote worker.
            out, err = proc.communicate(timeout=30)

    assert proc.returncode == 0, err
    assert rows(events) == expected
    assert {e.workflow_execution_id for e in events} == {handle.id}
    queues = [e.metadata["temporal.task_queue"] for e in events if e.task_name]
    assert (
        queues
        == ["stigmer-tests"] * 2
        + ["stigmer-remote-activities"] * 2
        + ["stigmer-tests"] * 2
        + ["stigmer-remote-activities"] * 2
    )
    assert CANARY_KEY not in out + err


def test_worker_interceptor_with_memo_execution_id(harness: Harness) -> None:
    """On the worker alone, with from_memo: the run and its tasks use the memo's id."""
    interceptor = StigmerInterceptor(
        harness.tracer_provider.get_tracer("tests.temporal"),
        execution_id=from_memo("stigmer_execution_id"),
    )
    loop = harness.loop
    queue = f"memo-{uuid.uuid4().hex[:8]}"
    execution_id = f"exec-{uuid.uuid4().hex[:8]}"
    worker = loop.run(
        new_worker(
            harness.plain_client,
            task_queue=queue,
            workflows=[StepsWorkflow],
            activities=LOCAL_ACTIVITIES,
            interceptors=[interceptor],
        )
    )
    running = loop.submit(worker.run())
    try:
        handle = loop.run(
            harness.plain_client.start_workflow(
                StepsWorkflow.run,
                ["ok_step"],
                id=f"memo-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
                memo={"stigmer_execution_id": execution_id},
            )
        )
        loop.run(handle.result(), timeout=60)
        events = harness.events_until_end(execution_id)
    finally:
        loop.run(worker.shutdown())
        running.result(10)

    assert rows(events) == [STARTED, *task("ok_step"), COMPLETED]
    assert {e.metadata["temporal.workflow_id"] for e in events} == {handle.id}
    assert harness.receiver.events(handle.id) == []


def _inherited_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")}
