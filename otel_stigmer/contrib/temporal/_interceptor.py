"""The root interceptor: temporalio's tracing plus Stigmer workflow and task reporting."""

from __future__ import annotations

import atexit
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping

import opentelemetry.context
import opentelemetry.trace
import temporalio.api.common.v1
import temporalio.worker
from temporalio.contrib.opentelemetry import TracingInterceptor

from otel_stigmer.contrib.temporal._activity import StigmerActivityInboundInterceptor
from otel_stigmer.contrib.temporal._identity import (
    ExecutionIdContext,
    ExecutionIdResolver,
    Identity,
    from_workflow_id,
    resolve_identity,
)
from otel_stigmer.contrib.temporal._once import OnceFilter
from otel_stigmer.contrib.temporal._report import MarkerParams, attempt_unknown, emit_marker
from otel_stigmer.contrib.temporal._workflow import (
    MARKER_EXTERN,
    RESOLVE_EXTERN,
    StigmerWorkflowInboundInterceptor,
)

__all__ = ["StigmerInterceptor"]

_log = logging.getLogger(__name__)

#: How long a workflow worker holds a task outcome whose attempt number only the activity's
#: own worker process knows (seconds). That process reports the same event, with its attempt,
#: as soon as the activity ends, which is before Temporal hands the result to the workflow;
#: holding ours lets that copy reach the receiver first, so the stored event has the attempt.
REMOTE_OUTCOME_GRACE = 1.0
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

    def intercept_activity(
        self, next: temporalio.worker.ActivityInboundInterceptor
    ) -> temporalio.worker.ActivityInboundInterceptor:
        """Report each activity attempt (once, however often the interceptor is registered)."""
        if _chain_reports(next):
            _warn_registered_twice()
            return next
        return StigmerActivityInboundInterceptor(next, self)

    # None (no interceptor) is allowed by temporalio's Interceptor, not by TracingInterceptor.
    def workflow_interceptor_class(  # type: ignore[override]
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[StigmerWorkflowInboundInterceptor] | None:
        """Register the host-side functions the workflow interceptor calls."""
        if RESOLVE_EXTERN in input.unsafe_extern_functions:
            # Registered on both the client and the worker: the first one reports.
            _warn_registered_twice()
            return None
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
            fields = {
                name: value.get(name, "")
                for name in ("execution_id", "workflow_name", "parent_workflow_id", "parent_run_id")
            }
        except Exception:
            _log.warning("ignoring a malformed Stigmer identity header", exc_info=True)
            return None
        if not all(isinstance(text, str) for text in fields.values()):
            return None
        if not fields["execution_id"]:
            return None
        return Identity(**fields)

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

    def emit(
        self, params: MarkerParams, *, parent: opentelemetry.context.Context | None = None
    ) -> None:
        """Report one Stigmer event as a marker span, unless this process already did."""
        try:
            emit_marker(
                self.stigmer_tracer, params, propagator=self.text_map_propagator, parent=parent
            )
        except Exception:
            _log.warning("could not report %s", params.event_type, exc_info=True)

    def _emit_marker(self, params: MarkerParams) -> None:
        if not attempt_unknown(params):
            self.emit(params)
            return
        held = dataclasses.replace(params, time_ns=params.time_ns or time.time_ns())
        _HELD.hold(lambda: self.emit(held))


class _HeldReports:
    """Reports emitted after :data:`REMOTE_OUTCOME_GRACE`, or at once at interpreter exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, threading.Timer] = {}
        self._exit_hook = False

    def hold(self, report: Callable[[], None]) -> None:
        timer: threading.Timer

        def fire() -> None:
            with self._lock:
                if self._pending.pop(id(timer), None) is None:
                    return
            report()

        timer = threading.Timer(REMOTE_OUTCOME_GRACE, fire)
        timer.daemon = True
        with self._lock:
            self._pending[id(timer)] = timer
            if not self._exit_hook:
                # Registered after configure()'s exit flush, so it runs before it.
                self._exit_hook = True
                atexit.register(self.release_all)
        timer.start()

    def release_all(self) -> None:
        """Emit every held report now (before the pipeline's own exit flush)."""
        with self._lock:
            timers = list(self._pending.values())
        for timer in timers:
            timer.cancel()
            timer.function()


_HELD = _HeldReports()


_warnings = OnceFilter()


def _chain_reports(next: temporalio.worker.ActivityInboundInterceptor) -> bool:
    link: object = next
    while isinstance(link, temporalio.worker.ActivityInboundInterceptor):
        if isinstance(link, StigmerActivityInboundInterceptor):
            return True
        link = getattr(link, "next", None)
    return False


def _warn_registered_twice() -> None:
    if not _warnings.first("registered twice"):
        return
    _log.warning(
        "StigmerInterceptor is registered twice on one worker (on its client and in "
        "Worker(interceptors=...)); reporting once. Register it on the client only."
    )
