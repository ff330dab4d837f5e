"""Runs that end without workflow code (terminate, timeouts) still report an outcome."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle

from otel_stigmer.contrib.temporal._closes import terminated_report, timed_out_report
from otel_stigmer.events import EventType

from .conftest import CANARY_KEY, Harness
from .test_acceptance import STARTED, rows
from .workflows import StepsWorkflow

pytestmark = pytest.mark.temporal

#: The delay the README states for the watcher's default 2 s interval; the session watcher
#: polls every 0.5 s, so this bound is generous.
STATED_DELAY = 10.0


def start_waiting(harness: Harness, **options: Any) -> WorkflowHandle[Any, Any]:
    """Start a run that waits forever and wait for its start to be stored."""
    handle = harness.start_workflow(StepsWorkflow.run, ["wait_forever"], **options)
    harness.wait_started(handle)
    return handle


def test_terminated_run_reports_workflow_cancelled_with_the_reason(harness: Harness) -> None:
    """terminate(reason) -> workflow_cancelled, message naming the reason."""
    handle = start_waiting(harness)
    harness.loop.run(handle.terminate(reason="operator stopped it"))
    events = harness.events_until_end(handle.id)

    assert rows(events) == [STARTED, ("workflow_cancelled", "", 0)]
    assert events[-1].status == "cancelled"
    assert events[-1].message == "terminated: operator stopped it"
    assert events[-1].metadata["temporal.close_status"] == "terminated"


@pytest.mark.parametrize(
    ("timeout", "code"),
    [("run_timeout", "WorkflowRunTimeout"), ("execution_timeout", "WorkflowExecutionTimeout")],
)
def test_timed_out_run_reports_workflow_failed_naming_the_timeout(
    harness: Harness, timeout: str, code: str
) -> None:
    """A run or execution timeout -> workflow_failed with an error code naming it."""
    handle = start_waiting(harness, **{timeout: timedelta(seconds=1)})
    events = harness.events_until_end(handle.id)

    assert rows(events) == [STARTED, ("workflow_failed", "", 0)]
    assert events[-1].error.code == code
    assert code in events[-1].message


def test_reset_run_reports_no_outcome_for_the_run_it_replaced(harness: Harness) -> None:
    """A reset terminates the running run and re-runs it as a new run: the replaced run
    reports no outcome (the execution goes on); the new run reports its own start and
    its outcome (here a terminate, later)."""
    from temporalio.api.common.v1 import WorkflowExecution  # noqa: PLC0415
    from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest  # noqa: PLC0415

    handle = harness.start_workflow(StepsWorkflow.run, ["ok_step", "wait_forever"])
    harness.wait_started(handle, "ok_step")
    harness.receiver.wait_for_events(
        lambda events: any(e.event_type == "task_completed" for e in events),
        execution_id=handle.id,
        timeout=20,
    )
    reset = harness.loop.run(
        harness.client.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace="default",
                workflow_execution=WorkflowExecution(workflow_id=handle.id),
                reason="replay the step",
                workflow_task_finish_event_id=4,
                request_id=os.urandom(8).hex(),
            )
        )
    )
    harness.receiver.wait_for_events(
        lambda events: sum(e.event_type == "task_completed" for e in events) == 2,
        execution_id=handle.id,
        timeout=20,
    )
    harness.loop.run(
        harness.client.get_workflow_handle(handle.id, run_id=reset.run_id).terminate(reason="done")
    )
    events = harness.events_until_end(handle.id)

    ok = [("task_started", "ok_step", 1), ("task_completed", "ok_step", 1)]
    assert rows(events) == [STARTED, *ok, STARTED, *ok, ("workflow_cancelled", "", 0)]
    assert events[-1].message == "terminated: done"
    assert {e.metadata["temporal.run_id"] for e in events[3:]} == {reset.run_id}


@pytest.mark.slow
def test_hundred_runs_terminated_at_once_all_end_within_the_stated_delay(
    harness: Harness,
) -> None:
    """100 runs terminated together: each gets exactly one workflow_cancelled in time."""
    handles = [harness.start_workflow(StepsWorkflow.run, ["wait_forever"]) for _ in range(100)]
    for handle in handles:
        harness.wait_started(handle)

    async def terminate_all() -> None:
        await asyncio.gather(*(h.terminate("bulk stop") for h in handles))

    harness.loop.run(terminate_all(), timeout=60)
    ids = {h.id for h in handles}
    harness.receiver.wait_for_events(
        lambda events: (
            {e.workflow_execution_id for e in events if e.event_type == "workflow_cancelled"} >= ids
        ),
        timeout=STATED_DELAY,
    )
    for handle in handles:
        assert rows(harness.receiver.events(handle.id)) == [STARTED, ("workflow_cancelled", "", 0)]


def test_restarted_watcher_process_reports_no_outcome_twice(harness: Harness) -> None:
    """A watcher process, then another one (a restart) over the same closed runs plus new
    ones: every run's outcome is stored exactly once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")}
    env.update(harness.receiver.env())
    command = [sys.executable, "-m", "otel_stigmer.cli", "temporal-watch", "--once"]
    command += ["--address", harness.address]

    def watch_once() -> int:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert CANARY_KEY not in done.stdout + done.stderr
        return int(done.stdout.split()[-1])

    first = [start_waiting(harness) for _ in range(5)]
    for handle in first:
        harness.loop.run(handle.terminate("first batch"))
    watch_once()
    second = [start_waiting(harness) for _ in range(5)]
    for handle in second:
        harness.loop.run(handle.terminate("second batch"))
    # The restarted watcher knows nothing of the first: it reports both batches again.
    assert watch_once() >= len(first) + len(second)

    for handle in first + second:
        events = harness.events_until_end(handle.id)
        assert rows(events) == [STARTED, ("workflow_cancelled", "", 0)]


def test_close_reports_follow_temporal_rules() -> None:
    """Terminate -> cancelled (not for a reset); timeouts -> failed, named by which fired."""
    report = terminated_report("why", "someone")
    assert report is not None
    assert report.event_type == EventType.WORKFLOW_CANCELLED
    assert report.message == "terminated: why"
    assert terminated_report("reset", "history-resetter") is None
    from datetime import datetime, timezone  # noqa: PLC0415

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    second = timedelta(seconds=1)
    run = timed_out_report(
        started=start, closed=start + second, run_timeout=second, execution_timeout=None
    )
    assert run.error_code == "WorkflowRunTimeout"
    execution = timed_out_report(
        started=start, closed=start + second, run_timeout=second, execution_timeout=second
    )
    assert execution.error_code == "WorkflowExecutionTimeout"
    early = timed_out_report(
        started=start, closed=start + second, run_timeout=5 * second, execution_timeout=10 * second
    )
    assert early.error_code == "WorkflowExecutionTimeout"


def test_task_outcome_after_the_terminated_run_is_reported_late(harness: Harness) -> None:
    """Terminated during a heartbeating activity: workflow_cancelled, then (late) the
    activity's task_cancelled when its heartbeat finds the run gone."""
    handle = harness.start_workflow(StepsWorkflow.run, ["hang_step"])
    harness.wait_started(handle, "hang_step")
    harness.loop.run(handle.terminate(reason="stop now"))
    events = harness.receiver.wait_for_events(
        lambda events: any(e.event_type == "task_cancelled" for e in events),
        execution_id=handle.id,
        timeout=20,
    )

    assert rows(events) == [
        STARTED,
        ("task_started", "hang_step", 1),
        ("workflow_cancelled", "", 0),
        ("task_cancelled", "hang_step", 1),
    ]
    assert events[-1].message == "the workflow run closed during the attempt"
