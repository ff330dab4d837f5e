"""Records carry a snapshot of plain values, never the SDK span; batches reuse stored bytes."""

from __future__ import annotations

import gc
import sys
import threading
import weakref
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.trace import Status, StatusCode

from otel_stigmer import conventions as conv
from otel_stigmer._wire import encode_batch
from otel_stigmer.events import EncodedEvents, ReportProgressBatchRequest, WorkflowProgressEvent
from otel_stigmer.mapping import added_event, ended_events, started_events
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.records import (
    EVENT,
    OUTCOME,
    START,
    Record,
    event_snapshot,
    pack,
    snapshot,
    unpack,
)


class _Ended(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _ended_spans() -> list[ReadableSpan]:
    """A workflow, a task with progress, metadata, a retry and an exception, and a marker."""
    provider = TracerProvider()
    collected = _Ended()
    provider.add_span_processor(collected)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span(
        "wf", attributes={conv.WORKFLOW_EXECUTION_ID: "wf-1", "stigmer.metadata.team": "ops"}
    ):
        with tracer.start_as_current_span(
            "fetch",
            attributes={
                conv.TASK_NAME: "fetch",
                conv.WORKFLOW_EXECUTION_ID: "wf-1",
                conv.WORKFLOW_NAME: "wf",
                conv.TASK_ATTEMPT: 2,
            },
        ) as task:
            task.add_event("progress", {conv.PROGRESS: 40, conv.MESSAGE: "ingesting"})
            task.add_event("noise")
            task.add_event("task_retry", {"exception.type": "IOError"})
            task.record_exception(ValueError("bad row"))
            task.set_status(Status(StatusCode.ERROR, "bad row"))
        with tracer.start_as_current_span(
            "pause",
            attributes={conv.WORKFLOW_EXECUTION_ID: "wf-1", conv.EVENT_TYPE: "workflow_paused"},
        ):
            pass
    provider.shutdown()
    return collected.spans


def _rendered(events: Sequence[WorkflowProgressEvent]) -> list[bytes]:
    return [event.SerializeToString(deterministic=True) for event in events]


def test_a_snapshot_maps_to_the_same_events_as_its_span() -> None:
    """Start, every span event, the outcome and the full end map byte-identically."""
    spans = _ended_spans()
    assert len(spans) == 3
    for span in spans:
        assert _rendered(started_events(snapshot(span, "exception"))) == _rendered(
            started_events(span)
        )
        assert _rendered(ended_events(snapshot(span, "all"))) == _rendered(ended_events(span))
        assert _rendered(ended_events(snapshot(span, "exception"), span_events=False)) == (
            _rendered(ended_events(span, span_events=False))
        )
        for index, span_event in enumerate(span.events):
            assert _rendered(added_event(snapshot(span), event_snapshot(span_event), index)) == (
                _rendered(added_event(span, span_event, index))
            )
    task_events = ended_events(snapshot(spans[0], "all"))
    assert [e.event_type for e in task_events] == ["task_progress", "task_retry", "task_failed"]
    assert task_events[-1].error.code.endswith("ValueError")


def test_an_outcome_snapshot_keeps_only_the_last_exception() -> None:
    """The outcome of a span whose events went out live carries no other span event."""
    task = _ended_spans()[0]
    kept = snapshot(task, "exception").events
    assert [event.name for event in kept] == ["exception"]
    assert kept[0].attributes["exception.message"] == "bad row"
    assert snapshot(task).events == ()


class _Stuck:
    """A sink that blocks every send until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.events: list[WorkflowProgressEvent] = []

    def send(self, events: Sequence[WorkflowProgressEvent]) -> None:
        assert self.release.wait(60)
        self.events.extend(events)

    def close(self) -> None:
        self.release.set()


def test_a_packed_record_unpacks_equal_and_is_nothing_the_collector_scans() -> None:
    """Every kind of record survives pack/unpack unchanged; packed records are bytes, so a
    dict of them by number is not even tracked, where a dict of records is."""
    spans = {span.name: span for span in _ended_spans()}
    workflow, task, marker = spans["wf"], spans["fetch"], spans["pause"]
    progress = next(event for event in task.events if event.name == "progress")
    records = [
        Record(START, snapshot(workflow), False),
        Record(EVENT, snapshot(task), False, 1, event_snapshot(progress), 0),
        Record(OUTCOME, snapshot(task, "exception"), True),
        Record.ended(snapshot(task, "all")),
        Record(START, snapshot(marker, "exception"), False),
    ]
    packed = [pack(record) for record in records]
    assert [unpack(item) for item in packed if item is not None] == records
    assert pack(Record(START, workflow, False)) is None  # an SDK span stays as it is
    queue = dict(enumerate(packed))
    assert not gc.is_tracked(queue)
    assert gc.is_tracked(dict(enumerate(records)))


def test_queued_records_do_not_keep_spans_alive() -> None:
    """While delivery is stuck, ended spans are freed; their events are still delivered."""
    sink = _Stuck()
    processor = StigmerSpanProcessor(sink)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    refs = []
    with tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "wf-2"}):
        for i in range(50):
            with tracer.start_as_current_span("step", attributes={conv.TASK_NAME: "step"}) as s:
                s.add_event("progress", {conv.PROGRESS: i})
                refs.append(weakref.ref(s))
        del s
    gc.collect()
    assert [ref for ref in refs if ref() is not None] == []
    sink.release.set()
    assert processor.force_flush(30_000)
    types = [event.event_type for event in sink.events]
    assert types.count("task_completed") == 50
    assert types.count("task_progress") == 50
    assert sink.events[-1].event_type == "workflow_completed"
    provider.shutdown()


def test_a_snapshot_is_small() -> None:
    """A plain task's snapshot, its attribute dict included, stays well under 1 KiB."""
    task = _ended_spans()[0]
    snap = snapshot(task, "exception")
    size = sys.getsizeof(snap) + sys.getsizeof(snap.attributes)
    assert size < 1024


def test_a_batch_request_is_the_stored_events_concatenated() -> None:
    """encode_batch equals the request's deterministic serialization, byte for byte."""
    events = ended_events(snapshot(_ended_spans()[0], "all"))
    long_one = WorkflowProgressEvent(workflow_execution_id="x", message="m" * 20_000)
    for batch in ([], events[:1], events, [*events, long_one]):
        payloads = [event.SerializeToString(deterministic=True) for event in batch]
        expected = ReportProgressBatchRequest(events=batch).SerializeToString(deterministic=True)
        assert encode_batch(payloads) == expected
        encoded = EncodedEvents(payloads)
        assert len(encoded) == len(batch)
        assert list(encoded) == list(batch)
        assert encoded[1:] == list(batch[1:])
