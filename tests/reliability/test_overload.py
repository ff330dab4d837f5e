"""Overload with a silent receiver: the queue is bounded in bytes, and a put stays cheap."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from otel_stigmer import conventions as conv
from otel_stigmer.delivery import Sender
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.records import OUTCOME, START, Record


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
