"""PROTOTYPE, benchmark-only: mapping and sending in a child process fed by a record stream.

Not product code. It answers one question by measurement: what does the calling thread
pay per task call when the span processor only appends a compact record (a tuple of the
span's ids, times, attributes, status and span events) and everything else — mapping,
numbering, serialization and the gRPC call — runs in a child process with its own GIL?

* Producer side (:class:`PipeSpanProcessor`): ``on_start``/``on_end`` append a tuple to a
  list; a flusher thread wakes every :data:`FLUSH_INTERVAL_S` (or at
  :data:`FLUSH_RECORDS` records) and writes the list, marshalled, as one length-prefixed
  frame into a pipe. Records beyond :data:`MAX_PENDING_RECORDS` waiting in the parent are
  dropped and counted (the memory bound); the child holds its backlog in its own memory.
* Child side (``python -m benchmarks.sidecar --child ENDPOINT``): reads frames, rebuilds
  span-like objects, maps them with the library's own mapping functions, numbers the
  events per execution in arrival order, serializes each event once and sends batches
  of up to 500 by concatenating the serialized events into a ``ReportProgressBatchRequest``
  (no parse/serialize round trip).
"""

from __future__ import annotations

import importlib
import marshal
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

__all__ = ["PipeSpanProcessor", "batch_request_bytes", "child_main"]

FLUSH_INTERVAL_S = 0.002
FLUSH_RECORDS = 512
MAX_PENDING_RECORDS = 100_000
MAX_BATCH = 500
_START, _END, _FLUSH = 0, 1, 2
_HEADER = struct.Struct("<I")
_EXECUTION_ID = "stigmer.workflow.execution_id"
_BATCH_METHOD = (
    "/ai.stigmer.workflow.runner.v1.WorkflowRunnerCommandController/report_progress_batch"
)
_ROOT = Path(__file__).resolve().parent.parent


# ---- producer side ----------------------------------------------------------------------


class PipeSpanProcessor(SpanProcessor):
    """Appends one tuple per span start and end; a flusher thread ships them to a child."""

    def __init__(self, endpoint: str, api_key: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
        env["BENCH_SIDECAR_KEY"] = api_key
        self.child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sidecar", "--child", endpoint],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=_ROOT,
            env=env,
        )
        assert self.child.stdin is not None
        assert self.child.stdout is not None
        self._out = self.child.stdin.fileno()
        self._acks = self.child.stdout
        self._pending: list[tuple[Any, ...]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self.dropped = 0
        self.frames = 0
        self.bytes_written = 0
        self._token = 0
        self._thread = threading.Thread(target=self._flusher, name="sidecar-flusher", daemon=True)
        self._thread.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        attributes = _attribute_dict(span)
        if _EXECUTION_ID not in attributes:
            return
        ctx = span.context
        parent = span.parent
        self._append(
            (
                _START,
                ctx.trace_id,
                ctx.span_id,
                parent.span_id if parent is not None else 0,
                span.name,
                span.start_time,
                dict(attributes),
            )
        )

    def on_end(self, span: ReadableSpan) -> None:
        attributes = _attribute_dict(span)
        if _EXECUTION_ID not in attributes:
            return
        ctx = span.context
        parent = span.parent
        status = span.status
        events = tuple(
            (event.name, event.timestamp, dict(event.attributes or {}))
            for event in _event_list(span)
        )
        self._append(
            (
                _END,
                ctx.trace_id,
                ctx.span_id,
                parent.span_id if parent is not None else 0,
                span.name,
                span.start_time,
                dict(attributes),
                span.end_time,
                status.status_code.value,
                status.description or "",
                events,
            )
        )

    def _append(self, record: tuple[Any, ...]) -> None:
        pending = self._pending
        if len(pending) >= MAX_PENDING_RECORDS:
            self.dropped += 1
            return
        pending.append(record)
        if len(pending) == FLUSH_RECORDS:
            self._wake.set()

    def _flusher(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            self._write_pending()

    def _write_pending(self) -> None:
        with self._write_lock:
            if not self._pending:
                return
            # Swapping the list is atomic under the GIL: appends go to the new one.
            records, self._pending = self._pending, []
            data = marshal.dumps(records)
            os.write(self._out, _HEADER.pack(len(data)))
            view = memoryview(data)
            while view:
                view = view[os.write(self._out, view) :]
            self.frames += 1
            self.bytes_written += len(data) + _HEADER.size

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write what is pending and wait until the child has sent everything before it."""
        self._write_pending()
        with self._write_lock:
            self._token += 1
            data = marshal.dumps([(_FLUSH, self._token)])
            os.write(self._out, _HEADER.pack(len(data)) + data)
        while True:
            line = self._acks.readline()
            if not line or int(line) == self._token:
                return bool(line)

    def shutdown(self) -> None:
        self.force_flush()
        self._stop.set()
        self._wake.set()
        self._thread.join(5)
        assert self.child.stdin is not None
        self.child.stdin.close()
        self.child.wait(30)

    def child_rss_bytes(self) -> int:
        """Resident memory of the child process."""
        with open(f"/proc/{self.child.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def child_cpu_ns(self) -> int:
        """CPU time (user + system) the child process used so far."""
        with open(f"/proc/{self.child.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))


def _attribute_dict(span: ReadableSpan | Span) -> Mapping[str, Any]:
    """The SDK's plain dict behind ``span.attributes`` when there is one.

    ``span.attributes`` wraps a ``BoundedAttributes`` (a Python ``MutableMapping`` with a
    lock) in a ``MappingProxyType``: each membership test goes through Python-level
    ``__contains__``/``__getitem__`` and a miss raises ``KeyError`` inside, about 1-3 us
    apiece here, where a dict lookup costs well under 0.1 us.
    """
    attributes = getattr(span, "_attributes", None)
    inner = getattr(attributes, "_dict", None)
    if isinstance(inner, dict):
        return inner
    return span.attributes or {}


def _event_list(span: ReadableSpan | Span) -> Sequence[Any]:
    """The span's events without the tuple copy ``span.events`` makes."""
    events = getattr(span, "_events", None)
    inner = getattr(events, "_dq", None)
    return inner if inner is not None else span.events


# ---- child side -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    trace_id: int
    span_id: int


@dataclass(frozen=True)
class _Status:
    status_code: Any
    description: str | None


@dataclass(frozen=True)
class _Event:
    name: str
    timestamp: int
    attributes: dict[str, Any]


@dataclass
class _Span:
    name: str
    context: _Context
    parent: _Context | None
    start_time: int
    end_time: int | None
    attributes: dict[str, Any]
    status: _Status
    events: Sequence[_Event] = field(default_factory=tuple)


def _span_of(record: tuple[Any, ...], status_codes: Any) -> _Span:
    trace_id, span_id, parent_id, name, start = record[1:6]
    parent = _Context(trace_id, parent_id) if parent_id else None
    if record[0] == _START:
        status = _Status(status_codes(0), None)
        return _Span(name, _Context(trace_id, span_id), parent, start, None, record[6], status)
    attributes, end, code, description, events = record[6:11]
    return _Span(
        name,
        _Context(trace_id, span_id),
        parent,
        start,
        end,
        attributes,
        _Status(status_codes(code), description),
        tuple(_Event(*event) for event in events),
    )


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def batch_request_bytes(payloads: Sequence[bytes]) -> bytes:
    """A serialized ``ReportProgressBatchRequest`` from serialized events (field 1, repeated).

    A repeated message field is, on the wire, each element's tag (field 1, length-delimited:
    0x0A), length and bytes, one after the other; so the batch is the concatenation.
    """
    return b"".join(b"\x0a" + _varint(len(payload)) + payload for payload in payloads)


def _read_exact(stream: Any, size: int) -> bytes | None:
    data = stream.read(size)
    return data if data and len(data) == size else None


def _mapping() -> tuple[Callable[[Any], list[Any]], Callable[[Any], list[Any]], Any]:
    """The library's mapping functions and sequencer, wherever the core keeps them."""
    mapping = importlib.import_module("otel_stigmer.mapping")
    sequencing = importlib.import_module("otel_stigmer.sequencing")
    return mapping.started_events, mapping.ended_events, sequencing.Sequencer()


def child_main(endpoint: str) -> int:
    """Map, number and send every record read from stdin; ack flush tokens on stdout."""
    import grpc  # noqa: PLC0415
    from opentelemetry.trace import StatusCode  # noqa: PLC0415

    started_events, ended_events, sequencer = _mapping()
    channel = grpc.insecure_channel(endpoint)
    send = channel.unary_unary(_BATCH_METHOD, request_serializer=None, response_deserializer=None)
    metadata = (("authorization", f"Bearer {os.environ['BENCH_SIDECAR_KEY']}"),)
    source = sys.stdin.buffer
    pending: list[bytes] = []

    def send_pending() -> None:
        for begin in range(0, len(pending), MAX_BATCH):
            send(batch_request_bytes(pending[begin : begin + MAX_BATCH]), metadata=metadata)
        pending.clear()

    while True:
        header = _read_exact(source, _HEADER.size)
        if header is None:
            break
        body = _read_exact(source, _HEADER.unpack(header)[0])
        if body is None:
            break
        for record in marshal.loads(body):
            if record[0] == _FLUSH:
                send_pending()
                sys.stdout.write(f"{record[1]}\n")
                sys.stdout.flush()
                continue
            span = _span_of(record, StatusCode)
            events = started_events(span) if record[0] == _START else ended_events(span)
            for event in events:
                sequencer.assign(event)
                pending.append(event.SerializeToString())
        send_pending()  # one frame per flush interval at most: send what it brought
    send_pending()
    channel.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(child_main(sys.argv[2]))
    sys.exit("usage: python -m benchmarks.sidecar --child ENDPOINT (started by the benchmark)")
