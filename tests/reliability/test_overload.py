"""Overload with a silent receiver: the queue is bounded in bytes, and a put stays cheap."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator, Sequence

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from otel_stigmer import conventions as conv
from otel_stigmer.delivery import Sender
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.exceptions import CallbackError
from otel_stigmer.intake import PACK_ABOVE
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.records import OUTCOME, START, Record

from .support import wait_until


class StuckSink:
    """A sink whose sends block until released: nothing leaves the queues meanwhile."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.events: list[WorkflowProgressEvent] = []

    def send(self, events: Sequence[WorkflowProgressEvent]) -> None:
        """Block until released, then keep ``events``."""
        self.entered.set()
        assert self.release.wait(60)
        self.events.extend(events)

    def close(self) -> None:
        """Release a blocked send."""
        self.release.set()


class DownSink:
    """A sink whose every send fails UNAVAILABLE: the sender backs off and fills its outbox."""

    def __init__(self) -> None:
        self.refused = 0

    def send(self, events: Sequence[WorkflowProgressEvent]) -> None:
        """Refuse ``events`` as an unreachable receiver would."""
        self.refused += 1
        raise CallbackError(grpc.StatusCode.UNAVAILABLE, "down")

    def close(self) -> None:
        """Nothing to close."""


class _Ended(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


@pytest.fixture
def ended() -> Iterator[tuple[TracerProvider, _Ended]]:
    provider = TracerProvider()
    collected = _Ended()
    provider.add_span_processor(collected)
    yield provider, collected
    provider.shutdown()


def _stuck_sender(
    max_queue_size: int, max_queue_bytes: int = 64 << 20
) -> tuple[Sender, StuckSink, ReadableSpan]:
    """A sender stuck in the send of its first event (which stays in its outbox)."""
    sink = StuckSink()
    sender = Sender(sink, max_queue_size=max_queue_size, max_queue_bytes=max_queue_bytes)
    workflow = ReadableSpan(
        "wf", attributes={conv.WORKFLOW_EXECUTION_ID: "overload"}, start_time=1, end_time=2
    )
    sender.submit(Record(START, workflow, False))
    assert sink.entered.wait(30)  # the sender is stuck in its first send
    return sender, sink, workflow


def test_queue_bound_holds_in_bytes(ended: tuple[TracerProvider, _Ended]) -> None:
    """Row 12: spans holding 20 kB each fill a 1 MiB bound long before the event bound."""
    provider, collected = ended
    tracer = provider.get_tracer("overload")
    payload = "x" * 20_000
    for number in range(200):
        attributes = {
            conv.WORKFLOW_EXECUTION_ID: "overload",
            conv.TASK_NAME: f"t{number}",
            "payload": payload,
        }
        tracer.start_span(f"t{number}", attributes=attributes).end()
    sender, sink, _ = _stuck_sender(max_queue_size=100_000, max_queue_bytes=1024 * 1024)
    for span in collected.spans:
        sender.submit(Record(START, span, False))
    stats = sender.stats()
    kept = stats.queue_depth - 1  # the workflow's start waits in the stuck send
    assert 0 < kept <= 1024 * 1024 // 20_000
    assert stats.dropped == {"queue_full": 200 - kept}
    sink.release.set()
    assert sender.force_flush(30_000)
    assert len(sink.events) == 1 + kept
    sender.shutdown(1_000)


def test_a_full_queue_costs_the_caller_no_scan() -> None:
    """Row 11: 50 000 outcomes into a queue full of 50 000 starts each evict one, cheaply.

    Before, each outcome scanned the whole queue (50 000 x 50 000 steps, minutes of a
    business thread's time); now an eviction is O(1), so this finishes in well under the
    generous timeout below.
    """
    bound = 50_000
    sender, sink, workflow = _stuck_sender(max_queue_size=bound)
    for _ in range(bound):
        sender.submit(Record(START, workflow, False))
    done = threading.Event()

    def outcomes() -> None:
        for _ in range(bound):
            sender.submit(Record(OUTCOME, workflow, True))
        done.set()

    producer = threading.Thread(target=outcomes, daemon=True)
    producer.start()
    assert done.wait(60), "a put into a full queue is not bounded"
    stats = sender.stats()
    assert stats.queue_depth == 1 + bound  # every start gave way to an outcome
    assert stats.dropped == {"queue_full": bound}
    sink.release.set()
    # The outcomes share one event id (one span): each entry is still delivered once.
    assert sender.force_flush(60_000)
    assert len(sink.events) == 1 + bound
    sender.shutdown(1_000)


def test_queue_byte_bound_comes_from_the_config() -> None:
    """STIGMER_MAX_QUEUE_BYTES sets the byte bound: a 2 MiB bound drops what a 64 MiB keeps."""
    from otel_stigmer import StigmerConfig  # noqa: PLC0415 - kept beside the test
    from otel_stigmer.wiring import sender_for  # noqa: PLC0415

    config = StigmerConfig.from_env(
        {
            "STIGMER_SERVICE_ENDPOINT": "127.0.0.1:9",
            "STIGMER_SERVICE_API_KEY": "queue-bytes-test-key-0123",
            "STIGMER_SERVICE_USE_TLS": "false",
            "STIGMER_MAX_QUEUE_BYTES": str(2 * 1024 * 1024),
        }
    )
    sender = sender_for(None, config)
    assert sender._intake._max_bytes == 2 * 1024 * 1024  # the wired bound
    assert sender._outbox._max_bytes == 2 * 1024 * 1024
    sender.shutdown(100)


def _census() -> tuple[int, int]:
    """Objects the collector tracks, and the references a full collection follows from them."""
    tracked = gc.get_objects()
    return len(tracked), len(gc.get_referents(*tracked))


@pytest.mark.parametrize("queue", ["intake", "outbox"])
def test_what_full_queues_hold_is_invisible_to_the_collector(queue: str) -> None:
    """Row 11: queued records and outbox events add (almost) nothing a full collection scans.

    A full garbage collection costs time per tracked object and per reference it follows
    from one, and it runs on whichever business thread triggers it: with objects tracked
    per queued span, and containers of a hundred thousand items, a span paid 0.4-0.6 s
    under overload. Here 8 000 workflows of 5 spans wait either in the input queue (the
    sender is stuck in a send) or in the outbox (every send fails): the process tracks,
    and its tracked objects refer to, fewer than one new object per 20 of them, beyond the
    few the input queue keeps as they are (its first ``PACK_ABOVE`` records, a record and
    a snapshot of 6 and 11 fields each, and their dict entries).
    """
    sink: StuckSink | DownSink = StuckSink() if queue == "intake" else DownSink()
    processor = StigmerSpanProcessor(sink)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("overload")
    with tracer.start_as_current_span("first", attributes={conv.WORKFLOW_EXECUTION_ID: "x"}):
        pass
    if isinstance(sink, StuckSink):
        assert sink.entered.wait(30)
    else:
        assert wait_until(lambda: sink.refused >= 1, timeout=30)
    gc.collect()
    before = _census()
    for number in range(8_000):
        attributes = {conv.WORKFLOW_EXECUTION_ID: f"wf-{number % 100}"}  # 100 executions
        with tracer.start_as_current_span("w", attributes=attributes):
            for task in range(4):
                with tracer.start_as_current_span("t", attributes={conv.TASK_NAME: f"t{task}"}):
                    pass
    waiting = 8_000 * 5 * 2  # a start and an outcome per span
    sender = processor.sender
    assert isinstance(sender, Sender)
    if queue == "intake":
        assert len(sender._intake) >= waiting
    else:
        assert wait_until(lambda: sender._outbox.live >= waiting, timeout=60)
        assert len(sender._intake) == 0
    gc.collect()  # a tuple is untracked by a collection that finds all it holds untracked:
    gc.collect()  # one whose parts came later in the collector's list needs a second one
    tracked, visited = (after - first for after, first in zip(_census(), before, strict=True))
    as_they_are = PACK_ABOVE if queue == "intake" else 0  # a record and its snapshot each
    allowed = waiting / 20
    assert tracked < allowed + 3 * as_they_are, f"{tracked} tracked for {waiting} waiting"
    assert visited < allowed + 24 * as_they_are, f"{visited} references for {waiting} waiting"
    assert processor.stats().dropped == {}
    if isinstance(sink, StuckSink):
        sink.release.set()
    processor.shutdown(1_000)
    provider.shutdown()
