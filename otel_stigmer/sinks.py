"""Where progress events go: the :class:`EventSink` protocol and the gRPC sink."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

import grpc

from otel_stigmer._forksafe import renew_after_fork
from otel_stigmer.events import ProgressAckResponse, WorkflowProgressEvent
from otel_stigmer.exceptions import CallbackError
from otel_stigmer.retry import RETRYABLE_CODES

if TYPE_CHECKING:
    from otel_stigmer.client import CallbackClient
    from otel_stigmer.config import StigmerConfig

__all__ = ["EventSink", "GrpcSink", "MemorySink", "PartialDeliveryError", "Refused"]

_log = logging.getLogger(__name__)
# Failures a further round of unary calls may get past at once.
_AGAIN = RETRYABLE_CODES


class Refused(NamedTuple):
    """An event the receiver refused for good: retrying cannot make it succeed.

    Attributes:
        event: The refused event.
        reason: ``"rejected"`` (refused as invalid, INVALID_ARGUMENT) or ``"refused"``
            (answered ``accepted = false``); the pipeline counts drops under it.
        message: The receiver's explanation, if it gave one.
    """

    event: WorkflowProgressEvent
    reason: str
    message: str = ""


@runtime_checkable
class EventSink(Protocol):
    """Receives progress events in order. The pipeline's extension point.

    ``send`` takes all events, or raises :class:`CallbackError` and the pipeline retries
    the same events later, byte-identical and with the same sequence numbers. Events the
    receiver refuses for good are returned as :class:`Refused` (or None when there are
    none); the pipeline counts and logs them and does not retry them.
    """

    def send(self, events: Sequence[WorkflowProgressEvent]) -> Sequence[Refused] | None:
        """Deliver ``events``; return those refused for good, or raise :class:`CallbackError`."""

    def close(self) -> None:
        """Release resources; called once at pipeline shutdown."""


class PartialDeliveryError(CallbackError):
    """Some events of a ``send`` were delivered and others failed with a retryable error.

    The pipeline forgets the delivered ones and retries only the rest, so a receiver that
    refuses a share of unary calls cannot keep a whole batch from ever completing.

    Attributes:
        delivered_ids: Event ids the receiver is done with (acknowledged or refused).
        refused: The refused ones among them.
    """

    def __init__(
        self,
        error: CallbackError,
        delivered_ids: frozenset[str],
        refused: Sequence[Refused] = (),
    ) -> None:
        super().__init__(error.code, error.details, retry_delay=error.retry_delay)
        self.delivered_ids = delivered_ids
        self.refused = tuple(refused)


class MemorySink:
    """Keeps events in a list (for tests and in-process consumers)."""

    def __init__(self) -> None:
        self.events: list[WorkflowProgressEvent] = []
        self._lock = threading.Lock()
        renew_after_fork(self, "_lock")

    def send(self, events: Sequence[WorkflowProgressEvent]) -> None:
        """Append ``events``."""
        with self._lock:
            self.events.extend(events)

    def close(self) -> None:
        """Nothing to release."""


class GrpcSink:
    """Delivers through ``report_progress_batch``, falling back to unary ``report_progress``.

    The first UNIMPLEMENTED answer to the batch RPC (a receiver that knows only the
    upstream contract) switches this sink to unary calls for good. Unary calls keep one
    call in flight per execution, so arrival order is sequence order on any receiver,
    and pipeline up to ``max_in_flight`` executions. A forked child gets a fresh channel
    on its first send.
    """

    def __init__(self, config: StigmerConfig, *, max_in_flight: int = 32) -> None:
        self._config = config
        self._max_in_flight = max_in_flight
        self._client: CallbackClient | None = None
        self._pid = os.getpid()
        self._batch_supported = True
        self._closed = False
        self._lock = threading.Lock()
        renew_after_fork(self, "_lock")

    @property
    def batch_supported(self) -> bool:
        """False once the receiver answered UNIMPLEMENTED to the batch RPC."""
        return self._batch_supported

    def send(self, events: Sequence[WorkflowProgressEvent]) -> list[Refused]:
        """Deliver ``events``; return those refused for good, or raise :class:`CallbackError`."""
        client = self._get_client()
        if self._batch_supported:
            try:
                client.report_progress_batch(events)
            except CallbackError as error:
                if error.code == grpc.StatusCode.UNIMPLEMENTED:
                    self._batch_supported = False
                    _log.info("receiver has no report_progress_batch; using report_progress")
                elif error.code != grpc.StatusCode.INVALID_ARGUMENT:
                    raise
                # INVALID_ARGUMENT refuses the whole batch: send one by one to keep the rest.
            else:
                return []
        return self._send_unary(client, events)

    def _send_unary(
        self, client: CallbackClient, events: Sequence[WorkflowProgressEvent]
    ) -> list[Refused]:
        # One call first: a refused key or a dead receiver then costs one call per retry,
        # not one per execution of the batch.
        probe = client.report_progress_ordered(events[:1])[0]
        if isinstance(probe, CallbackError) and not _refusal(probe):
            raise probe
        refused: list[Refused] = []
        delivered: set[str] = set()
        self._settle(events[:1], [probe], refused, delivered)
        pending = list(events[1:])
        while pending:
            results = client.report_progress_ordered(pending, max_in_flight=self._max_in_flight)
            failure, left = self._settle(pending, results, refused, delivered)
            if failure is None:
                break
            # Go on at once while every round gets further, so a receiver failing a share
            # of calls costs calls, not backoff pauses; stop when a round gets nowhere or
            # the receiver asks for a pause.
            if len(left) == len(pending) or failure.retry_delay or failure.code not in _AGAIN:
                delivered.update(r.event.event_id for r in refused)
                raise PartialDeliveryError(failure, frozenset(delivered), refused)
            pending = left
        return refused

    @staticmethod
    def _settle(
        events: Sequence[WorkflowProgressEvent],
        results: Sequence[ProgressAckResponse | CallbackError | None],
        refused: list[Refused],
        delivered: set[str],
    ) -> tuple[CallbackError | None, list[WorkflowProgressEvent]]:
        """Sort one round's results; return its first failure and the events left to send."""
        failure: CallbackError | None = None
        left: list[WorkflowProgressEvent] = []
        for event, result in zip(events, results, strict=True):
            if isinstance(result, CallbackError):
                if _refusal(result):
                    refused.append(Refused(event, "rejected", result.details))
                    continue
                failure = failure or result
                left.append(event)
            elif result is None:
                left.append(event)  # not sent: an earlier event of its execution failed
            elif not result.accepted:
                refused.append(Refused(event, "refused", result.message))
            else:
                delivered.add(event.event_id)
        return failure, left

    def close(self) -> None:
        """Close the channel."""
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _get_client(self) -> CallbackClient:
        from otel_stigmer.client import CallbackClient  # noqa: PLC0415 - keeps grpc channel lazy

        with self._lock:
            if self._closed:
                raise CallbackError(grpc.StatusCode.CANCELLED, "the event sink is closed")
            if self._client is None or self._pid != os.getpid():
                # After fork() the parent's channel must not be used; leave it to the parent.
                self._client = CallbackClient(self._config)
                self._pid = os.getpid()
            return self._client


def _refusal(error: CallbackError) -> bool:
    """INVALID_ARGUMENT refuses one event as invalid; repeating it cannot succeed."""
    return error.code == grpc.StatusCode.INVALID_ARGUMENT
