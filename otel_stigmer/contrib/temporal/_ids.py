"""Deterministic event ids and task instance ids from Temporal's own ids (pure).

Several components may report the same fact: the activity worker and the workflow worker
both see a task's outcome, a workflow task re-run after a crash reports its markers again,
and any number of watchers see a terminated run. Each fact gets one event id computed from
Temporal's ids, so a receiver that de-duplicates by event id stores it once.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "child_instance_id",
    "event_id",
    "task_instance_id",
    "task_outcome_id",
    "task_retry_id",
    "task_started_id",
    "workflow_outcome_id",
    "workflow_started_id",
]

_PREFIX = "temporal-"


def event_id(*parts: str | int) -> str:
    """A short, stable id for the fact named by ``parts``."""
    text = "\x1f".join(str(part) for part in parts)
    return _PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def task_instance_id(run_id: str, activity_id: str) -> str:
    """The id of one activity call of a run, shared by all its attempts."""
    return f"{run_id}/{activity_id}"


def child_instance_id(run_id: str, child_workflow_id: str) -> str:
    """The id of one child workflow started by a run."""
    return f"{run_id}/child/{child_workflow_id}"


def workflow_started_id(run_id: str) -> str:
    """The ``workflow_started`` of a run."""
    return event_id(run_id, "workflow_started")


def workflow_outcome_id(run_id: str) -> str:
    """The one outcome of a run, whoever reports it (its workflow code or a watcher)."""
    return event_id(run_id, "workflow_outcome")


def task_started_id(instance_id: str, attempt: int) -> str:
    """The ``task_started`` of one attempt."""
    return event_id(instance_id, attempt, "task_started")


def task_retry_id(instance_id: str, attempt: int) -> str:
    """The ``task_retry`` of one attempt."""
    return event_id(instance_id, attempt, "task_retry")


def task_outcome_id(instance_id: str) -> str:
    """The one terminal outcome of a task (completed, failed or cancelled)."""
    return event_id(instance_id, "task_outcome")
