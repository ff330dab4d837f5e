"""The ``WorkflowRunnerCommandController`` servicer: authenticate, fault, validate, store."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NoReturn

import grpc

from otel_stigmer._proto.ai.stigmer.workflow.runner.v1 import progress_pb2_grpc
from otel_stigmer.events import (
    ProgressAckResponse,
    ReportProgressBatchRequest,
    ReportProgressBatchResponse,
    WorkflowProgressEvent,
)
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.faults import FaultInjector
from otel_stigmer.server.store import EventStore, StoreClosedError

__all__ = ["ProgressService", "validate_event"]

_log = logging.getLogger(__name__)

REPORT_PROGRESS = "report_progress"
REPORT_PROGRESS_BATCH = "report_progress_batch"


def validate_event(event: WorkflowProgressEvent) -> str | None:
    """Return the name of the first missing required field, or None when the event is valid."""
    if not event.workflow_execution_id:
        return "workflow_execution_id"
    if not event.event_type:
        return "event_type"
    return None


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, details)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


class ProgressService(progress_pb2_grpc.WorkflowRunnerCommandControllerServicer):
    """Receives progress events and stores them.

    Args:
        store: Where accepted events go.
        auth: The bearer-key check applied first on every call.
        faults: Injected failures and latency, applied after authentication.
    """

    def __init__(self, store: EventStore, auth: BearerKeyAuth, faults: FaultInjector) -> None:
        self._store = store
        self._auth = auth
        self._faults = faults

    def _admit(self, method: str, context: grpc.ServicerContext) -> None:
        reason = self._auth.check(context.invocation_metadata())
        if reason is not None:
            _log.info("rejected %s from %s: %s", method, context.peer(), reason)
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, reason)
        fault = self._faults.next_fault()
        if fault is not None:
            if fault.trailers:
                context.set_trailing_metadata(fault.trailers)
            _abort(context, fault.code, fault.details)

    def _store_events(
        self, events: Sequence[WorkflowProgressEvent], context: grpc.ServicerContext
    ) -> tuple[int, int]:
        try:
            return self._store.add(events)
        except StoreClosedError:
            _abort(context, grpc.StatusCode.UNAVAILABLE, "receiver is shutting down; retry later")

    def report_progress(
        self, request: WorkflowProgressEvent, context: grpc.ServicerContext
    ) -> ProgressAckResponse:
        """Store one event; ``duplicate`` is True when its ``event_id`` was already stored."""
        self._faults.record_call(REPORT_PROGRESS)
        self._admit(REPORT_PROGRESS, context)
        missing = validate_event(request)
        if missing is not None:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{missing} is required")
        accepted, _ = self._store_events((request,), context)
        return ProgressAckResponse(accepted=True, duplicate=accepted == 0)

    def report_progress_batch(
        self, request: ReportProgressBatchRequest, context: grpc.ServicerContext
    ) -> ReportProgressBatchResponse:
        """Store a batch in one transaction; one invalid event rejects the whole batch."""
        self._faults.record_call(REPORT_PROGRESS_BATCH)
        if not self._faults.batch_enabled:
            # Checked before authentication: an older receiver has no such method at all.
            _abort(
                context,
                grpc.StatusCode.UNIMPLEMENTED,
                "report_progress_batch is not implemented by this receiver",
            )
        self._admit(REPORT_PROGRESS_BATCH, context)
        events = request.events
        for index, event in enumerate(events):
            missing = validate_event(event)
            if missing is not None:
                _abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"events[{index}].{missing} is required; no event of the batch was stored",
                )
        accepted, duplicates = self._store_events(events, context)
        return ReportProgressBatchResponse(accepted=accepted, duplicates=duplicates)
