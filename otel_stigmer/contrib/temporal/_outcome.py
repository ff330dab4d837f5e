"""How a Temporal activity attempt or workflow run ended, in Stigmer terms (pure)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    RetryState,
    TimeoutError,
    TimeoutType,
    is_cancelled_exception,
)

from otel_stigmer.events import EventType

__all__ = [
    "AttemptFacts",
    "TaskResult",
    "error_code",
    "failure_summary",
    "task_result",
    "timeout_code",
    "will_retry",
    "workflow_outcome",
]

# Temporal's default maximum interval is 100 x the initial interval.
_DEFAULT_MAX_INTERVAL_FACTOR = 100


@dataclass(frozen=True)
class AttemptFacts:
    """What an activity attempt knows about its own retry prospects.

    Attributes:
        attempt: This attempt's number, 1 for the first.
        retry_policy: The activity's retry policy; None means Temporal's default
            (retry without limit).
        scheduled_time: When the activity (its first attempt) was scheduled.
        schedule_to_close_timeout: The overall deadline across attempts, if any.
        now: The time the attempt failed.
    """

    attempt: int
    retry_policy: RetryPolicy | None
    scheduled_time: datetime
    schedule_to_close_timeout: timedelta | None
    now: datetime


def error_code(err: BaseException) -> str:
    """The code Temporal matches against ``non_retryable_error_types``."""
    if isinstance(err, ApplicationError) and err.type:
        return err.type
    return type(err).__name__


def will_retry(err: BaseException, facts: AttemptFacts) -> bool:
    """Whether Temporal will run another attempt after ``err`` failed this one."""
    if isinstance(err, ApplicationError) and err.non_retryable:
        return False
    policy = facts.retry_policy
    if policy is None:
        return True
    if policy.maximum_attempts > 0 and facts.attempt >= policy.maximum_attempts:
        return False
    if error_code(err) in (policy.non_retryable_error_types or ()):
        return False
    if facts.schedule_to_close_timeout is not None:
        deadline = facts.scheduled_time + facts.schedule_to_close_timeout
        if facts.now + _next_delay(err, policy, facts.attempt) >= deadline:
            return False
    return True


def workflow_outcome(
    err: BaseException, *, cancel_requested: bool, fails_workflow: bool
) -> EventType | None:
    """The event a workflow run's exception stands for, or None when the run goes on.

    Args:
        err: What the workflow raised.
        cancel_requested: Whether the workflow was asked to cancel.
        fails_workflow: Whether Temporal treats ``err`` as a workflow failure; other
            exceptions fail only the workflow task, which Temporal retries.
    """
    if cancel_requested and is_cancelled_exception(err):
        return EventType.WORKFLOW_CANCELLED
    if fails_workflow:
        return EventType.WORKFLOW_FAILED
    return None


def failure_summary(err: BaseException) -> tuple[str, str]:
    """Return the ``(code, message)`` of the error behind ``err``.

    A workflow that fails because an activity or child failed raises a wrapper
    ("Activity task failed"); the code and message worth reporting are its cause's.
    """
    root = err
    while isinstance(root, (ActivityError, ChildWorkflowError)) and root.cause is not None:
        root = root.cause
    message = root.message if isinstance(root, FailureError) else str(root)
    code = timeout_code(root) if isinstance(root, TimeoutError) else error_code(root)
    return code, message or str(err)


_TIMEOUT_CODES = {
    TimeoutType.START_TO_CLOSE: "StartToCloseTimeout",
    TimeoutType.SCHEDULE_TO_START: "ScheduleToStartTimeout",
    TimeoutType.SCHEDULE_TO_CLOSE: "ScheduleToCloseTimeout",
    TimeoutType.HEARTBEAT: "HeartbeatTimeout",
}


def timeout_code(err: TimeoutError) -> str:
    """The error code naming which timeout ``err`` is."""
    return _TIMEOUT_CODES.get(err.type, "Timeout") if err.type is not None else "Timeout"


@dataclass(frozen=True)
class TaskResult:
    """How a task (activity or child workflow) ended, as its workflow saw it.

    Attributes:
        event_type: ``task_completed``, ``task_failed`` or ``task_cancelled``.
        error_code: The failure's code, if it failed.
        message: The failure's message, if it failed.
        final_attempt: The attempt number when Temporal's answer implies it, else 0.
    """

    event_type: EventType
    error_code: str | None = None
    message: str | None = None
    final_attempt: int = 0


def task_result(err: BaseException | None, retry_policy: RetryPolicy | None) -> TaskResult:
    """The outcome a workflow sees when a task's handle resolves with ``err`` (None: success).

    Args:
        err: What awaiting the handle raised, or None.
        retry_policy: The task's retry policy, to name the last attempt when Temporal says
            the attempts ran out.
    """
    if err is None:
        return TaskResult(EventType.TASK_COMPLETED)
    cause = err.cause if isinstance(err, (ActivityError, ChildWorkflowError)) else err
    if isinstance(cause, (CancelledError, asyncio.CancelledError)):
        return TaskResult(EventType.TASK_CANCELLED)
    final = 0
    if (
        isinstance(err, ActivityError)
        and err.retry_state == RetryState.MAXIMUM_ATTEMPTS_REACHED
        and retry_policy is not None
    ):
        final = retry_policy.maximum_attempts
    if isinstance(cause, TimeoutError):
        code = timeout_code(cause)
        return TaskResult(EventType.TASK_FAILED, code, f"{cause.message} ({code})", final)
    code, message = failure_summary(err)
    return TaskResult(EventType.TASK_FAILED, code, message, final)


def _next_delay(err: BaseException, policy: RetryPolicy, attempt: int) -> timedelta:
    if isinstance(err, ApplicationError) and err.next_retry_delay is not None:
        return err.next_retry_delay
    maximum = policy.maximum_interval or policy.initial_interval * _DEFAULT_MAX_INTERVAL_FACTOR
    delay = policy.initial_interval * (policy.backoff_coefficient ** max(0, attempt - 1))
    return min(delay, maximum)
