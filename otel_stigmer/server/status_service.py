"""The ``WorkflowExecutionCommandController`` servicer: ``updateStatus`` with upstream merging."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import NoReturn

import grpc

from otel_stigmer._proto.ai.stigmer.agentic.workflowexecution.v1 import command_pb2_grpc
from otel_stigmer._proto.ai.stigmer.commons.apiresource.metadata_pb2 import ApiResourceMetadata
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.faults import FaultInjector
from otel_stigmer.server.status_store import StatusStore
from otel_stigmer.server.store import StoreClosedError
from otel_stigmer.status.wire import WorkflowExecution, WorkflowExecutionUpdateStatusInput

__all__ = ["UPDATE_STATUS", "StatusService"]

_log = logging.getLogger(__name__)

#: Method name of the call, as counted in ``FaultInjector.calls``.
UPDATE_STATUS = "updateStatus"
_API_VERSION = "agentic.stigmer.ai/v1"
_KIND = "WorkflowExecution"


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, details)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


class StatusService(command_pb2_grpc.WorkflowExecutionCommandControllerServicer):
    """Merges status updates into the stored executions, like the open-source Stigmer server.

    One difference: an execution the receiver has never seen is created by its first
    update (the open-source server answers NOT_FOUND; here nothing else creates them).

    Args:
        store: Where merged statuses go.
        auth: The bearer-key check applied first on every call.
        faults: Injected failures and latency, applied after authentication.
        calls: Counts every call received per execution id, failed ones included.
    """

    def __init__(
        self,
        store: StatusStore,
        auth: BearerKeyAuth,
        faults: FaultInjector,
        calls: Counter[str] | None = None,
    ) -> None:
        self._store = store
        self._auth = auth
        self._faults = faults
        self._calls = calls if calls is not None else Counter()
        self._calls_lock = threading.Lock()

    def updateStatus(  # noqa: N802 - the upstream RPC name
        self, request: WorkflowExecutionUpdateStatusInput, context: grpc.ServicerContext
    ) -> WorkflowExecution:
        """Merge ``request.status`` into the execution; answer the execution after the merge."""
        self._faults.record_call(UPDATE_STATUS)
        with self._calls_lock:
            self._calls[request.execution_id] += 1
        reason = self._auth.check(context.invocation_metadata())
        if reason is not None:
            _log.info("rejected %s from %s: %s", UPDATE_STATUS, context.peer(), reason)
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, reason)
        fault = self._faults.next_fault()
        if fault is not None:
            if fault.trailers:
                context.set_trailing_metadata(fault.trailers)
            _abort(context, fault.code, fault.details)
        if not request.execution_id:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "execution_id is required")
        if not request.HasField("status"):
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "status is required")
        try:
            merged = self._store.update(request.execution_id, request.status)
        except StoreClosedError:
            _abort(context, grpc.StatusCode.UNAVAILABLE, "receiver is shutting down; retry later")
        return WorkflowExecution(
            api_version=_API_VERSION,
            kind=_KIND,
            metadata=ApiResourceMetadata(id=request.execution_id),
            status=merged,
        )
