"""What a run that closed without its workflow code reports (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from otel_stigmer.events import EventType

__all__ = ["RESET_IDENTITY", "CloseReport", "terminated_report", "timed_out_report"]

#: The identity Temporal's server records when a reset terminates the current run.
RESET_IDENTITY = "history-resetter"


@dataclass(frozen=True)
class CloseReport:
    """The Stigmer outcome of a closed run.

    Attributes:
        event_type: ``workflow_cancelled`` or ``workflow_failed``.
        message: What happened, with Temporal's reason.
        error_code: For a failure, the code naming why.
        close_status: ``terminated`` or ``timed_out`` (metadata).
    """

    event_type: EventType
    message: str
    error_code: str | None
    close_status: str


def terminated_report(reason: str, identity: str) -> CloseReport | None:
    """A terminated run is cancelled; None for a reset (the execution goes on)."""
    if identity == RESET_IDENTITY:
        return None
    text = f"terminated: {reason}" if reason else "terminated"
    return CloseReport(EventType.WORKFLOW_CANCELLED, text, None, "terminated")


def timed_out_report(
    *,
    started: datetime,
    closed: datetime,
    run_timeout: timedelta | None,
    execution_timeout: timedelta | None,
) -> CloseReport:
    """A timed-out run failed; the code says which of its timeouts fired."""
    # With both set (and the run's shorter), the run timeout fired if the run lasted that long.
    run_fired = run_timeout is not None and (
        not execution_timeout
        or (run_timeout < execution_timeout and closed - started >= run_timeout * 0.99)
    )
    code = "WorkflowRunTimeout" if run_fired else "WorkflowExecutionTimeout"
    limit = run_timeout if code == "WorkflowRunTimeout" else execution_timeout
    after = f" after {limit.total_seconds():g} s" if limit else ""
    return CloseReport(EventType.WORKFLOW_FAILED, f"timed out ({code}){after}", code, "timed_out")
