"""Child workflows are steps of their parent; parallel activities are told apart."""

from __future__ import annotations

import pytest

from .conftest import Harness
from .test_acceptance import COMPLETED, STARTED, rows, task
from .workflows import FanOutWorkflow, ParentWorkflow

pytestmark = pytest.mark.temporal


def test_child_workflow_is_a_task_of_its_parent_and_names_the_parent(harness: Harness) -> None:
    """The parent reports the child as a task pair; the child's events name the parent."""
    handle = harness.start_workflow(ParentWorkflow.run, ["ok_step"])
    parent_events = harness.finish(handle)
    child_events = harness.events_until_end(f"{handle.id}-child")

    assert rows(parent_events) == [STARTED, *task("StepsWorkflow"), COMPLETED]
    assert parent_events[1].task_instance_id == parent_events[2].task_instance_id
    assert parent_events[1].metadata["temporal.child_workflow_id"] == f"{handle.id}-child"
    assert rows(child_events) == [STARTED, *task("ok_step"), COMPLETED]
    parent_run = parent_events[0].metadata["temporal.run_id"]
    for event in child_events:
        assert event.metadata["temporal.parent_workflow_id"] == handle.id
        assert event.metadata["temporal.parent_run_id"] == parent_run


def test_parallel_activities_have_distinct_instance_ids_stable_across_attempts(
    harness: Harness,
) -> None:
    """Five parallel activities of one type (one retried): five task instance ids, each
    shared by every event of its task, attempts included."""
    plan = ["ok_step", "flaky_step", "ok_step", "ok_step", "ok_step"]
    handle = harness.start_workflow(FanOutWorkflow.run, plan)
    events = harness.finish(handle, count=2 + 2 * 6)

    task_events = [e for e in events if e.task_name]
    assert all(e.task_instance_id for e in task_events)
    by_instance: dict[str, list[tuple[str, int]]] = {}
    for event in task_events:
        by_instance.setdefault(event.task_instance_id, []).append((event.event_type, event.attempt))
    assert len(by_instance) == len(plan)
    sequences = sorted(by_instance.values())
    ok = [("task_started", 1), ("task_completed", 1)]
    flaky = [("task_started", 1), ("task_retry", 1), ("task_started", 2), ("task_completed", 2)]
    assert sequences == sorted([ok] * 4 + [flaky])
    run_id = events[0].metadata["temporal.run_id"]
    assert {i.split("/")[0] for i in by_instance} == {run_id}


def test_local_activities_report_like_activities(harness: Harness) -> None:
    """Local activities (the local-activity sample), one retried: the same task events."""
    handle = harness.start(["local:ok_step", "local:flaky_step"])
    events = harness.finish(handle)

    assert rows(events) == [
        STARTED,
        *task("ok_step"),
        *task("flaky_step", outcome="task_retry"),
        *task("flaky_step", attempt=2),
        COMPLETED,
    ]
    assert events[3].task_instance_id == events[5].task_instance_id != events[1].task_instance_id
