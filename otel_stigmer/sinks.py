"""Where progress events go: the :class:`EventSink` protocol and the gRPC sink."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import grpc

from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.exceptions import CallbackError

if TYPE_CHECKING:
    from otel_stigmer.client import CallbackClient
    from otel_stigmer.config import StigmerConfig

__all__ = ["EventSink", "GrpcSink", "MemorySink", "PartialDeliveryError"]

_log = logging.getLogger(__name__)


@runtime_checkable
class EventSink(Protocol):
    """Receives progress events in order. The pipeline's extension point.

    ``send`` takes all events, or raises :class:`CallbackError` and the pipeline retries
    the same events later (receivers de-duplicate by ``event_id``). Events the receiver
    refuses as invalid cannot succeed on a retry: ``send`` returns them (or None when
    there are none) and the pipeline counts them as rejected.
    """

    def send(
        self, events: Sequence[WorkflowProgressEvent]
    ) -> Sequence[WorkflowProgressEvent] | None:
        """Deliver ``events``; return those refused as invalid, or raise :class:`CallbackError`."""

    def close(self) -> None:
        """Release resources; called once at pipeline shutdown."""


class PartialDeliveryError(CallbackError):
    """Some events of a ``send`` were delivered and others failed with a retryable error.

    The pipeline forgets the delivered ones and retries only the rest, so a receiver that
    refuses a share of unary calls cannot keep a whole batch from ever completing.

    Attributes:
        delivered_ids: Event ids the receiver acknowledged.
    """

    def __init__(self, error: CallbackError, delivered_ids: frozenset[str]) -> None:
        super().__init__(error.code, error.details, retry_delay=error.retry_delay)
        self.delivered_ids = delivered_ids


class MemorySink:
    """Keeps events in a list (for tests and in-process consumers)."""

    def __init__(self) -> None:
        self.events: list[WorkflowProgressEvent] = []
        self._lock = threading.Lock()

    def send(self, events: Sequence[WorkflowProgressEvent]) -> None:
        """Append ``events``."""
        with self._lock:
            self.events.extend(events)

    def close(self) -> None:
        """Nothing to release."""


class GrpcSink:
    """Delivers through ``report_progress_batch``, falling back to pipelined unary calls.

    The first UNIMPLEMENTED answer to the batch RPC (an older receiver) switches this sink
    to unary calls for good. A forked child gets a fresh channel on its first send.
    """

    def __init__(self, config: StigmerConfig, *, max_in_flight: int = 32) -> None:
        self._config = config
        self._max_in_flight = max_in_flight
        self._client: CallbackClient | None = None
        self._pid = os.getpid()
        self._batch_supported = True
        self._lock = threading.Lock()

    @property
    def batch_supported(self) -> bool:
        """False once the receiver answered UNIMPLEMENTED to the batch RPC."""
        return self._batch_supported

    def send(self, events: Sequence[WorkflowProgressEvent]) -> list[WorkflowProgressEvent]:
        """Deliver ``events``; return those refused as invalid, or raise :class:`CallbackError`."""
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
        # One call first: a refused key or a dead receiver then costs one call per retry,
        # not one per event of the batch.
        failures = client.report_progress_many(events[:1])
        probe = failures[0] if failures else None
        if probe is not None and probe.code != grpc.StatusCode.INVALID_ARGUMENT:
            raise probe
        failures += client.report_progress_many(events[1:], max_in_flight=self._max_in_flight)
        rejected = [
            event
            for event, failure in zip(events, failures, strict=True)
            if failure is not None and failure.code == grpc.StatusCode.INVALID_ARGUMENT
        ]
        retryable = next(
            (f for f in failures if f is not None and f.code != grpc.StatusCode.INVALID_ARGUMENT),
            None,
        )
        if retryable is not None:
            delivered = frozenset(
                event.event_id
                for event, failure in zip(events, failures, strict=True)
                if failure is None
            )
            raise PartialDeliveryError(retryable, delivered)
        return rejected

    def close(self) -> None:
        """Close the channel."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _get_client(self) -> CallbackClient:
        from otel_stigmer.client import CallbackClient  # noqa: PLC0415 - keeps grpc channel lazy

        with self._lock:
            if self._client is None or self._pid != os.getpid():
                # After fork() the parent's channel must not be used; leave it to the parent.
                self._client = CallbackClient(self._config)
                self._pid = os.getpid()
            return self._client
