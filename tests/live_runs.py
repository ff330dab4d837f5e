"""Real runs of ``@workflow`` / ``@task`` code, captured as the events a receiver stores.

Used by the live page's browser tests and its screenshots: the events come from the
library's own decorators and mapping (task instance ids included), not from hand-made
protobufs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from opentelemetry import trace

from otel_stigmer.decorators import task, workflow
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.propagation import ContextExecutor
from otel_stigmer.testing import capture_progress

__all__ = [
    "captured",
    "failing_run",
    "parallel_run",
    "repeated_calls_run",
    "retried_for_good_run",
]


class QuotaError(RuntimeError):
    """A scripted, permanent failure."""


class FlakyError(ConnectionError):
    """A scripted failure worth a retry."""


def captured(run: Callable[[], object]) -> list[WorkflowProgressEvent]:
    """Run ``run`` and return the events its workflows and tasks reported, in order."""
    with capture_progress() as events, contextlib.suppress(QuotaError, FlakyError):
        run()
    return sorted(events, key=lambda e: (e.sequence_number, e.timestamp_ms))


@task(name="fetch")
def _fetch(seconds: float) -> None:
    time.sleep(seconds)


@task(name="report-progress")
def _with_progress(seconds: float) -> None:
    time.sleep(seconds / 2)
    trace.get_current_span().add_event(
        "progress", {"stigmer.progress": 50, "stigmer.message": "half way"}
    )
    time.sleep(seconds / 2)


def repeated_calls_run(execution_id: str, seconds: float = 0.05) -> list[WorkflowProgressEvent]:
    """``fetch`` called three times in a row, then a task reporting progress."""

    @workflow(name="three-fetches", execution_id=execution_id)
    def run() -> None:
        for _ in range(3):
            _fetch(seconds)
        _with_progress(seconds)

    return captured(run)


@task(name="resize")
def _resize(seconds: float) -> None:
    time.sleep(seconds)


def parallel_run(
    execution_id: str, calls: int = 5, seconds: float = 0.2
) -> list[WorkflowProgressEvent]:
    """``resize`` called ``calls`` times in parallel threads (one instance id per call)."""

    @workflow(name="parallel-resize", execution_id=execution_id)
    def run() -> None:
        with ContextExecutor(max_workers=calls) as pool:
            list(pool.map(_resize, [seconds * (1 + n / 4) for n in range(calls)]))

    return captured(run)


_attempts: list[int] = []


@task(name="charge", retries=1, retry_on=FlakyError, retry_delay=0.01)
def _charge() -> None:
    _attempts.append(1)
    time.sleep(0.03)
    raise FlakyError(f"card service unreachable (attempt {len(_attempts)})")


@task(name="prepare")
def _prepare() -> None:
    time.sleep(0.02)


def retried_for_good_run(execution_id: str) -> list[WorkflowProgressEvent]:
    """``charge`` fails on both of its two attempts; the workflow fails with it."""

    @workflow(name="checkout", execution_id=execution_id)
    def run() -> None:
        _attempts.clear()
        _prepare()
        _charge()

    return captured(run)


@task(name="notify")
def _notify() -> None:
    time.sleep(0.02)
    raise QuotaError("daily e-mail quota reached")


def failing_run(execution_id: str, name: str = "mailer") -> list[WorkflowProgressEvent]:
    """A workflow whose only task fails for good, failing the workflow."""

    @workflow(name=name, execution_id=execution_id)
    def run() -> None:
        _prepare()
        _notify()

    return captured(run)
