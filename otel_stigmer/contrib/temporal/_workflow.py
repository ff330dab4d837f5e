"""Workflow-side interceptors: replay-safe Stigmer markers for each workflow run.

This code runs inside the workflow sandbox. It never touches a clock, a tracer or the
network itself: it calls extern functions that run in the host (the same mechanism
temporalio's ``TracingInterceptor`` uses), and only when the workflow is not replaying,
so a worker restart or a cache eviction never reports an event twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

import temporalio.api.common.v1
import temporalio.workflow
from temporalio.contrib.opentelemetry import TracingWorkflowInboundInterceptor
from temporalio.exceptions import FailureError
from temporalio.worker import (
    ExecuteWorkflowInput,
    StartActivityInput,
    StartChildWorkflowInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowOutboundInterceptor,
)

from otel_stigmer.contrib.temporal import _ids
from otel_stigmer.contrib.temporal._identity import ExecutionIdContext, Identity
from otel_stigmer.contrib.temporal._outcome import task_result, workflow_outcome
from otel_stigmer.contrib.temporal._report import MarkerParams
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


class StigmerWorkflowInboundInterceptor(TracingWorkflowInboundInterceptor):
    """Reports the run's start and outcome, and each task's outcome, as marker spans.

    Markers are emitted only when the workflow is not replaying, with event ids derived
    from the run and activity ids, so a re-run workflow task reports nothing new.
    """

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
        info = temporalio.workflow.info()
        if not _continues_execution(info):
            self._report(EventType.WORKFLOW_STARTED, _ids.workflow_started_id(info.run_id))
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
                self._report(outcome, _ids.workflow_outcome_id(info.run_id), error=err)
            raise
        self._report(EventType.WORKFLOW_COMPLETED, _ids.workflow_outcome_id(info.run_id))
        return result

    def identity(self) -> Identity:
        """The run's Stigmer identity, resolved once per workflow instance."""
        if self._identity is None:
            info = temporalio.workflow.info()
            try:
                identity = self._resolve(_execution_id_context(info))
            except Exception:
                identity = Identity(info.workflow_id, info.workflow_type)
            if info.parent is not None:
                identity = dataclasses.replace(
                    identity,
                    parent_workflow_id=info.parent.workflow_id,
                    parent_run_id=info.parent.run_id,
                )
            self._identity = identity
        return self._identity

    def with_identity(
        self, headers: Mapping[str, temporalio.api.common.v1.Payload]
    ) -> Mapping[str, temporalio.api.common.v1.Payload]:
        """``headers`` plus the run's identity, for an activity it schedules."""
        try:
            identity = self.identity()
            payload = self.payload_converter.to_payloads([dataclasses.asdict(identity)])[0]
        except Exception:
            # The activity then resolves the identity itself, from the workflow id.
            return headers
        return {**headers, IDENTITY_HEADER: payload}

    def report_task(
        self,
        handle: asyncio.Future[Any],
        task_name: str,
        instance_id: str,
        retry_policy: Any,
        metadata: Mapping[str, str],
        attempt: int = 0,
    ) -> None:
        """Report how a task ended once its handle resolves (the result Temporal recorded)."""
        if handle.cancelled():
            result = task_result(asyncio.CancelledError(), None)
        else:
            result = task_result(handle.exception(), retry_policy)
        self._report(
            result.event_type,
            _ids.task_outcome_id(instance_id),
            error_code=result.error_code,
            message=result.message,
            task_name=task_name,
            instance_id=instance_id,
            attempt=attempt,
            attempt_hint=result.final_attempt,
            metadata=metadata,
        )

    def _report(
        self,
        event_type: EventType,
        event_id: str,
        *,
        error: BaseException | None = None,
        error_code: str | None = None,
        message: str | None = None,
        task_name: str = "",
        instance_id: str = "",
        attempt: int = 0,
        attempt_hint: int = 0,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if temporalio.workflow.unsafe.is_replaying():
            return
        info = temporalio.workflow.info()
        try:
            extra = dict(metadata or {})
            self._marker(
                MarkerParams(
                    event_type=event_type.value,
                    event_id=event_id,
                    identity=self.identity(),
                    workflow_id=info.workflow_id,
                    run_id=info.run_id,
                    task_queue=info.task_queue,
                    parent_carrier=self._parent_carrier(info),
                    error=error,
                    error_code=error_code,
                    message=message,
                    task_name=task_name,
                    instance_id=instance_id,
                    attempt=attempt,
                    attempt_hint=attempt_hint,
                    metadata=extra,
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
        handle = super().start_activity(input)
        self._watch_activity(handle, input.activity, input.activity_id, input.retry_policy)
        return handle

    def start_local_activity(
        self,
        input: StartLocalActivityInput,
    ) -> temporalio.workflow.ActivityHandle[Any]:
        input.headers = self._root.with_identity(input.headers)
        handle = super().start_local_activity(input)
        self._watch_activity(handle, input.activity, input.activity_id, input.retry_policy)
        return handle

    async def start_child_workflow(
        self, input: StartChildWorkflowInput
    ) -> temporalio.workflow.ChildWorkflowHandle[Any, Any]:
        # The child is a task of this run: started when asked for, ended with its result.
        info = temporalio.workflow.info()
        instance_id = _ids.child_instance_id(info.run_id, input.id)
        metadata = {"child_workflow_id": input.id}
        self._root._report(
            EventType.TASK_STARTED,
            _ids.task_started_id(instance_id, 1),
            task_name=input.workflow,
            instance_id=instance_id,
            attempt=1,
            metadata=metadata,
        )
        try:
            handle = await super().start_child_workflow(input)
        except BaseException as err:
            self._root._report(
                EventType.TASK_FAILED,
                _ids.task_outcome_id(instance_id),
                error=err,
                task_name=input.workflow,
                instance_id=instance_id,
                attempt=1,
                metadata=metadata,
            )
            raise
        handle.add_done_callback(
            lambda done: self._root.report_task(
                done, input.workflow, instance_id, None, metadata, attempt=1
            )
        )
        return handle

    def _watch_activity(
        self,
        handle: temporalio.workflow.ActivityHandle[Any],
        activity_type: str,
        activity_id: str | None,
        retry_policy: Any,
    ) -> None:
        # The SDK numbers activities it names itself; the handle knows the number.
        seq = getattr(handle, "_seq", None)
        activity_id = activity_id or (str(seq) if seq is not None else None)
        if activity_id is None:
            return
        instance_id = _ids.task_instance_id(temporalio.workflow.info().run_id, activity_id)
        metadata = {"activity_id": activity_id}
        handle.add_done_callback(
            lambda done: self._root.report_task(
                done, activity_type, instance_id, retry_policy, metadata
            )
        )


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
