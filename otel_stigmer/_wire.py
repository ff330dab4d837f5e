"""The gRPC side of the callback client: encoding, call pipelining, trailers (no policy).

Requests are encoded deterministically, so a retried event goes out as the very bytes of
its first attempt. :func:`run_ordered` keeps one call in flight per execution.
"""

from __future__ import annotations

import collections
import functools
import importlib.metadata
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import grpc
from opentelemetry import context as otel_context

from otel_stigmer._proto.ai.stigmer.workflow.runner.v1 import progress_pb2
from otel_stigmer.events import (
    ProgressAckResponse,
    ReportProgressBatchResponse,
    WorkflowProgressEvent,
)
from otel_stigmer.exceptions import CallbackError
from otel_stigmer.retry import RetryPolicy

__all__ = [
    "RETRY_INFO_TRAILER",
    "Stub",
    "channel_args",
    "encode_batch",
    "retry_delay",
    "run_ordered",
    "run_pipelined",
    "suppress_instrumentation",
    "user_agent",
]

#: Trailer in which a receiver may send a serialized ``google.rpc.RetryInfo``.
RETRY_INFO_TRAILER = "google.rpc.retryinfo-bin"

R = TypeVar("R")

try:
    # The public helper when opentelemetry-instrumentation is installed; it also sets the
    # legacy plain-string key that older instrumentations check.
    from opentelemetry.instrumentation.utils import suppress_instrumentation
except ImportError:  # pragma: no cover - exercised only without opentelemetry-instrumentation
    # The SDK's own exporters use this key of the API when the helper is unavailable.
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY

    @contextmanager
    def suppress_instrumentation() -> Iterator[None]:
        """Suppress OpenTelemetry instrumentation within the block."""
        token = otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        try:
            yield
        finally:
            otel_context.detach(token)


def user_agent() -> str:
    try:
        version = importlib.metadata.version("otel-stigmer")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        version = "0+unknown"
    return f"otel-stigmer/{version}"


def retry_delay(error: grpc.RpcError) -> float | None:
    """Read the server's ``RetryInfo`` trailer, if any; malformed trailers are ignored."""
    trailers = getattr(error, "trailing_metadata", None)
    try:
        items = trailers() if callable(trailers) else None
    except Exception:  # a broken call object must not hide the real error
        return None
    for key, value in items or ():
        if key != RETRY_INFO_TRAILER or not isinstance(value, bytes):
            continue
        try:
            info = progress_pb2.RetryInfo.FromString(value)
        except Exception:  # protobuf raises its own DecodeError types
            return None
        delay = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
        return delay if delay > 0 else None
    return None


def channel_args(
    policy: RetryPolicy, extra: Sequence[tuple[str, Any]], *, allow_proxy: bool = False
) -> list[tuple[str, Any]]:
    """The client's channel arguments; ``extra`` overrides them."""
    options: dict[str, Any] = {
        # Retrying is ours (visible, interruptible, policy-driven); gRPC's would double it.
        "grpc.enable_retries": 0,
        # The key goes only where the endpoint says: no proxy from the environment
        # unless allowed, and then only with TLS (checked by the config).
        "grpc.enable_http_proxy": int(allow_proxy),
        "grpc.primary_user_agent": user_agent(),
        # gRPC's reconnect backoff (1 s growing to 120 s by default) would fail our
        # retries fast long after a receiver is back; keep it in step with our policy.
        "grpc.initial_reconnect_backoff_ms": max(1, round(policy.initial_backoff * 1000)),
        "grpc.max_reconnect_backoff_ms": max(1, round(policy.max_backoff * 1000)),
    }
    options.update(dict(extra))
    return list(options.items())


def run_pipelined(
    events: Sequence[WorkflowProgressEvent],
    start: Callable[[WorkflowProgressEvent], grpc.Future[R]],
    finish: Callable[[grpc.Future[R]], R | CallbackError],
    closed: Callable[[], CallbackError],
    max_in_flight: int,
) -> list[R | CallbackError]:
    """Start one call per event, at most ``max_in_flight`` at a time, in input order."""
    results: list[R | CallbackError] = [closed()] * len(events)
    pending: collections.deque[tuple[int, grpc.Future[R]]] = collections.deque()
    for index, event in enumerate(events):
        if len(pending) >= max_in_flight:
            done, future = pending.popleft()
            results[done] = finish(future)
        try:
            pending.append((index, start(event)))
        except ValueError:  # grpc's word for a closed channel
            continue
    while pending:
        done, future = pending.popleft()
        results[done] = finish(future)
    return results


def run_ordered(
    events: Sequence[WorkflowProgressEvent],
    start: Callable[[WorkflowProgressEvent], grpc.Future[R]],
    finish: Callable[[grpc.Future[R]], R | CallbackError],
    closed: Callable[[], CallbackError],
    max_in_flight: int,
) -> list[R | CallbackError | None]:
    """One call in flight per execution, up to ``max_in_flight`` executions at a time.

    After a failure the rest of that execution is not sent (``None``); others go on. The
    next call of an execution is started from the completion callback of its previous
    one (gRPC's callback thread), not by a wake-up of the calling thread, which only waits
    for the last answer.
    """
    results: list[R | CallbackError | None] = [None] * len(events)
    chains: dict[str, collections.deque[int]] = {}
    for index, event in enumerate(events):
        chains.setdefault(event.workflow_execution_id, collections.deque()).append(index)
    _OrderedCalls(events, results, start, finish, closed, max_in_flight).run(chains.values())
    return results


class _OrderedCalls(Generic[R]):
    """The state of one :func:`run_ordered`: chains ready to go on, calls in flight."""

    def __init__(
        self,
        events: Sequence[WorkflowProgressEvent],
        results: list[R | CallbackError | None],
        start: Callable[[WorkflowProgressEvent], grpc.Future[R]],
        finish: Callable[[grpc.Future[R]], R | CallbackError],
        closed: Callable[[], CallbackError],
        max_in_flight: int,
    ) -> None:
        self._events = events
        self._results = results
        self._start = start
        self._finish = finish
        self._closed = closed
        self._max_in_flight = max_in_flight
        self._lock = threading.Lock()
        self._ready: collections.deque[collections.deque[int]] = collections.deque()
        self._in_flight = 0
        self._starting = False
        self._finished = threading.Event()
        # Calls started from gRPC's callback thread run in the caller's context (whose
        # instrumentation is suppressed), attached once per round of starts.
        self._context = otel_context.get_current()

    def run(self, chains: Iterable[collections.deque[int]]) -> None:
        """Send every chain, in order within each; return once every call is answered."""
        with self._lock:
            self._ready.extend(chains)
            self._starting = True
        self._start_ready()
        self._finished.wait()

    def _start_ready(self) -> None:
        """Start calls while chains are ready and slots free (one thread at a time).

        A call answered at once calls back into :meth:`_answered` on this thread; that only
        queues its chain, so the stack never grows with the number of calls.
        """
        token = otel_context.attach(self._context)
        try:
            while True:
                with self._lock:
                    if not self._ready or self._in_flight >= self._max_in_flight:
                        self._starting = False
                        if not self._in_flight and not self._ready:
                            self._finished.set()
                        return
                    chain = self._ready.popleft()
                    index = chain.popleft()
                    self._in_flight += 1
                try:
                    future = self._start(self._events[index])
                except Exception as error:
                    # ValueError is grpc's word for a closed channel; the chain stops here.
                    self._results[index] = (
                        self._closed()
                        if isinstance(error, ValueError)
                        else CallbackError(grpc.StatusCode.UNKNOWN, type(error).__name__)
                    )
                    with self._lock:
                        self._in_flight -= 1
                    continue
                future.add_done_callback(functools.partial(self._answered, chain, index))
        finally:
            otel_context.detach(token)

    def _answered(self, chain: collections.deque[int], index: int, future: grpc.Future[R]) -> None:
        try:
            outcome = self._finish(future)
        except Exception as error:  # never leave the waiting caller hanging
            outcome = CallbackError(grpc.StatusCode.UNKNOWN, type(error).__name__)
        self._results[index] = outcome
        with self._lock:
            self._in_flight -= 1
            if isinstance(outcome, CallbackError):
                chain.clear()  # the rest of this execution waits for the next attempt
            elif chain:
                self._ready.append(chain)
            if self._starting:
                return  # the thread starting calls picks the chain up
            self._starting = True
        self._start_ready()


#: Field 1 (``events``) of ``ReportProgressBatchRequest``, length-delimited.
_BATCH_EVENTS_TAG = b"\x0a"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_batch(payloads: Iterable[bytes]) -> bytes:
    """A serialized ``ReportProgressBatchRequest`` made of already-serialized events.

    A repeated message field is, on the wire, each element's tag, length and bytes one
    after the other, so the request is the concatenation of the stored events: no parse,
    no copy into a new message, no second serialization. Given deterministic event bytes
    it equals the deterministic serialization of the request, byte for byte.
    """
    parts: list[bytes] = []
    for payload in payloads:
        parts += (_BATCH_EVENTS_TAG, _varint(len(payload)), payload)
    return b"".join(parts)


def _serialize(message: Any) -> bytes:
    # Deterministic: a retried event goes out as the very bytes of its first attempt.
    if type(message) is bytes:
        return message  # a request encoded by encode_batch
    data: bytes = message.SerializeToString(deterministic=True)
    return data


class Stub:
    """The two RPCs of the callback service, with deterministic request encoding."""

    _SERVICE = "/ai.stigmer.workflow.runner.v1.WorkflowRunnerCommandController/"

    def __init__(self, channel: grpc.Channel) -> None:
        self.report_progress = channel.unary_unary(
            self._SERVICE + "report_progress",
            request_serializer=_serialize,
            response_deserializer=ProgressAckResponse.FromString,
        )
        self.report_progress_batch = channel.unary_unary(
            self._SERVICE + "report_progress_batch",
            request_serializer=_serialize,
            response_deserializer=ReportProgressBatchResponse.FromString,
        )
