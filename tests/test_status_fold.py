"""The pure fold: progress events -> one execution's WorkflowExecutionStatus."""

from __future__ import annotations

import random

from otel_stigmer.events import ErrorDetails, WorkflowProgressEvent
from otel_stigmer.status.fold import ExecutionFold, fold_events, iso_utc
from otel_stigmer.status.wire import ExecutionPhase, WorkflowExecutionStatus, WorkflowTaskStatus

EXEC = "wf-1"
_counter = iter(range(1, 10_000))


def event(
    event_type: str,
    task: str = "",
    *,
    instance: str = "",
    attempt: int = 0,
    seq: int | None = None,
    error: tuple[str, str] | None = None,
    progress: int = 0,
    message: str = "",
    metadata: dict[str, str] | None = None,
) -> WorkflowProgressEvent:
    number = next(_counter) if seq is None else seq
    built = WorkflowProgressEvent(
        workflow_execution_id=EXEC,
        event_type=event_type,
        task_name=task,
        task_instance_id=instance or (task and f"{task}-call"),
        attempt=attempt,
        sequence_number=number,
        timestamp_ms=1_736_605_822_000 + number,
        event_id=f"e{number}",
        task_progress=progress,
        message=message,
        metadata=metadata or {},
    )
    if error is not None:
        built.error.CopyFrom(ErrorDetails(code=error[0], message=error[1]))
    return built


def render(status: WorkflowExecutionStatus) -> list[str]:
    """One line for the execution, one per task: status names, errors, metadata keys."""
    lines = [f"{ExecutionPhase.Name(status.phase)} error={status.error!r}"]
    for task in status.tasks:
        keys = ",".join(sorted(task.metadata.keys()))
        lines.append(
            f"{task.task_id} {task.task_name} {WorkflowTaskStatus.Name(task.status)}"
            f" error={task.error!r} metadata={keys}"
        )
    return lines


def order_story() -> list[WorkflowProgressEvent]:
    return [
        event("workflow_started"),
        event("task_started", "reserve"),
        event("task_completed", "reserve"),
        event("task_started", "charge", attempt=1),
        event("task_retry", "charge", attempt=1, error=("TIMEOUT", "gateway timed out")),
        event("task_started", "charge", attempt=2),
        event("task_progress", "charge", attempt=2, progress=50, message="half way"),
        event("task_completed", "charge", attempt=2),
        event("task_started", "receipt"),
        event("task_failed", "receipt", error=("MAILBOX_FULL", "mailbox is full")),
        event("workflow_completed"),
    ]


def fold(events: list[WorkflowProgressEvent]) -> WorkflowExecutionStatus:
    return fold_events(events)[EXEC]


def test_a_run_folds_to_one_task_per_call_with_outcomes() -> None:
    """Attempts of one call share an entry; errors read ``CODE: message``; phase completes."""
    assert render(fold(order_story())) == [
        "EXECUTION_COMPLETED error=''",
        "reserve-call reserve WORKFLOW_TASK_COMPLETED error='' metadata=",
        "charge-call charge WORKFLOW_TASK_COMPLETED error=''"
        " metadata=attempt,last_retry_error,message,progress,retries",
        "receipt-call receipt WORKFLOW_TASK_FAILED error='MAILBOX_FULL: mailbox is full' metadata=",
    ]


def test_retry_progress_and_timestamps_go_to_the_closest_fields() -> None:
    """Retries, attempt, progress and message land in metadata; times are ISO 8601 UTC."""
    story = order_story()
    status = fold(story)
    charge = status.tasks[1]
    assert charge.metadata["attempt"] == 2
    assert charge.metadata["retries"] == 1
    assert charge.metadata["last_retry_error"] == "TIMEOUT: gateway timed out"
    assert charge.metadata["progress"] == 50
    assert charge.started_at == iso_utc(story[3].timestamp_ms)  # the first attempt's start
    assert charge.completed_at == iso_utc(story[7].timestamp_ms)
    assert charge.completed_at > charge.started_at
    assert status.started_at < status.completed_at
    assert charge.task_type == 7  # WORKFLOW_TASK_CUSTOM, as the upstream runner reports


def test_iso_utc_has_milliseconds_and_a_z() -> None:
    """Timestamps are rendered like the upstream examples, with milliseconds."""
    assert iso_utc(1_736_605_827_450) == "2025-01-11T14:30:27.450Z"
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"


def test_order_of_arrival_and_duplicates_do_not_matter() -> None:
    """Shuffled or repeated events fold to the same status (a resend changes nothing)."""
    story = order_story()
    expected = fold(story)
    rng = random.Random(3)
    for _ in range(50):
        shuffled = story + rng.sample(story, k=len(story) // 2)
        rng.shuffle(shuffled)
        assert fold(shuffled) == expected


def test_completed_task_never_goes_back_to_in_progress() -> None:
    """A late task_started or task_progress after completion keeps the task completed."""
    run = ExecutionFold(EXEC)
    run.apply(event("task_started", "t", seq=1))
    run.apply(event("task_completed", "t", seq=2))
    run.apply(event("task_started", "t", attempt=2, seq=3))
    run.apply(event("task_progress", "t", progress=10, seq=4))
    (task,) = run.status().tasks
    assert task.status == WorkflowTaskStatus.WORKFLOW_TASK_COMPLETED
    assert task.metadata["progress"] == 10


def test_terminal_phase_is_never_overwritten_by_in_progress() -> None:
    """workflow_progress, workflow_resumed or workflow_started after the end change nothing."""
    run = ExecutionFold(EXEC)
    run.apply(event("workflow_started", seq=1))
    run.apply(event("workflow_failed", seq=2, error=("BOOM", "it broke")))
    for kind in ("workflow_progress", "workflow_resumed", "workflow_started"):
        run.apply(event(kind, seq=3))
    assert run.phase == ExecutionPhase.EXECUTION_FAILED
    assert run.terminal
    assert run.status().error == "BOOM: it broke"


def test_a_later_outcome_replaces_an_earlier_one() -> None:
    """Between two terminal events the later wins (a workflow retried by its engine)."""
    run = ExecutionFold(EXEC)
    run.apply(event("workflow_completed", seq=9))
    run.apply(event("workflow_failed", seq=5, error=("OLD", "first run failed")))
    assert run.phase == ExecutionPhase.EXECUTION_COMPLETED
    assert run.status().error == ""


def test_cancellation() -> None:
    """A cancelled task is FAILED with a ``cancelled`` error and outcome; the phase CANCELLED."""
    status = fold(
        [
            event("workflow_started"),
            event("task_started", "wait"),
            event("task_cancelled", "wait", message="stopped by user"),
            event("workflow_cancelled"),
        ]
    )
    (task,) = status.tasks
    assert status.phase == ExecutionPhase.EXECUTION_CANCELLED
    assert task.status == WorkflowTaskStatus.WORKFLOW_TASK_FAILED
    assert task.error == "cancelled: stopped by user"
    assert task.metadata["outcome"] == "cancelled"


def test_parallel_calls_of_one_task_are_separate_entries() -> None:
    """Two calls of the same task (different instance ids) are two tasks; no id: one per name."""
    status = fold(
        [
            event("task_started", "fetch", instance="a"),
            event("task_started", "fetch", instance="b"),
            event("task_completed", "fetch", instance="b"),
            event("task_failed", "fetch", instance="a", error=("E", "x")),
        ]
    )
    assert [(t.task_id, t.status) for t in status.tasks] == [
        ("a", WorkflowTaskStatus.WORKFLOW_TASK_FAILED),
        ("b", WorkflowTaskStatus.WORKFLOW_TASK_COMPLETED),
    ]
    assert status.phase == ExecutionPhase.EXECUTION_PHASE_UNSPECIFIED  # no workflow event yet
    bare = WorkflowProgressEvent(
        workflow_execution_id=EXEC, event_type="task_started", task_name="n", sequence_number=1
    )
    (task,) = fold([bare]).tasks
    assert task.task_id == "n"


def test_temporal_workflow_id_and_event_metadata() -> None:
    """``temporal.workflow_id`` fills temporal_workflow_id; task metadata goes to attributes."""
    meta = {"temporal.workflow_id": "order-7", "temporal.activity_id": "3"}
    status = fold(
        [event("workflow_started", metadata=meta), event("task_started", "t", metadata=meta)]
    )
    assert status.temporal_workflow_id == "order-7"
    attributes = status.tasks[0].metadata.fields["attributes"].struct_value
    assert attributes["temporal.activity_id"] == "3"


def test_unknown_event_types_are_ignored() -> None:
    """An event type the fold does not know leaves the status as it was."""
    run = ExecutionFold(EXEC)
    run.apply(event("workflow_started", seq=1))
    before = run.status()
    run.apply(event("something_new", seq=2))
    assert run.status() == before
