"""Workflow-side interceptors: replay-safe Stigmer markers for each workflow run.

This code runs inside the workflow sandbox. It never touches a clock, a tracer or the
network itself: it calls extern functions that run in the host (the same mechanism
temporalio's ``TracingInterceptor`` uses), and only when the workflow is not replaying,
so a worker restart or a cache eviction never reports an event twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import temporalio.api.common.v1
import temporalio.workflow
from temporalio.contrib.opentelemetry import TracingWorkflowInboundInterceptor
from temporalio.exceptions import FailureError
from temporalio.worker import (
    ExecuteWorkflowInput,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowOutboundInterceptor,
)

from otel_stigmer.contrib.temporal._identity import ExecutionIdContext, Identity
from otel_stigmer.contrib.temporal._outcome import workflow_outcome
from otel_stigmer.events import EventType

__all__ = [
    "IDENTITY_HEADER",
    "MARKER_EXTERN",
    "RESOLVE_EXTERN",
    "MarkerParams",
    "StigmerWorkflowInboundInterceptor",
]

#: Temporal header that carries the run's Stigmer identity to its activities.
IDENTITY_HEADER = "_stigmer-identity"
#: Extern function names (host callables made available inside the sandbox).
RESOLVE_EXTERN = "__otel_stigmer_resolve_identity"
MARKER_EXTERN = "__otel_stigmer_marker"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarkerParams:
    """One workflow-level event, handed from the sandbox to the host."""

    event_type: str
    identity: Identity
    workflow_id: str
    run_id: str
    task_queue: str
    parent_carrier: Mapping[str, str] | None
    error: BaseException | None = None


class StigmerWorkflowInboundInterceptor(TracingWorkflowInboundInterceptor):
    """Reports ``workflow_started`` and the run's outcome as marker spans, once."""

    def __init__(self, next: WorkflowInboundInterceptor) -> None:
        """Initialize from the extern functions the root interceptor registered."""
        super().__init__(next)
        externs = temporalio.workflow.extern_functions()
        self._resolve = cast("Callable[[ExecutionIdContext], Identity]", externs[RESOLVE_EXTERN])
        self._marker = cast("Callable[[MarkerParams], None]", externs[MARKER_EXTERN])
        self._identity: Identity | None = None

    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        """Wrap the outbound chain so activities learn the run's identity."""
        super().init(_StigmerWorkflowOutboundInterceptor(outbound, self))

    async def execute_workflow(self, input: ExecuteWorkflowInput) -> Any:
        """Report the start, run the workflow, report how it ended."""
        if not _continues_execution(temporalio.workflow.info()):
            self._report(EventType.WORKFLOW_STARTED)
        try:
            result = await super().execute_workflow(input)
        except temporalio.workflow.ContinueAsNewError:
            raise
        except BaseException as err:
            outcome = workflow_outcome(
                err,
                cancel_requested=_cancel_requested(),
                fails_workflow=_fails_workflow(err),
            )
            if outcome is not None:
                self._report(outcome, err)
            raise
        self._report(EventType.WORKFLOW_COMPLETED)
        return result

    def identity(self) -> Identity:
        """The run's Stigmer identity, resolved once per workflow instance."""
        if self._identity is None:
            info = temporalio.workflow.info()
            try:
                self._identity = self._resolve(_execution_id_context(info))
            except Exception:
                self._identity = Identity(info.workflow_id, info.workflow_type)
        return self._identity

    def with_identity(
        self, headers: Mapping[str, temporalio.api.common.v1.Payload]
    ) -> Mapping[str, temporalio.api.common.v1.Payload]:
        """``headers`` plus the run's identity, for an activity it schedules."""
        try:
            identity = self.identity()
            payload = self.payload_converter.to_payloads(
                [{"execution_id": identity.execution_id, "workflow_name": identity.workflow_name}]
            )[0]
        except Exception:
            # The activity then resolves the identity itself, from the workflow id.
            return headers
        return {**headers, IDENTITY_HEADER: payload}

    def _report(self, event_type: EventType, error: BaseException | None = None) -> None:
        if temporalio.workflow.unsafe.is_replaying():
            return
        info = temporalio.workflow.info()
        try:
            self._marker(
                MarkerParams(
                    event_type=event_type.value,
                    identity=self.identity(),
                    workflow_id=info.workflow_id,
                    run_id=info.run_id,
                    task_queue=info.task_queue,
                    parent_carrier=self._parent_carrier(info),
                    error=error,
                )
            )
        except Exception:
            # Progress reporting must never fail a workflow.
            _log.debug("could not report %s", event_type.value, exc_info=True)

    def _parent_carrier(self, info: temporalio.workflow.Info) -> Mapping[str, str] | None:
        header = info.headers.get(self.header_key)
        if not header:
            return None
        carrier = self.payload_converter.from_payloads([header])[0]
        return cast("Mapping[str, str]", carrier) if isinstance(carrier, Mapping) else None


class _StigmerWorkflowOutboundInterceptor(WorkflowOutboundInterceptor):
    def __init__(
        self, next: WorkflowOutboundInterceptor, root: StigmerWorkflowInboundInterceptor
    ) -> None:
        super().__init__(next)
        self._root = root

    def start_activity(self, input: StartActivityInput) -> temporalio.workflow.ActivityHandle[Any]:
        input.headers = self._root.with_identity(input.headers)
        return super().start_activity(input)

    def start_local_activity(
        self,
        input: StartLocalActivityInput,
    ) -> temporalio.workflow.ActivityHandle[Any]:
        input.headers = self._root.with_identity(input.headers)
        return super().start_local_activity(input)


def _execution_id_context(info: temporalio.workflow.Info) -> ExecutionIdContext:
    try:
        memo: Mapping[str, Any] = dict(temporalio.workflow.memo())
    except Exception:
        memo = {}
    search_attributes = {
        pair.key.name: pair.value for pair in info.typed_search_attributes.search_attributes
    }
    return ExecutionIdContext(
        workflow_id=info.workflow_id,
        run_id=info.run_id,
        workflow_type=info.workflow_type,
        memo=memo,
        search_attributes=search_attributes,
    )


def _continues_execution(info: temporalio.workflow.Info) -> bool:
    # A run made by continue-as-new is the same Stigmer execution going on. Retry and cron
    # runs are continued runs too, but their previous run already reported its outcome.
    return info.continued_run_id is not None and info.attempt == 1 and not info.cron_schedule


def _cancel_requested() -> bool:
    reason = getattr(temporalio.workflow, "cancellation_reason", None)
    if reason is None:
        # Older SDKs cannot tell; a cancellation error then means the run was cancelled.
        return True
    return cast("Callable[[], str | None]", reason)() is not None


def _fails_workflow(err: BaseException) -> bool:
    # The SDK turns an escaping asyncio cancellation into a Temporal CancelledError.
    if isinstance(err, (asyncio.CancelledError, FailureError, asyncio.TimeoutError)):
        return True
    # Worker- and workflow-level ``workflow_failure_exception_types`` are only known to the
    # runtime; ask it, and fall back to the SDK's default rule when that is not possible.
    try:
        runtime = temporalio.workflow._Runtime.current()
        return bool(runtime.workflow_is_failure_exception(err))
    except Exception:
        return False
