"""Receivers in processes of their own, timestamping every stored event or span.

Two kinds: the reference Stigmer receiver (its servicer and SQLite store, with the batch
RPC on or off) and a minimal OTLP ``TraceService``. Each records, with
``time.monotonic_ns()`` (CLOCK_MONOTONIC, one clock for every process on the host), when
each item was stored, so producers in other processes can compute delivery rates and
start-to-arrival latencies against their own ``time.monotonic_ns()`` readings.
"""

from __future__ import annotations

import bisect
import contextlib
import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import TracebackType

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from otel_stigmer._proto.ai.stigmer.workflow.runner.v1 import progress_pb2_grpc
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.faults import FaultInjector
from otel_stigmer.server.service import ProgressService
from otel_stigmer.server.store import EventStore

__all__ = ["API_KEY", "ArrivalRecorder", "ReceiverProcess", "ReceiverStats"]

#: The key the benchmark receivers accept (a throw-away value, not a secret).
API_KEY = "bench-key-not-a-secret"
_START_TIMEOUT = 60.0
_STARTED_SUFFIX = "_started"


@dataclass(frozen=True)
class ReceiverStats:
    """What a receiver stored since its last reset (times are CLOCK_MONOTONIC ns)."""

    count: int
    first_ns: int
    last_ns: int


class ArrivalRecorder:
    """Counts stored items and keeps the first arrival time of each keyed item."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0
        self._first_ns = 0
        self._last_ns = 0
        self._arrivals: dict[str, int] = {}
        self._timeline: list[tuple[int, int]] = []

    def note(self, count: int, keys: Iterable[str], now_ns: int) -> None:
        """Record ``count`` items stored at ``now_ns``; ``keys`` are those to time."""
        with self._changed:
            arrivals = self._arrivals
            for key in keys:
                arrivals.setdefault(key, now_ns)
            if count:
                self._count += count
                self._first_ns = self._first_ns or now_ns
                self._last_ns = now_ns
                self._timeline.append((now_ns, self._count))
            self._changed.notify_all()

    def stats(self) -> ReceiverStats:
        """The counters."""
        with self._changed:
            return ReceiverStats(self._count, self._first_ns, self._last_ns)

    def wait_for(self, count: int, timeout: float) -> ReceiverStats:
        """Block until ``count`` items are stored or ``timeout`` seconds pass."""
        with self._changed:
            self._changed.wait_for(lambda: self._count >= count, timeout=timeout)
        return self.stats()

    def arrivals(self) -> dict[str, int]:
        """First arrival time of each keyed item."""
        with self._changed:
            return dict(self._arrivals)

    def count_at(self, when_ns: int) -> int:
        """Items stored at or before ``when_ns``."""
        with self._changed:
            index = bisect.bisect_right(self._timeline, (when_ns, self._count + 1))
            return self._timeline[index - 1][1] if index else 0

    def reset(self) -> None:
        """Forget everything recorded."""
        with self._changed:
            self._count = self._first_ns = self._last_ns = 0
            self._arrivals = {}
            self._timeline = []


class _RecordingStore(EventStore):
    """The reference SQLite store, noting when each batch was committed."""

    def __init__(self, path: str, recorder: ArrivalRecorder) -> None:
        super().__init__(path)
        self._recorder = recorder

    def add(self, events: Sequence[WorkflowProgressEvent]) -> tuple[int, int]:
        accepted, duplicates = super().add(events)
        started = (e.span_id for e in events if e.event_type.endswith(_STARTED_SUFFIX))
        self._recorder.note(accepted, started, time.monotonic_ns())
        return accepted, duplicates


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver that only counts and timestamps spans."""

    def __init__(self, recorder: ArrivalRecorder) -> None:
        self._recorder = recorder

    def Export(  # noqa: N802 - the generated servicer's method name
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        ids = [
            span.span_id.hex()
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        self._recorder.note(len(ids), ids, time.monotonic_ns())
        return trace_service_pb2.ExportTraceServiceResponse()


def _serve(conn: Connection, kind: str, batch_enabled: bool, db_path: str) -> None:
    """Child process: serve until told to stop, answering control commands on ``conn``."""
    recorder = ArrivalRecorder()
    # The reference receiver's own settings (ReceiverServer): 16 workers, no port sharing.
    server = grpc.server(ThreadPoolExecutor(max_workers=16), options=[("grpc.so_reuseport", 0)])
    store: EventStore | None = None
    if kind == "stigmer":
        store = _RecordingStore(db_path, recorder)
        service = ProgressService(
            store, BearerKeyAuth([API_KEY]), FaultInjector(batch_enabled=batch_enabled)
        )
        progress_pb2_grpc.add_WorkflowRunnerCommandControllerServicer_to_server(service, server)
    else:
        # opentelemetry-proto ships its gRPC module without type hints.
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(recorder), server
        )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    conn.send(port)
    try:
        while True:
            command, argument = conn.recv()
            if command == "stats":
                conn.send(recorder.stats())
            elif command == "wait":
                count, timeout = argument
                conn.send(recorder.wait_for(count, timeout))
            elif command == "count_at":
                conn.send(recorder.count_at(argument))
            elif command == "arrivals":
                conn.send(recorder.arrivals())
            elif command == "reset":
                recorder.reset()
                conn.send(None)
            else:
                break
    finally:
        server.stop(1.0).wait()
        if store is not None:
            store.close()


class ReceiverProcess:
    """A receiver running in a child process; a context manager.

    Args:
        kind: ``"stigmer"`` (the reference receiver) or ``"otlp"``.
        batch_enabled: For ``"stigmer"``: False answers the batch RPC with UNIMPLEMENTED.
    """

    def __init__(self, kind: str, *, batch_enabled: bool = True) -> None:
        if kind not in ("stigmer", "otlp"):
            raise ValueError(f"unknown receiver kind {kind!r}")
        self.kind = kind
        self._batch_enabled = batch_enabled
        self._tmp = tempfile.TemporaryDirectory(prefix="stigmer-bench-")
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(child, kind, batch_enabled, os.path.join(self._tmp.name, "events.db")),
            daemon=True,
        )
        self._child = child
        self.port = 0

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> ReceiverProcess:
        """Start the child and wait until it serves."""
        self._process.start()
        self._child.close()
        port = None
        with contextlib.suppress(EOFError, OSError):
            if self._conn.poll(_START_TIMEOUT):
                port = int(self._conn.recv())
        if port is None:
            self.stop()
            raise RuntimeError(f"the {self.kind} receiver did not start")
        self.port = port
        return self

    def _ask(self, command: str, argument: object = None) -> object:
        self._conn.send((command, argument))
        return self._conn.recv()

    def stats(self) -> ReceiverStats:
        """Counters since the last reset."""
        result = self._ask("stats")
        assert isinstance(result, ReceiverStats)
        return result

    def wait_for(self, count: int, timeout: float) -> ReceiverStats:
        """Wait until ``count`` items are stored (or ``timeout`` passes); the counters."""
        result = self._ask("wait", (count, timeout))
        assert isinstance(result, ReceiverStats)
        return result

    def arrivals(self) -> dict[str, int]:
        """First arrival (monotonic ns) of each started event (Stigmer) or span (OTLP)."""
        result = self._ask("arrivals")
        assert isinstance(result, dict)
        return result

    def count_at(self, when_ns: int) -> int:
        """Items stored at or before ``when_ns`` (CLOCK_MONOTONIC ns)."""
        result = self._ask("count_at", when_ns)
        assert isinstance(result, int)
        return result

    def reset(self) -> None:
        """Forget counters and arrivals (stored events stay in the database)."""
        self._ask("reset")

    def stop(self) -> None:
        """Stop the child and remove its files."""
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(("stop", None))
            self._process.join(10)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)
        self._conn.close()
        self._tmp.cleanup()

    def __enter__(self) -> ReceiverProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
