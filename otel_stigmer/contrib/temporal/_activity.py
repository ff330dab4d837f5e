"""Activity-side interceptor: one Stigmer task span per activity attempt."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import opentelemetry.context
import temporalio.activity
import temporalio.exceptions
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput

from otel_stigmer import conventions as conv
from otel_stigmer.contrib.temporal._identity import ExecutionIdContext, Identity
from otel_stigmer.contrib.temporal._outcome import AttemptFacts, activity_outcome, error_code
from otel_stigmer.contrib.temporal._workflow import IDENTITY_HEADER

if TYPE_CHECKING:
    from otel_stigmer.contrib.temporal._interceptor import StigmerInterceptor

__all__ = ["StigmerActivityInboundInterceptor", "task_attributes"]

_log = logging.getLogger(__name__)


class StigmerActivityInboundInterceptor(ActivityInboundInterceptor):
    """Runs each attempt in a ``RunActivity:<type>`` span that is a Stigmer task span.

    The Stigmer attributes are passed when the span starts, so the live ``task_started``
    event already carries them; on failure the span says whether Temporal will retry.
    """

    def __init__(self, next: ActivityInboundInterceptor, root: StigmerInterceptor) -> None:
        """Initialize with the root interceptor that holds the tracer and the resolver."""
        super().__init__(next)
        self._root = root

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        """Run the attempt inside its task span."""
        try:
            info = temporalio.activity.info()
            parent = self._root.context_from_headers(input.headers)
            attributes = self._attributes(info, input.headers)
        except Exception:
            # Progress reporting must never keep an activity from running.
            _log.warning("running an activity without progress reporting", exc_info=True)
            return await super().execute_activity(input)
        token = opentelemetry.context.attach(parent) if parent is not None else None
        try:
            with self._root.stigmer_tracer.start_as_current_span(
                f"RunActivity:{info.activity_type}",
                kind=SpanKind.SERVER,
                attributes=attributes,
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    return await super().execute_activity(input)
                except BaseException as err:
                    _record_failure(span, err, info)
                    raise
        finally:
            if token is not None:
                opentelemetry.context.detach(token)

    def _attributes(
        self, info: temporalio.activity.Info, headers: Mapping[str, Any]
    ) -> dict[str, AttributeValue]:
        identity = self._root.identity_from_header(headers.get(IDENTITY_HEADER))
        if identity is None and info.workflow_id:
            identity = self._root.resolve_identity(
                ExecutionIdContext(
                    workflow_id=info.workflow_id,
                    run_id=info.workflow_run_id or "",
                    workflow_type=info.workflow_type or "",
                )
            )
        return task_attributes(info, identity)


def task_attributes(
    info: temporalio.activity.Info, identity: Identity | None
) -> dict[str, AttributeValue]:
    """The span attributes of an activity attempt; Stigmer ones only with an identity."""
    attributes: dict[str, AttributeValue] = {"temporalActivityID": info.activity_id}
    if info.workflow_id:
        attributes["temporalWorkflowID"] = info.workflow_id
    if info.workflow_run_id:
        attributes["temporalRunID"] = info.workflow_run_id
    if identity is None:
        # A standalone activity belongs to no workflow execution.
        return attributes
    meta = conv.METADATA_PREFIX + "temporal."
    attributes.update(
        {
            conv.WORKFLOW_EXECUTION_ID: identity.execution_id,
            conv.WORKFLOW_NAME: identity.workflow_name,
            conv.TASK_NAME: info.activity_type,
            conv.TASK_ATTEMPT: info.attempt,
            meta + "activity_id": info.activity_id,
            meta + "task_queue": info.task_queue,
        }
    )
    if info.workflow_id:
        attributes[meta + "workflow_id"] = info.workflow_id
    if info.workflow_run_id:
        attributes[meta + "run_id"] = info.workflow_run_id
    return attributes


def _record_failure(span: Span, err: BaseException, info: temporalio.activity.Info) -> None:
    try:
        details = _cancellation_details() if _is_cancellation(err) else None
        # Timeouts and worker shutdown also arrive as cancellation, but Temporal retries them.
        retried_cancel = details is not None and (details.timed_out or details.worker_shutdown)
        facts = AttemptFacts(
            attempt=info.attempt,
            retry_policy=getattr(info, "retry_policy", None),
            scheduled_time=info.scheduled_time,
            schedule_to_close_timeout=info.schedule_to_close_timeout,
            now=datetime.now(timezone.utc),
        )
        outcome = activity_outcome(err, facts, cancel_requested=not retried_cancel)
        if outcome == conv.CANCELLED:
            span.set_attribute(conv.STATUS, conv.CANCELLED)
            span.record_exception(err)
            return
        if details is not None and retried_cancel:
            code = "ActivityTimeout" if details.timed_out else "WorkerShutdown"
        else:
            code = error_code(err)
        span.set_attribute(conv.ERROR_CODE, code)
        if outcome == conv.RETRYING:
            span.set_attribute(conv.STATUS, conv.RETRYING)
        # A cancellation-typed exception event would read as a cancelled task.
        span.record_exception(err, attributes={"exception.type": code} if retried_cancel else None)
        span.set_status(Status(StatusCode.ERROR, f"{type(err).__name__}: {err}"))
    except Exception:
        # Progress reporting must never change how an activity ends.
        _log.debug("could not record the activity failure", exc_info=True)


def _is_cancellation(err: BaseException) -> bool:
    return isinstance(err, (asyncio.CancelledError, temporalio.exceptions.CancelledError))


def _cancellation_details() -> temporalio.activity.ActivityCancellationDetails | None:
    # Absent from older SDKs, which cannot tell a timeout from a cancel request.
    details = getattr(temporalio.activity, "cancellation_details", None)
    return details() if details is not None else None
