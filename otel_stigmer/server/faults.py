"""Fault injection for the reference receiver: failures, latency, an older-receiver switch."""

from __future__ import annotations

import threading
from collections import Counter, deque
from dataclasses import dataclass

import grpc
from google.protobuf.duration_pb2 import Duration

from otel_stigmer._proto.ai.stigmer.workflow.runner.v1.progress_pb2 import RetryInfo

__all__ = ["RETRY_INFO_TRAILER", "Fault", "FaultInjector"]

#: Trailer that carries a serialized ``RetryInfo`` (same key as google.rpc.RetryInfo).
RETRY_INFO_TRAILER = "google.rpc.retryinfo-bin"


@dataclass(frozen=True)
class Fault:
    """One injected failure: the status to answer and the trailing metadata to send."""

    code: grpc.StatusCode
    details: str
    trailers: tuple[tuple[str, bytes], ...] = ()


def _retry_info(seconds: float) -> bytes:
    duration = Duration()
    duration.FromNanoseconds(round(seconds * 1_000_000_000))
    return RetryInfo(retry_delay=duration).SerializeToString()


class FaultInjector:
    """Thread-safe switchboard of faults, shared by the servicer and the tests.

    Also counts the calls received per RPC method, so tests can assert that a
    client did not retry in a storm.
    """

    def __init__(self, *, batch_enabled: bool = True) -> None:
        self._lock = threading.Lock()
        self._pending: deque[Fault] = deque()
        self._latency = 0.0
        self._batch_enabled = batch_enabled
        self._calls: Counter[str] = Counter()
        self._released = threading.Event()

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"FaultInjector(pending={len(self._pending)}, latency={self._latency}, "
                f"batch_enabled={self._batch_enabled}, calls={dict(self._calls)})"
            )

    def fail_next(
        self,
        n: int,
        code: grpc.StatusCode,
        *,
        retry_delay: float | None = None,
        details: str = "injected fault",
    ) -> None:
        """Fail the next ``n`` authenticated calls (of either RPC) with ``code``.

        Args:
            n: How many calls to fail; added after faults already pending.
            code: The status to answer, for example ``grpc.StatusCode.UNAVAILABLE``.
            retry_delay: When given, seconds sent as a ``RetryInfo`` in the
                ``google.rpc.retryinfo-bin`` trailer.
            details: The status details text.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if code is grpc.StatusCode.OK:
            raise ValueError("code must be an error status, not OK")
        if retry_delay is not None and retry_delay < 0:
            raise ValueError(f"retry_delay must be >= 0 seconds, got {retry_delay}")
        trailers = () if retry_delay is None else ((RETRY_INFO_TRAILER, _retry_info(retry_delay)),)
        fault = Fault(code, details, trailers)
        with self._lock:
            self._pending.extend([fault] * n)

    def set_latency(self, seconds: float) -> None:
        """Delay every authenticated call by ``seconds`` before answering (0 to stop)."""
        if seconds < 0:
            raise ValueError(f"latency must be >= 0 seconds, got {seconds}")
        with self._lock:
            self._latency = seconds

    @property
    def batch_enabled(self) -> bool:
        """False makes ``report_progress_batch`` answer UNIMPLEMENTED, like an older receiver."""
        with self._lock:
            return self._batch_enabled

    @batch_enabled.setter
    def batch_enabled(self, enabled: bool) -> None:
        with self._lock:
            self._batch_enabled = enabled

    @property
    def pending(self) -> int:
        """Number of injected failures not yet answered."""
        with self._lock:
            return len(self._pending)

    def clear(self) -> None:
        """Drop pending failures and latency (call counters and the batch switch stay)."""
        with self._lock:
            self._pending.clear()
            self._latency = 0.0

    @property
    def calls(self) -> dict[str, int]:
        """Calls received so far per RPC method name (``report_progress``, ...)."""
        with self._lock:
            return dict(self._calls)

    def reset_calls(self) -> None:
        """Set every call counter back to zero."""
        with self._lock:
            self._calls.clear()

    def record_call(self, method: str) -> None:
        """Count one received call of ``method``."""
        with self._lock:
            self._calls[method] += 1

    def next_fault(self) -> Fault | None:
        """Wait out the configured latency, then take the next pending failure, if any."""
        with self._lock:
            latency = self._latency
        # An Event wait (not sleep) so stopping the server cuts a long latency short.
        if latency > 0:
            self._released.wait(latency)
        with self._lock:
            return self._pending.popleft() if self._pending else None

    def release(self) -> None:
        """Cut short every current and future latency wait (called when the server stops)."""
        self._released.set()

    def rearm(self) -> None:
        """Make latency effective again after :meth:`release` (called when the server starts)."""
        self._released.clear()
