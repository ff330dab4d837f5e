"""Pure rules: retry prospects, outcomes, error summaries and execution id resolvers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    RetryState,
)

from otel_stigmer.contrib.temporal import (
    ExecutionIdContext,
    from_memo,
    from_search_attribute,
    from_workflow_id,
)
from otel_stigmer.contrib.temporal._identity import Identity, resolve_identity
from otel_stigmer.contrib.temporal._once import OnceFilter
from otel_stigmer.contrib.temporal._outcome import (
    AttemptFacts,
    failure_summary,
    will_retry,
    workflow_outcome,
)
from otel_stigmer.events import EventType

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def facts(
    attempt: int = 1,
    policy: RetryPolicy | None = None,
    schedule_to_close: timedelta | None = None,
) -> AttemptFacts:
    """Facts of an attempt failing at NOW, scheduled at NOW."""
    return AttemptFacts(
        attempt=attempt,
        retry_policy=policy,
        scheduled_time=NOW,
        schedule_to_close_timeout=schedule_to_close,
        now=NOW,
    )


def activity_error(cause: BaseException) -> ActivityError:
    """An ActivityError as a workflow sees it, caused by ``cause``."""
    err = ActivityError(
        "Activity task failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="step",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    err.__cause__ = cause
    return err


def test_default_policy_retries_without_limit() -> None:
    """Without a retry policy Temporal retries, so a failure will be retried."""
    assert will_retry(RuntimeError("x"), facts(attempt=50))


def test_last_allowed_attempt_is_final() -> None:
    """The attempt that reaches maximum_attempts is the last one."""
    policy = RetryPolicy(maximum_attempts=3)
    assert will_retry(RuntimeError("x"), facts(attempt=2, policy=policy))
    assert not will_retry(RuntimeError("x"), facts(attempt=3, policy=policy))


def test_non_retryable_errors_are_final() -> None:
    """A non_retryable ApplicationError or a listed error type is not retried."""
    policy = RetryPolicy(non_retryable_error_types=["ValueError", "Fatal"])
    assert not will_retry(ApplicationError("x", non_retryable=True), facts())
    assert not will_retry(ValueError("x"), facts(policy=policy))
    assert not will_retry(ApplicationError("x", type="Fatal"), facts(policy=policy))
    assert will_retry(KeyError("x"), facts(policy=policy))


def test_schedule_to_close_deadline_ends_retries() -> None:
    """No retry when the next backoff would pass the schedule-to-close deadline."""
    policy = RetryPolicy(initial_interval=timedelta(seconds=10))
    assert not will_retry(
        RuntimeError("x"), facts(policy=policy, schedule_to_close=timedelta(seconds=5))
    )
    assert will_retry(
        RuntimeError("x"), facts(policy=policy, schedule_to_close=timedelta(minutes=5))
    )


def test_workflow_outcome_follows_temporal_rules() -> None:
    """Cancelled when asked and cancelled; failed on failure errors; else the run goes on."""
    cancelled = activity_error(CancelledError("cancelled"))
    assert workflow_outcome(cancelled, cancel_requested=True, fails_workflow=True) == (
        EventType.WORKFLOW_CANCELLED
    )
    assert workflow_outcome(cancelled, cancel_requested=False, fails_workflow=True) == (
        EventType.WORKFLOW_FAILED
    )
    assert workflow_outcome(NameError("bug"), cancel_requested=False, fails_workflow=False) is None


def test_failure_summary_reports_the_cause_behind_activity_errors() -> None:
    """A workflow failing on an activity error reports the activity's error code and message."""
    cause = ApplicationError("bad input", type="InvalidInput")
    assert failure_summary(activity_error(cause)) == ("InvalidInput", "bad input")
    assert failure_summary(ApplicationError("plain")) == ("ApplicationError", "plain")
    assert failure_summary(ValueError("nope")) == ("ValueError", "nope")


CONTEXT = ExecutionIdContext(
    workflow_id="wf-1",
    run_id="run-1",
    workflow_type="Ingest",
    memo={"exec": "exec-7", "empty": ""},
    search_attributes={"StigmerExecutionId": ["exec-9"]},
)


@pytest.mark.parametrize(
    ("resolver", "expected"),
    [
        (from_workflow_id(), "wf-1"),
        (from_memo("exec"), "exec-7"),
        (from_memo("missing"), "wf-1"),
        (from_memo("empty"), "wf-1"),
        (from_search_attribute("StigmerExecutionId"), "exec-9"),
        (lambda context: f"{context.workflow_type}/{context.run_id}", "Ingest/run-1"),
    ],
)
def test_resolvers_pick_the_execution_id(resolver: object, expected: str) -> None:
    """Each resolver finds its value; a missing or empty one falls back to the workflow id."""
    assert resolve_identity(resolver, CONTEXT) == Identity(expected, "Ingest")  # type: ignore[arg-type]


def test_failing_resolver_falls_back_to_the_workflow_id(caplog: pytest.LogCaptureFixture) -> None:
    """A resolver that raises never breaks the workflow: the workflow id is used and logged."""

    def broken(context: ExecutionIdContext) -> str:
        raise KeyError("no such field")

    assert resolve_identity(broken, CONTEXT) == Identity("wf-1", "Ingest")
    assert "execution id resolver failed" in caplog.text


def test_once_filter_reports_a_key_once_and_forgets_the_oldest() -> None:
    """A key is new only the first time; beyond capacity the least recent is forgotten."""
    once = OnceFilter(capacity=2)
    assert once.first(("run-1", "workflow_started"))
    assert not once.first(("run-1", "workflow_started"))
    assert once.first(("run-2", "workflow_started"))
    assert once.first(("run-3", "workflow_started"))
    assert once.first(("run-1", "workflow_started"))
    assert not once.first(("run-3", "workflow_started"))
