"""Activity-side interceptor: each attempt's start and, when it can tell, its outcome.

The activity worker sees an attempt start and end, but Temporal decides what the end
means: a completion after a timeout is refused, a timed-out attempt may never end, an
asynchronous completion happens elsewhere. So this side reports ``task_started``, the
``task_retry`` of attempts Temporal retries, and a terminal outcome only where its view
agrees with Temporal's; the workflow side (see :mod:`._workflow`) reports every terminal
outcome as Temporal recorded it, under the same event id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import opentelemetry.baggage
import opentelemetry.context
import temporalio.activity
import temporalio.exceptions
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
)

from otel_stigmer import conventions as conv
from otel_stigmer.contrib.temporal import _ids
from otel_stigmer.contrib.temporal._attempts import ATTEMPTS, AttemptState
from otel_stigmer.contrib.temporal._identity import ExecutionIdContext, Identity
from otel_stigmer.contrib.temporal._outcome import AttemptFacts, error_code, will_retry
from otel_stigmer.contrib.temporal._report import REPORTED, MarkerParams
from otel_stigmer.contrib.temporal._workflow import IDENTITY_HEADER
from otel_stigmer.events import EventType

if TYPE_CHECKING:
    from otel_stigmer.contrib.temporal._interceptor import StigmerInterceptor

__all__ = ["StigmerActivityInboundInterceptor", "temporal_attributes"]

_log = logging.getLogger(__name__)


class StigmerActivityInboundInterceptor(ActivityInboundInterceptor):
    """Runs each attempt in a ``RunActivity:<type>`` span and reports it to Stigmer."""

    def __init__(self, next: ActivityInboundInterceptor, root: StigmerInterceptor) -> None:
        """Initialize with the root interceptor that holds the tracer and the resolver."""
        super().__init__(next)
        self._root = root
        self._attempt: _Attempt | None = None

    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        """Wrap the outbound chain to see heartbeats (they keep an attempt alive)."""
        super().init(_HeartbeatWatch(outbound, self))

    def heartbeat_seen(self) -> None:
        """Note a heartbeat of the running attempt."""
        if self._attempt is not None:
            self._attempt.state.last_beat = datetime.now(timezone.utc)

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        """Run the attempt inside its span, reporting its start and outcome."""
        try:
            info = temporalio.activity.info()
            parent = self._root.context_from_headers(input.headers)
            identity = self._identity(info, input.headers)
        except Exception:
            # Progress reporting must never keep an activity from running.
            _log.warning("running an activity without progress reporting", exc_info=True)
            return await super().execute_activity(input)
        context = parent or opentelemetry.context.get_current()
        if identity is not None:
            # Spans the activity opens inherit the execution through baggage.
            context = opentelemetry.baggage.set_baggage(
                conv.BAGGAGE_EXECUTION_ID, identity.execution_id, context
            )
            context = opentelemetry.baggage.set_baggage(
                conv.BAGGAGE_WORKFLOW_NAME, identity.workflow_name, context
            )
        attributes = temporal_attributes(info)
        if identity is not None:
            attributes.update(_progress_attributes(info, identity))
        token = opentelemetry.context.attach(context)
        try:
            with self._root.stigmer_tracer.start_as_current_span(
                f"RunActivity:{info.activity_type}",
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                attempt = _Attempt(self._root, info, identity) if identity is not None else None
                self._attempt = attempt
                if attempt is not None:
                    attempt.started()
                try:
                    result = await super().execute_activity(input)
                except BaseException as err:
                    if not isinstance(err, temporalio.activity._CompleteAsyncError):
                        span.record_exception(err)
                        span.set_status(Status(StatusCode.ERROR, f"{type(err).__name__}: {err}"))
                    if attempt is not None:
                        attempt.failed(err)
                    raise
                if attempt is not None:
                    attempt.succeeded()
                return result
        finally:
            opentelemetry.context.detach(token)

    def _identity(
        self, info: temporalio.activity.Info, headers: Mapping[str, Any]
    ) -> Identity | None:
        identity = self._root.identity_from_header(headers.get(IDENTITY_HEADER))
        if identity is None and info.workflow_id:
            identity = self._root.resolve_identity(
                ExecutionIdContext(
                    workflow_id=info.workflow_id,
                    run_id=info.workflow_run_id or "",
                    workflow_type=info.workflow_type or "",
                )
            )
        return identity


class _HeartbeatWatch(ActivityOutboundInterceptor):
    def __init__(
        self, next: ActivityOutboundInterceptor, inbound: StigmerActivityInboundInterceptor
    ) -> None:
        super().__init__(next)
        self._inbound = inbound

    def heartbeat(self, *details: Any) -> None:
        self._inbound.heartbeat_seen()
        super().heartbeat(*details)


def temporal_attributes(info: temporalio.activity.Info) -> dict[str, AttributeValue]:
    """temporalio's attributes of a ``RunActivity`` span."""
    attributes: dict[str, AttributeValue] = {"temporalActivityID": info.activity_id}
    if info.workflow_id:
        attributes["temporalWorkflowID"] = info.workflow_id
    if info.workflow_run_id:
        attributes["temporalRunID"] = info.workflow_run_id
    return attributes


def _progress_attributes(
    info: temporalio.activity.Info, identity: Identity
) -> dict[str, AttributeValue]:
    """Task identity on the attempt's span, so progress span events the activity adds to it
    (``trace.get_current_span().add_event("progress", ...)``) are reported live; its start
    and outcome are reported by markers, so the span reports its span events only."""
    return {
        conv.WORKFLOW_EXECUTION_ID: identity.execution_id,
        conv.WORKFLOW_NAME: identity.workflow_name,
        conv.TASK_NAME: info.activity_type,
        conv.TASK_INSTANCE_ID: _ids.task_instance_id(info.workflow_run_id or "", info.activity_id),
        conv.TASK_ATTEMPT: info.attempt,
        conv.EVENTS_ONLY: True,
    }


class _Attempt:
    """One attempt of an activity of a workflow run, and what to report about it."""

    def __init__(
        self, root: StigmerInterceptor, info: temporalio.activity.Info, identity: Identity
    ) -> None:
        self._root = root
        self._info = info
        self._identity = identity
        self.instance_id = _ids.task_instance_id(info.workflow_run_id or "", info.activity_id)
        now = datetime.now(timezone.utc)
        self.state = AttemptState(
            attempt=info.attempt,
            started=now,
            start_to_close=info.start_to_close_timeout,
            heartbeat_timeout=info.heartbeat_timeout,
            last_beat=now,
        )

    def started(self) -> None:
        previous = ATTEMPTS.start(self.instance_id, self.state)
        if previous is not None:
            # Temporal retried an attempt this process still runs (or that a client was to
            # complete): it timed out or failed there, so report its retry now.
            code = previous.timed_out_by(datetime.now(timezone.utc))
            if code is None:
                code = "AsyncActivityFailed" if previous.asynchronous else "ActivityTimeout"
            self._report(
                EventType.TASK_RETRY,
                _ids.task_retry_id(self.instance_id, previous.attempt),
                attempt=previous.attempt,
                error_code=code,
                message=f"attempt {previous.attempt} ended on {code}; Temporal retried it",
            )
        self._report(
            EventType.TASK_STARTED,
            _ids.task_started_id(self.instance_id, self.state.attempt),
            time_ns=_ns(self.state.started),
        )

    def succeeded(self) -> None:
        if not self._close() or self._run_closed():
            return
        timeout = self._timed_out()
        if timeout is not None:
            # Temporal already timed this attempt out and refuses its completion.
            self._timed_out_attempt(timeout)
            return
        self._report(EventType.TASK_COMPLETED, _ids.task_outcome_id(self.instance_id))

    def failed(self, err: BaseException) -> None:
        if isinstance(err, temporalio.activity._CompleteAsyncError):
            # A client completes it later; the workflow side reports how it ended.
            self.state.asynchronous = True
            return
        if not self._close() or self._run_closed():
            return
        details = _cancellation_details() if _is_cancellation(err) else None
        timeout = self._timed_out()
        if timeout is None and details is not None and details.timed_out:
            timeout = "ActivityTimeout"
        if timeout is not None:
            self._timed_out_attempt(timeout)
        elif details is not None and not details.cancel_requested:
            self._cancelled_by_worker(details)
        elif _is_cancellation(err):
            self._report(EventType.TASK_CANCELLED, _ids.task_outcome_id(self.instance_id))
        elif will_retry(err, self._facts()):
            self._report_retry(error_code(err), None, err)
        else:
            self._report(EventType.TASK_FAILED, _ids.task_outcome_id(self.instance_id), error=err)

    def _cancelled_by_worker(
        self, details: temporalio.activity.ActivityCancellationDetails
    ) -> None:
        # Cancelled for another reason than a request from the workflow or a client.
        if details.worker_shutdown:
            self._worker_shutdown()
        elif details.not_found:
            # Not timed out, yet unknown to Temporal: its workflow run has closed.
            self._report(
                EventType.TASK_CANCELLED,
                _ids.task_outcome_id(self.instance_id),
                message="the workflow run closed during the attempt",
            )
        else:
            code = "ActivityPaused" if details.paused else "ActivityReset"
            self._report_retry(code, f"attempt {self.state.attempt} ended: {code}")

    def _run_closed(self) -> bool:
        # The run's outcome was reported here: Temporal ignores what the attempt does now,
        # and the workflow side reported how the task ended (or the run ended without it).
        run_id = self._info.workflow_run_id or ""
        if not REPORTED.seen(_ids.workflow_outcome_id(run_id)):
            return False
        self._report(
            EventType.TASK_CANCELLED,
            _ids.task_outcome_id(self.instance_id),
            message="the workflow run closed during the attempt",
        )
        return True

    def _close(self) -> bool:
        # False when a later attempt already reported this one's retry.
        was_open = self.state.open
        self.state.open = False
        return was_open

    def _timed_out(self) -> str | None:
        return self.state.timed_out_by(datetime.now(timezone.utc))

    def _timed_out_attempt(self, code: str) -> None:
        message = f"attempt {self.state.attempt} timed out ({code})"
        if will_retry(TimeoutError(code), self._facts()):
            self._report_retry(code, message)
        else:
            self._report(
                EventType.TASK_FAILED,
                _ids.task_outcome_id(self.instance_id),
                error_code=code,
                message=message,
            )

    def _worker_shutdown(self) -> None:
        if REPORTED.seen(_ids.task_outcome_id(self.instance_id)):
            # The workflow (run by this process) already settled the task, e.g. cancelled
            # it; Temporal ignores what this attempt does now.
            return
        self._report_retry("WorkerShutdown", "the worker shut down during the attempt")

    def _report_retry(
        self, code: str, message: str | None, err: BaseException | None = None
    ) -> None:
        self._report(
            EventType.TASK_RETRY,
            _ids.task_retry_id(self.instance_id, self.state.attempt),
            error=err,
            error_code=code,
            message=message,
        )

    def _facts(self) -> AttemptFacts:
        info = self._info
        return AttemptFacts(
            attempt=info.attempt,
            retry_policy=info.retry_policy,
            scheduled_time=info.scheduled_time,
            schedule_to_close_timeout=info.schedule_to_close_timeout,
            now=datetime.now(timezone.utc),
        )

    def _report(
        self,
        event_type: EventType,
        event_id: str,
        *,
        attempt: int | None = None,
        error: BaseException | None = None,
        error_code: str | None = None,
        message: str | None = None,
        time_ns: int | None = None,
    ) -> None:
        info = self._info
        try:
            self._root.emit(
                MarkerParams(
                    event_type=event_type.value,
                    event_id=event_id,
                    identity=self._identity,
                    workflow_id=info.workflow_id or "",
                    run_id=info.workflow_run_id or "",
                    task_queue=info.task_queue,
                    error=error,
                    error_code=error_code,
                    message=message,
                    task_name=info.activity_type,
                    instance_id=self.instance_id,
                    attempt=attempt or self.state.attempt,
                    metadata={"activity_id": info.activity_id},
                    time_ns=time_ns,
                ),
                parent=opentelemetry.context.get_current(),
            )
        except Exception:
            # Progress reporting must never change how an activity ends.
            _log.debug("could not report %s", event_type.value, exc_info=True)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000) if moment else time.time_ns()


def _is_cancellation(err: BaseException) -> bool:
    return isinstance(err, (asyncio.CancelledError, temporalio.exceptions.CancelledError))


def _cancellation_details() -> temporalio.activity.ActivityCancellationDetails | None:
    # Absent from older SDKs, which cannot tell a timeout from a cancel request.
    details = getattr(temporalio.activity, "cancellation_details", None)
    return details() if details is not None else None
