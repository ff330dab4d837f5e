"""Bounded memory: with the receiver down, 200 000 events stay within the queue bound."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerConfig
from otel_stigmer import conventions as conv
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.testing import StigmerTestServer

from .support import (
    CANARY,
    CANARY_FRAGMENT,
    ROOT,
    assert_canary_absent_from_files,
    free_port,
    rows_by_execution,
)

QUEUE_BOUND = 10_000
#: Memory allowed per queued event: the span it comes from while it waits in the input
#: queue plus its message in the outbox, with room for allocator slack. Holding all
#: 200 000 events instead takes over 400 MB.
BYTES_PER_EVENT = 10 * 1024


@pytest.mark.slow
def test_receiver_down_200k_events_stay_bounded_and_recover(tmp_path: Path) -> None:
    """Receiver down, 200k events: RSS bounded, drops counted, terminals kept, then delivered."""
    port = free_port()
    env = {
        "PYTHONPATH": str(ROOT),
        "STIGMER_SERVICE_ENDPOINT": f"127.0.0.1:{port}",
        "STIGMER_SERVICE_API_KEY": CANARY,
        "STIGMER_SERVICE_USE_TLS": "false",
        "STIGMER_MAX_QUEUE_SIZE": str(QUEUE_BOUND),
    }
    log = tmp_path / "child.log"
    with log.open("wb") as err:
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("child_memory.py"))],
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        line = child.stdout.readline()
        assert line, log.read_text(errors="replace")[-2000:]
        produced = json.loads(line)
        stats = produced["stats"]
        assert stats["sent"] == 0
        assert stats["queue_depth"] == QUEUE_BOUND
        assert stats["dropped"] == {"queue_full": 200_000 - QUEUE_BOUND}
        growth = produced["peak"] - produced["baseline"]
        assert growth < QUEUE_BOUND * BYTES_PER_EVENT, f"RSS grew by {growth / 1e6:.0f} MB"

        with StigmerTestServer(api_key=CANARY, port=port) as server:
            child.stdin.write("receiver is back\n")
            child.stdin.flush()
            recovered = json.loads(child.stdout.readline())
            assert child.wait(timeout=60) == 0
            stored = server.events()
            assert_canary_absent_from_files(server.server.store.path)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    assert recovered["flushed"] is True
    assert recovered["stats"]["sent"] == QUEUE_BOUND
    assert len(stored) == QUEUE_BOUND
    rows = rows_by_execution(stored)
    # Terminal events (7 000 of them, below the bound) all survived the 190 000 drops.
    for index in range(1000):
        kept = [event_type for event_type, _ in rows[f"mem-{index}"]]
        assert kept.count("task_completed") == 6, index
        assert kept[-1] == "workflow_completed", index
    assert CANARY_FRAGMENT not in log.read_text(errors="replace")


class StuckSink:
    """A sink whose first send blocks until released, so records pile up in the input."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.events: list[WorkflowProgressEvent] = []

    def send(self, events: Sequence[WorkflowProgressEvent]) -> None:
        """Block until released, then keep ``events``."""
        self.entered.set()
        assert self.release.wait(30)
        self.events.extend(events)

    def close(self) -> None:
        """Nothing to release."""


def test_input_queue_is_bounded_in_events_and_keeps_outcomes() -> None:
    """The input queue is bounded in events; outcomes push out intermediate events first.

    Span events of a live span are queued as they are added, as intermediate events: with
    the queue full they are dropped, while each outcome evicts the oldest queued start.
    """
    sink = StuckSink()
    config = StigmerConfig("127.0.0.1:1", CANARY, use_tls=False, max_queue_size=10)
    processor = StigmerSpanProcessor(sink, config=config)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("bound")
    workflow = tracer.start_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "bound"})
    assert sink.entered.wait(30)  # the sender is stuck in its first send: nothing drains
    context = trace.set_span_in_context(workflow)
    try:
        tasks = [
            tracer.start_span(f"t{n}", context=context, attributes={conv.TASK_NAME: f"t{n}"})
            for n in range(10)
        ]
        assert not processor.stats().dropped  # ten starts: exactly the bound
        busy = tracer.start_span("busy", context=context, attributes={conv.TASK_NAME: "busy"})
        assert processor.stats().dropped == {"queue_full": 1}  # an intermediate event over it
        busy.end()  # an outcome pushes the oldest start out
        for span in tasks[:3]:
            for step in range(4):
                span.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: step * 25})
            # Progress over the bound is dropped; the outcome evicts the oldest start.
            span.end()
        workflow.end()
    finally:
        sink.release.set()
    assert processor.force_flush(30_000)
    delivered = [(e.event_type, e.task_name) for e in sink.events]
    assert delivered == [
        ("workflow_started", ""),
        *[("task_started", f"t{n}") for n in range(5, 10)],
        ("task_completed", "busy"),
        ("task_completed", "t0"),
        ("task_completed", "t1"),
        ("task_completed", "t2"),
        ("workflow_completed", ""),
    ]
    stats = processor.stats()
    assert stats.sent == 11
    # 29 events in all: every one is either delivered or counted as dropped.
    assert stats.dropped == {"queue_full": 18}
    processor.shutdown(1_000)
