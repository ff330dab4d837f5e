"""Host-side reporting: one zero-length marker span per Stigmer event, once per process."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import opentelemetry.context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from otel_stigmer import conventions as conv
from otel_stigmer.contrib.temporal._attempts import ATTEMPTS
from otel_stigmer.contrib.temporal._identity import Identity
from otel_stigmer.contrib.temporal._once import OnceFilter
from otel_stigmer.contrib.temporal._outcome import failure_summary

__all__ = ["REPORTED", "MarkerParams", "attempt_unknown", "emit_marker"]

#: Event ids this process already reported (each fact may be seen by several components).
REPORTED = OnceFilter()

_META = conv.METADATA_PREFIX + "temporal."


@dataclass(frozen=True)
class MarkerParams:
    """One Stigmer event, handed to the host (from workflow code, an activity or a watcher).

    Attributes:
        event_type: The Stigmer event type.
        event_id: Its deterministic id (see :mod:`._ids`).
        identity: The execution it belongs to.
        workflow_id: The Temporal workflow id.
        run_id: The Temporal run id.
        task_queue: The task queue, if known.
        parent_carrier: Trace context to parent the marker span on, if any.
        error: The exception behind a failure, if any.
        error_code: The error code, instead of the one derived from ``error``.
        message: The message, instead of the one derived from ``error``.
        task_name: The task name, for task events.
        instance_id: The task instance id, for task events.
        attempt: The attempt number; 0 = look it up in this process's attempt book.
        attempt_hint: The attempt number to use when it is 0 and not in the book.
        metadata: Extra ``temporal.*`` metadata.
        time_ns: When it happened; now when omitted.
    """

    event_type: str
    event_id: str
    identity: Identity
    workflow_id: str
    run_id: str
    task_queue: str = ""
    parent_carrier: Mapping[str, str] | None = None
    error: BaseException | None = None
    error_code: str | None = None
    message: str | None = None
    task_name: str = ""
    instance_id: str = ""
    attempt: int = 0
    attempt_hint: int = 0
    metadata: Mapping[str, str] = field(default_factory=dict)
    time_ns: int | None = None


def emit_marker(
    tracer: Tracer,
    params: MarkerParams,
    *,
    propagator: TextMapPropagator | None = None,
    parent: opentelemetry.context.Context | None = None,
) -> bool:
    """Report ``params`` as a marker span unless this process already reported its id.

    Returns:
        Whether a span was emitted.
    """
    if not REPORTED.first(params.event_id):
        return False
    # Real time, not workflow-task time: all markers of one task would share the latter,
    # and the pipeline orders events across processes by their timestamps.
    now = params.time_ns or time.time_ns()
    context = parent
    if context is None:
        context = opentelemetry.context.Context()
        if params.parent_carrier and propagator is not None:
            context = propagator.extract(dict(params.parent_carrier), context=context)
    identity = params.identity
    attributes = _attributes(params)
    failed = params.error is not None or params.error_code is not None
    exception_attributes = _error_attributes(params, attributes) if failed else None
    if not failed and params.message:
        attributes[conv.MESSAGE] = params.message
    span = tracer.start_span(
        f"{params.event_type}:{params.task_name or identity.workflow_name}",
        context,
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        start_time=now,
    )
    if exception_attributes is not None:
        if params.error is not None:
            span.record_exception(params.error, attributes=exception_attributes, timestamp=now)
        else:
            span.add_event("exception", exception_attributes, timestamp=now)
        if not params.event_type.endswith("_cancelled"):
            span.set_status(Status(StatusCode.ERROR, str(attributes[conv.MESSAGE])))
    span.end(end_time=now)
    return True


def _attributes(params: MarkerParams) -> dict[str, AttributeValue]:
    identity = params.identity
    attributes: dict[str, AttributeValue] = {
        conv.EVENT_TYPE: params.event_type,
        conv.EVENT_ID: params.event_id,
        conv.WORKFLOW_EXECUTION_ID: identity.execution_id,
        conv.WORKFLOW_NAME: identity.workflow_name,
        "temporalWorkflowID": params.workflow_id,
        "temporalRunID": params.run_id,
        _META + "workflow_id": params.workflow_id,
        _META + "run_id": params.run_id,
    }
    if params.task_queue:
        attributes[_META + "task_queue"] = params.task_queue
    if identity.parent_workflow_id:
        attributes[_META + "parent_workflow_id"] = identity.parent_workflow_id
        attributes[_META + "parent_run_id"] = identity.parent_run_id
    for key, value in params.metadata.items():
        attributes[_META + key] = value
    if params.task_name:
        attributes[conv.TASK_NAME] = params.task_name
        attributes[conv.TASK_INSTANCE_ID] = params.instance_id
        attempt = params.attempt or _known_attempt(params.instance_id) or params.attempt_hint
        if attempt:
            attributes[conv.TASK_ATTEMPT] = attempt
    return attributes


def _error_attributes(
    params: MarkerParams, attributes: dict[str, AttributeValue]
) -> dict[str, Any]:
    code, message = failure_summary(params.error) if params.error is not None else ("", "")
    code = params.error_code or code
    message = params.message or message or code
    attributes[conv.ERROR_CODE] = code
    attributes[conv.MESSAGE] = message
    return {"exception.message": message, "exception.type": code}


def attempt_unknown(params: MarkerParams) -> bool:
    """Whether a task event's attempt number is known neither to its sender nor here.

    That is the case in a workflow worker for an activity another process ran: that process
    reports the same event (same id) with its attempt number.
    """
    return bool(params.task_name) and not (params.attempt or _known_attempt(params.instance_id))


def _known_attempt(instance_id: str) -> int:
    state = ATTEMPTS.get(instance_id) if instance_id else None
    return state.attempt if state is not None else 0
