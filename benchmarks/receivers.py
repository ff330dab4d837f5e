"""Receivers in processes of their own, timestamping every stored event or span.

Two kinds: the reference Stigmer receiver (``ReceiverServer`` as shipped, with the batch
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
import sys
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

from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.server.app import ReceiverServer
from otel_stigmer.server.store import EventStore

__all__ = ["API_KEY", "ArrivalRecorder", "ReceiverProcess", "ReceiverStats", "StoreMeter"]

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


@dataclass
class StoreMeter:
    """What the store saw: calls of ``add``, how many ran at once, their CPU and wall time."""

    calls: int = 0
    #: Transactions written so far (absolute); 0 for a store that does not count them.
    transactions: int = 0
    events: int = 0
    max_in_add: int = 0
    in_add_sum: int = 0
    add_cpu_ns: int = 0
    add_wall_ns: int = 0
    process_cpu_ns: int = 0
    threads: int = 0
    #: Context switches of all the process's threads so far (absolute).
    switches: int = 0


def context_switches(pid: int | str = "self") -> int:
    """Voluntary and involuntary context switches of every thread of a process so far."""
    total = 0
    task_dir = f"/proc/{pid}/task"
    for tid in os.listdir(task_dir):
        with contextlib.suppress(OSError), open(f"{task_dir}/{tid}/status") as status:
            for line in status:
                if "ctxt_switches:" in line:
                    total += int(line.split()[-1])
    return total


class _RecordingStore(EventStore):
    """The reference SQLite store, noting when each batch was committed."""

    def __init__(self, path: str, recorder: ArrivalRecorder) -> None:
        super().__init__(path)
        self._recorder = recorder
        self._meter_lock = threading.Lock()
        self._in_add = 0
        self.meter = StoreMeter()

    def add(self, events: Sequence[WorkflowProgressEvent]) -> tuple[int, int]:
        meter = self.meter
        with self._meter_lock:
            self._in_add += 1
            meter.calls += 1
            meter.events += len(events)
            meter.in_add_sum += self._in_add
            meter.max_in_add = max(meter.max_in_add, self._in_add)
        wall, cpu = time.perf_counter_ns(), time.thread_time_ns()
        try:
            accepted, duplicates = super().add(events)
        finally:
            with self._meter_lock:
                self._in_add -= 1
                meter.add_cpu_ns += time.thread_time_ns() - cpu
                meter.add_wall_ns += time.perf_counter_ns() - wall
        started = (e.span_id for e in events if e.event_type.endswith(_STARTED_SUFFIX))
        self._recorder.note(accepted, started, time.monotonic_ns())
        return accepted, duplicates

    def take_meter(self) -> StoreMeter:
        """The meter since the last call, with the process CPU spent meanwhile."""
        with self._meter_lock:
            meter, self.meter = self.meter, StoreMeter()
        meter.process_cpu_ns = time.process_time_ns()
        meter.threads = threading.active_count()
        meter.switches = context_switches()
        meter.transactions = int(getattr(self, "transactions", 0))
        return meter


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


class _BenchReceiver(ReceiverServer):
    """The reference receiver as shipped (``ReceiverServer``), storing through the recorder."""

    def __init__(self, db_path: str, recorder: ArrivalRecorder, batch_enabled: bool) -> None:
        super().__init__(
            api_keys=[API_KEY], db_path=db_path, host="127.0.0.1", batch_enabled=batch_enabled
        )
        self.recording = _RecordingStore(db_path, recorder)

    @property
    def store(self) -> EventStore:
        return self.recording


def _serve(conn: Connection, kind: str, batch_enabled: bool, db_path: str) -> None:
    """Child process: serve until told to stop, answering control commands on ``conn``."""
    recorder = ArrivalRecorder()
    store: _RecordingStore | None = None
    receiver: _BenchReceiver | None = None
    server: grpc.Server | None = None
    if kind == "stigmer":
        receiver = _BenchReceiver(db_path, recorder, batch_enabled)
        receiver.start()
        store = receiver.recording
        port = receiver.port
    else:
        server = grpc.server(ThreadPoolExecutor(max_workers=16), options=[("grpc.so_reuseport", 0)])
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
            elif command == "meter":
                conn.send(store.take_meter() if store is not None else StoreMeter())
            elif command == "reset":
                recorder.reset()
                conn.send(None)
            else:
                break
    finally:
        if receiver is not None:
            receiver.stop(1.0)
        if server is not None:
            server.stop(1.0).wait()
        if store is not None:
            store.close()


class ReceiverProcess:
    """A receiver running in a child process; a context manager.

    Args:
        kind: ``"stigmer"`` (the reference receiver) or ``"otlp"``.
        batch_enabled: For ``"stigmer"``: False answers the batch RPC with UNIMPLEMENTED.
        library: A directory holding another ``otel_stigmer`` package for the child to
            serve with (an A/B baseline); this checkout's when None.
    """

    def __init__(
        self, kind: str, *, batch_enabled: bool = True, library: str | None = None
    ) -> None:
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
        self._library = library
        self.port = 0

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> ReceiverProcess:
        """Start the child and wait until it serves."""
        if self._library is None:
            self._process.start()
        else:
            # A spawned child starts with the parent's sys.path: put the baseline first.
            sys.path.insert(0, self._library)
            try:
                self._process.start()
            finally:
                sys.path.remove(self._library)
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

    def meter(self) -> StoreMeter:
        """The store's meter since the last call (the process CPU is absolute)."""
        result = self._ask("meter")
        assert isinstance(result, StoreMeter)
        return result

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self._process.pid

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
