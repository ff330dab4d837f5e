"""The root interceptor: temporalio's tracing plus Stigmer workflow and task reporting."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import opentelemetry.context
import opentelemetry.trace
import temporalio.api.common.v1
import temporalio.worker
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue
from temporalio.contrib.opentelemetry import TracingInterceptor

from otel_stigmer import conventions as conv
from otel_stigmer.contrib.temporal._activity import StigmerActivityInboundInterceptor
from otel_stigmer.contrib.temporal._identity import (
    ExecutionIdContext,
    ExecutionIdResolver,
    Identity,
    from_workflow_id,
    resolve_identity,
)
from otel_stigmer.contrib.temporal._once import OnceFilter
from otel_stigmer.contrib.temporal._outcome import failure_summary
from otel_stigmer.contrib.temporal._workflow import (
    MARKER_EXTERN,
    RESOLVE_EXTERN,
    MarkerParams,
    StigmerWorkflowInboundInterceptor,
)

__all__ = ["StigmerInterceptor"]

_log = logging.getLogger(__name__)
_SCOPE = "otel_stigmer.contrib.temporal"


class StigmerInterceptor(TracingInterceptor):
    """Reports each Temporal workflow run as a Stigmer workflow and each activity as a task.

    A drop-in replacement for temporalio's ``TracingInterceptor`` (it keeps all of its
    spans and its context propagation). Register it once, on the client
    (``Client.connect(..., interceptors=[StigmerInterceptor()])``); workers built from
    that client inherit it. Workers whose client lacks it may take it in
    ``Worker(..., interceptors=[...])`` instead, but never both.

    Workflow code cannot hold a span open across replays, so the workflow's start and
    outcome become *marker spans* (``stigmer.event.type``), emitted host-side with the
    wall-clock time and never on replay. Each activity attempt runs in a
    ``RunActivity:<type>`` task span carrying the attempt number; a failed attempt that
    Temporal will retry is marked ``retrying`` and reported as ``task_retry``.

    Args:
        tracer: Tracer for all spans; defaults to one tracer for temporalio's spans and
            one named ``otel_stigmer.contrib.temporal`` for the Stigmer ones.
        execution_id: Finds a run's Stigmer execution id; defaults to the workflow id.
            See :func:`from_memo` and :func:`from_search_attribute`.
        always_create_workflow_spans: Passed to ``TracingInterceptor``; Stigmer events
            are reported either way, also for workflows started by the CLI or a schedule.
    """

    def __init__(
        self,
        tracer: opentelemetry.trace.Tracer | None = None,
        *,
        execution_id: ExecutionIdResolver | None = None,
        always_create_workflow_spans: bool = False,
    ) -> None:
        super().__init__(tracer, always_create_workflow_spans=always_create_workflow_spans)
        self.stigmer_tracer = tracer or opentelemetry.trace.get_tracer(_SCOPE)
        self._resolver = execution_id or from_workflow_id()
        self._reported = OnceFilter()

    def intercept_activity(
        self, next: temporalio.worker.ActivityInboundInterceptor
    ) -> temporalio.worker.ActivityInboundInterceptor:
        """Run each activity attempt in a Stigmer task span."""
        return StigmerActivityInboundInterceptor(next, self)

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[StigmerWorkflowInboundInterceptor]:
        """Register the host-side functions the workflow interceptor calls."""
        super().workflow_interceptor_class(input)
        input.unsafe_extern_functions.update(
            {RESOLVE_EXTERN: self.resolve_identity, MARKER_EXTERN: self._emit_marker}
        )
        return StigmerWorkflowInboundInterceptor

    def resolve_identity(self, context: ExecutionIdContext) -> Identity:
        """Apply the configured execution id resolver (never raises)."""
        return resolve_identity(self._resolver, context)

    def identity_from_header(
        self, payload: temporalio.api.common.v1.Payload | None
    ) -> Identity | None:
        """Decode the identity a workflow put on its activities, if any."""
        if payload is None:
            return None
        try:
            value = self.payload_converter.from_payloads([payload])[0]
            execution_id, workflow_name = value["execution_id"], value["workflow_name"]
        except Exception:
            _log.warning("ignoring a malformed Stigmer identity header", exc_info=True)
            return None
        if not isinstance(execution_id, str) or not isinstance(workflow_name, str):
            return None
        return Identity(execution_id=execution_id, workflow_name=workflow_name)

    def context_from_headers(
        self, headers: Mapping[str, temporalio.api.common.v1.Payload]
    ) -> opentelemetry.context.Context | None:
        """The trace context and baggage a caller put in the tracing header, if any."""
        payload = headers.get(self.header_key)
        if not payload:
            return None
        try:
            carrier = self.payload_converter.from_payloads([payload])[0]
        except Exception:
            return None
        if not carrier:
            return None
        return self.text_map_propagator.extract(carrier, context=opentelemetry.context.Context())

    def _emit_marker(self, params: MarkerParams) -> None:
        if not self._reported.first((params.run_id, params.event_type)):
            return
        try:
            self._start_marker(params)
        except Exception:
            _log.warning("could not report %s", params.event_type, exc_info=True)

    def _start_marker(self, params: MarkerParams) -> None:
        # Real time, not workflow-task time: all markers of one task would share the latter,
        # and the pipeline orders events across processes by their timestamps.
        now = time.time_ns()
        parent = opentelemetry.context.Context()
        if params.parent_carrier:
            parent = self.text_map_propagator.extract(dict(params.parent_carrier), context=parent)
        identity = params.identity
        meta = conv.METADATA_PREFIX + "temporal."
        attributes: dict[str, AttributeValue] = {
            conv.EVENT_TYPE: params.event_type,
            conv.WORKFLOW_EXECUTION_ID: identity.execution_id,
            conv.WORKFLOW_NAME: identity.workflow_name,
            "temporalWorkflowID": params.workflow_id,
            "temporalRunID": params.run_id,
            meta + "workflow_id": params.workflow_id,
            meta + "run_id": params.run_id,
            meta + "task_queue": params.task_queue,
        }
        exception_attributes: dict[str, Any] | None = None
        if params.error is not None:
            code, message = failure_summary(params.error)
            attributes[conv.ERROR_CODE] = code
            attributes[conv.MESSAGE] = message
            exception_attributes = {"exception.message": message}
        span = self.stigmer_tracer.start_span(
            f"{params.event_type}:{identity.workflow_name}",
            parent,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            start_time=now,
        )
        if params.error is not None:
            span.record_exception(params.error, attributes=exception_attributes, timestamp=now)
            if params.event_type != "workflow_cancelled":
                span.set_status(Status(StatusCode.ERROR, str(attributes[conv.MESSAGE])))
        span.end(end_time=now)
