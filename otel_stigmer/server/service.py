"""The ``WorkflowRunnerCommandController`` servicer: authenticate, fault, validate, store."""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import NoReturn

import grpc
from google.protobuf.duration_pb2 import Duration

from otel_stigmer._proto.ai.stigmer.workflow.runner.v1 import progress_pb2_grpc
from otel_stigmer._proto.ai.stigmer.workflow.runner.v1.progress_pb2 import RetryInfo
from otel_stigmer.events import (
    ProgressAckResponse,
    ReportProgressBatchRequest,
    ReportProgressBatchResponse,
    WorkflowProgressEvent,
)
from otel_stigmer.server.auth import TOO_MANY_FAILURES, BearerKeyAuth
from otel_stigmer.server.faults import RETRY_INFO_TRAILER, FaultInjector
from otel_stigmer.server.store import EventStore, StoreClosedError
from otel_stigmer.server.throttle import peer_address

__all__ = ["ProgressService", "validate_event"]

_log = logging.getLogger(__name__)

REPORT_PROGRESS = "report_progress"
REPORT_PROGRESS_BATCH = "report_progress_batch"
_NO_BATCH = "report_progress_batch is not implemented by this receiver"


def validate_event(event: WorkflowProgressEvent) -> str | None:
    """Return the name of the first missing required field, or None when the event is valid."""
    if not event.workflow_execution_id:
        return "workflow_execution_id"
    if not event.event_type:
        return "event_type"
    return None


def _retry_info(seconds: float) -> bytes:
    duration = Duration()
    duration.FromNanoseconds(round(seconds * 1_000_000_000))
    return RetryInfo(retry_delay=duration).SerializeToString()


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

    def admits(self, method: str, metadata: Iterable[tuple[str, str | bytes]]) -> bool:
        """Whether a call may reach its handler, judged from its metadata alone.

        Called before the call takes a worker thread; a call refused here is answered by
        :meth:`refuse`, which never waits for the request message.
        """
        if method == REPORT_PROGRESS_BATCH and not self._faults.batch_enabled:
            return False
        return self._auth.check(metadata) is None

    def refuse(
        self, method: str, requests: Iterator[object], context: grpc.ServicerContext
    ) -> NoReturn:
        """Answer a call :meth:`admits` refused, without reading its request."""
        self._faults.record_call(method)
        if method == REPORT_PROGRESS_BATCH and not self._faults.batch_enabled:
            _abort(context, grpc.StatusCode.UNIMPLEMENTED, _NO_BATCH)
        self._admit(method, context)
        _abort(context, grpc.StatusCode.UNAUTHENTICATED, "API key required")

    def _admit(self, method: str, context: grpc.ServicerContext) -> None:
        peer = peer_address(context.peer())
        wait = self._auth.throttle.wait_time(peer)
        if wait > 0:
            # Past its budget of failures an address is refused before its key is compared.
            context.set_trailing_metadata(((RETRY_INFO_TRAILER, _retry_info(wait)),))
            _abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{TOO_MANY_FAILURES}: retry in {math.ceil(wait)} s",
            )
        reason = self._auth.check(context.invocation_metadata(), peer)
        if reason is not None:
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
        except sqlite3.Error as error:
            _log.warning("the receiver could not store a call's events: %s", error)
            _abort(
                context,
                grpc.StatusCode.ABORTED,
                "the receiver could not commit the events of this call; none was stored; retry",
            )

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
            _abort(context, grpc.StatusCode.UNIMPLEMENTED, _NO_BATCH)
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
