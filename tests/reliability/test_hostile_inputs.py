"""Hostile input catalogue: each case has one defined behaviour (see the README, "Reliability").

Span-level cases feed spans to the live processor (SDK spans, or ``ReadableSpan`` objects
built by hand, which skip the SDK's attribute checks as a foreign exporter's spans may)
and read what reaches an in-memory sink; receiver-level cases point the pipeline at a
receiver that misbehaves, then at the reference receiver on the same port.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.trace import SpanContext, Status, StatusCode

from otel_stigmer import StigmerConfig, configure
from otel_stigmer import conventions as conv
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.mapping import (
    MAX_ID_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_METADATA_ENTRIES,
    MAX_METADATA_VALUE_CHARS,
    MAX_STACK_TRACE_CHARS,
    TRUNCATION_MARKER,
)
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.records import START, Record
from otel_stigmer.sinks import MemorySink
from otel_stigmer.testing import StigmerTestServer

from .hostile_receiver import GarbageReceiver, RawSocketReceiver
from .support import CANARY, FAST, assert_exactly_once_in_order, run_workflows, wait_until

T0 = 1_760_000_000_000_000_000  # ns
EMPTY = Resource.get_empty()
TEN_MB = 10 * 1024 * 1024
_span_ids = iter(range(1, 1 << 62))


@pytest.fixture(autouse=True)
def mapping_never_fails(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No case may make the pipeline fail to map a span or hit an internal error."""
    yield
    for record in [*caplog.get_records("call"), *caplog.records]:
        text = record.getMessage()
        assert "could not map" not in text, text
        assert "internal error" not in text, text


def _span(
    attributes: dict[str, Any] | None,
    *,
    name: str = "wf",
    events: Sequence[Event] = (),
    status: Status | None = None,
    start: int | None = T0,
    end: int | None = T0 + 1_000_000,
) -> ReadableSpan:
    context = SpanContext(0xABC, next(_span_ids), is_remote=False)
    return ReadableSpan(
        name,
        context=context,
        resource=EMPTY,
        attributes=attributes,  # hostile on purpose: not checked by the SDK here
        events=events,
        status=status or Status(StatusCode.UNSET),
        start_time=start,
        end_time=end,
    )


def _wf(**extra: Any) -> dict[str, Any]:
    return {conv.WORKFLOW_EXECUTION_ID: "hostile", **extra}


def _deliver(*spans: ReadableSpan, starts: bool = False) -> list[WorkflowProgressEvent]:
    """Ends (and with ``starts``, starts) of ``spans`` through the live pipeline."""
    sink = MemorySink()
    processor = StigmerSpanProcessor(sink)
    for span in spans:
        if starts:
            processor.sender.submit(Record(START, span, False))
        processor.on_end(span)
    assert processor.force_flush(10_000)
    processor.shutdown(1_000)
    return sink.events


def _only(events: list[WorkflowProgressEvent]) -> WorkflowProgressEvent:
    assert len(events) == 1, [e.event_type for e in events]
    return events[0]


def _progress(value: Any) -> WorkflowProgressEvent:
    span = _span(_wf(), events=[Event(conv.PROGRESS_EVENT, {conv.PROGRESS: value}, T0 + 1)])
    events = _deliver(span)
    assert [e.event_type for e in events] == ["workflow_progress", "workflow_completed"]
    return events[0]


# ---- strings -------------------------------------------------------------------------


def test_h01_non_utf8_bytes_become_replacement_characters() -> None:
    """H01: bytes that are not UTF-8 arrive with U+FFFD in place of the bad bytes."""
    event = _only(_deliver(_span(_wf(**{conv.METADATA_PREFIX + "raw": b"ok\xff\xfe"}))))
    assert event.metadata["raw"] == "ok\ufffd\ufffd"


def test_h02_lone_surrogates_are_replaced() -> None:
    """H02: a str with a lone surrogate (not encodable) is sent with '?' in its place."""
    event = _only(_deliver(_span(_wf(**{conv.MESSAGE: "a\ud800b"}), name="x\udfffy")))
    assert event.message == "a?b"
    assert event.workflow_name == "x?y"


def test_h03_ten_megabyte_attribute_is_cut_and_marked() -> None:
    """H03: a 10 MB metadata value is cut to MAX_METADATA_VALUE_CHARS with a marker."""
    event = _only(_deliver(_span(_wf(**{conv.METADATA_PREFIX + "blob": "x" * TEN_MB}))))
    value = event.metadata["blob"]
    assert len(value) == MAX_METADATA_VALUE_CHARS
    assert TRUNCATION_MARKER in value
    assert value.endswith(f"{TEN_MB - MAX_METADATA_VALUE_CHARS} chars]")


def test_h04_ten_megabyte_message_is_cut() -> None:
    """H04: a 10 MB message is cut to MAX_MESSAGE_CHARS."""
    event = _only(_deliver(_span(_wf(**{conv.MESSAGE: "m" * TEN_MB}))))
    assert len(event.message) == MAX_MESSAGE_CHARS
    assert event.ByteSize() < 64 * 1024


def test_h05_ten_megabyte_execution_id_is_cut() -> None:
    """H05: a 10 MB execution id is cut to MAX_ID_CHARS (ids must differ in that prefix)."""
    span = _span({conv.WORKFLOW_EXECUTION_ID: "e" * TEN_MB})
    event = _only(_deliver(span))
    assert len(event.workflow_execution_id) == MAX_ID_CHARS


def test_h06_one_megabyte_stack_trace_is_cut() -> None:
    """H06: a 1 MB stack trace is cut to MAX_STACK_TRACE_CHARS; the failure is still reported."""
    exception = Event(
        "exception",
        {"exception.type": "E", "exception.message": "boom", "exception.stacktrace": "s" * 2**20},
        T0 + 1,
    )
    span = _span(_wf(), events=[exception], status=Status(StatusCode.ERROR))
    event = _only(_deliver(span))
    assert event.event_type == "workflow_failed"
    assert len(event.error.stack_trace) == MAX_STACK_TRACE_CHARS
    assert (event.error.code, event.error.message) == ("E", "boom")


def test_h07_control_characters_and_emoji_are_kept_verbatim() -> None:
    """H07: control characters, emoji and RTL text in names arrive unchanged."""
    name = "wf\x00\x1b[31m\n\t🙂‍↔️ שלום"
    event = _only(_deliver(_span(_wf(**{conv.WORKFLOW_NAME: name}))))
    assert event.workflow_name == name


# ---- values --------------------------------------------------------------------------


def test_h08_nan_progress_is_reported_as_invalid() -> None:
    """H08: NaN progress leaves task_progress at 0 and records the raw value in metadata."""
    event = _progress(float("nan"))
    assert event.task_progress == 0
    assert event.metadata["stigmer.progress.invalid"] == "nan"


def test_h09_infinite_progress_is_reported_as_invalid() -> None:
    """H09: infinite progress is treated like NaN."""
    assert _progress(float("inf")).metadata["stigmer.progress.invalid"] == "inf"


def test_h10_negative_progress_is_clamped_to_zero() -> None:
    """H10: negative progress is reported as 0."""
    assert _progress(-5).task_progress == 0


def test_h11_progress_over_100_is_clamped() -> None:
    """H11: progress above 100 is reported as 100."""
    assert _progress(1e300).task_progress == 100


def test_h12_progress_as_text_is_parsed_or_flagged() -> None:
    """H12: numeric text is parsed ("42.9" -> 42); other text and booleans are flagged."""
    assert _progress("42.9").task_progress == 42
    assert _progress("half").metadata["stigmer.progress.invalid"] == "half"
    assert _progress(True).metadata["stigmer.progress.invalid"] == "True"


def test_h13_none_values_become_empty_strings() -> None:
    """H13: None attribute values map to "" (and a None execution id means no role)."""
    event = _only(_deliver(_span(_wf(**{conv.METADATA_PREFIX + "n": None, conv.MESSAGE: None}))))
    assert event.metadata["n"] == ""
    assert event.message == "workflow wf completed"
    assert _deliver(_span({conv.WORKFLOW_EXECUTION_ID: None})) == []


def test_h14_nested_and_huge_sequences_are_rendered_bounded() -> None:
    """H14: nested sequences render as text; a 100k-item sequence stays within the bound."""
    attributes = _wf(
        **{
            conv.METADATA_PREFIX + "nested": [[1, 2], [3, [4, None]]],
            conv.METADATA_PREFIX + "huge": list(range(100_000)),
        }
    )
    event = _only(_deliver(_span(attributes)))
    assert event.metadata["nested"] == "[[1, 2], [3, [4, ]]]"
    assert len(event.metadata["huge"]) <= MAX_METADATA_VALUE_CHARS


def test_h15_ten_thousand_metadata_attributes_are_capped() -> None:
    """H15: 10 000 metadata attributes: MAX_METADATA_ENTRIES kept and a truncation flag."""
    attributes = _wf(**{f"{conv.METADATA_PREFIX}k{n}": n for n in range(10_000)})
    event = _only(_deliver(_span(attributes)))
    assert len(event.metadata) == MAX_METADATA_ENTRIES + 1
    assert event.metadata["stigmer.metadata.truncated"] == "true"


def test_h16_huge_attempt_number_is_clamped_to_int32() -> None:
    """H16: an attempt number beyond int32 is clamped, not an error."""
    attributes = _wf(**{conv.TASK_NAME: "t", conv.TASK_ATTEMPT: 2**70})
    assert _only(_deliver(_span(attributes))).attempt == 2**31 - 1


def test_h17_non_string_execution_id_is_rendered() -> None:
    """H17: an integer execution id is reported as its text."""
    assert _only(_deliver(_span({conv.WORKFLOW_EXECUTION_ID: 42}))).workflow_execution_id == "42"


# ---- identity and roles --------------------------------------------------------------


def test_h18_missing_or_empty_execution_id_reports_nothing() -> None:
    """H18: a workflow or task span without an execution id (or with "") is not reported."""
    assert _deliver(_span({conv.WORKFLOW_NAME: "w"}), _span({conv.TASK_NAME: "t"})) == []
    assert _deliver(_span({conv.WORKFLOW_EXECUTION_ID: ""})) == []
    assert _deliver(_span(None)) == []


def test_h19_same_execution_under_two_workflow_names() -> None:
    """H19: one execution id under two names: both reported as given, numbers still rising."""
    first = _span({conv.WORKFLOW_EXECUTION_ID: "dup", conv.WORKFLOW_NAME: "alpha"})
    second = _span({conv.WORKFLOW_EXECUTION_ID: "dup", conv.WORKFLOW_NAME: "beta"})
    events = _deliver(first, second, starts=True)
    assert [(e.event_type, e.workflow_name) for e in events] == [
        ("workflow_started", "alpha"),
        ("workflow_completed", "alpha"),
        ("workflow_started", "beta"),
        ("workflow_completed", "beta"),
    ]
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(set(numbers))


def test_h20_unknown_marker_type_is_ignored() -> None:
    """H20: a marker span with an unknown event type reports nothing."""
    sink = MemorySink()
    processor = StigmerSpanProcessor(sink)
    processor.sender.submit(
        Record(START, _span(_wf(**{conv.EVENT_TYPE: "workflow_exploded"})), False)
    )
    assert processor.force_flush(10_000)
    assert sink.events == []
    processor.shutdown(1_000)


def test_h21_span_event_named_like_an_outcome_is_ignored() -> None:
    """H21: span events named workflow_completed / task_started never add a second outcome."""
    events = [Event("workflow_completed", {}, T0 + 1), Event("task_started", {}, T0 + 2)]
    assert [e.event_type for e in _deliver(_span(_wf(), events=events))] == ["workflow_completed"]


def test_h22_span_ended_twice_reports_one_outcome() -> None:
    """H22: ending a span twice reports its outcome once (the SDK ignores the second end)."""
    sink = MemorySink()
    provider = TracerProvider()
    processor = StigmerSpanProcessor(sink)
    provider.add_span_processor(processor)
    span = provider.get_tracer("t").start_span("wf", attributes=_wf())
    span.end()
    span.end()
    assert processor.force_flush(10_000)
    assert [e.event_type for e in sink.events] == ["workflow_started", "workflow_completed"]
    provider.shutdown()


def test_h23_spans_after_shutdown_are_counted_not_raised() -> None:
    """H23: spans that start or end after shutdown are dropped and counted, never raised."""
    sink = MemorySink()
    provider = TracerProvider()
    processor = StigmerSpanProcessor(sink)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    open_span = tracer.start_span("wf", attributes=_wf())
    processor.shutdown(1_000)
    open_span.end()
    with tracer.start_as_current_span("late", attributes=_wf()):
        pass
    assert processor.stats().dropped["after_shutdown"] == 3
    assert [e.event_type for e in sink.events] == ["workflow_started"]
    provider.shutdown()


def test_h24_unreadable_span_is_skipped_and_the_rest_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """H24: a span whose attributes raise on access is skipped; later spans still arrive."""

    class Exploding(ReadableSpan):
        @property
        def attributes(self) -> Any:
            raise RuntimeError("exploding attributes")

    sink = MemorySink()
    processor = StigmerSpanProcessor(sink)
    bad = Exploding("bad", context=SpanContext(1, 1, is_remote=False), resource=EMPTY)
    processor.sender.submit(Record(START, bad, False))
    processor.on_end(_span(_wf()))
    assert processor.force_flush(10_000)
    assert [e.event_type for e in sink.events] == ["workflow_completed"]
    skipped = [r for r in caplog.records if "could not map" in r.getMessage()]
    assert len(skipped) == 1
    caplog.clear()  # the one expected mapping failure
    processor.shutdown(1_000)


# ---- time and volume -----------------------------------------------------------------


def test_h25_extreme_sequence_counts_stay_strictly_increasing() -> None:
    """H25: 20 000 events of one execution, all at the same instant, get rising numbers."""
    spans = [_span(_wf(**{conv.TASK_NAME: f"t{n}"}), start=T0, end=T0) for n in range(10_000)]
    events = _deliver(*spans, starts=True)
    assert len(events) == 20_000
    numbers = [e.sequence_number for e in events]
    assert all(a < b for a, b in itertools.pairwise(numbers))


def test_h26_clock_going_backwards_keeps_order() -> None:
    """H26: a clock stepped back an hour: numbers keep rising in the order events happened."""
    hour = 3600 * 10**9
    spans = [_span(_wf(**{conv.TASK_NAME: f"t{n}"}), end=T0 - n * hour) for n in range(5)]
    numbers = [e.sequence_number for e in _deliver(*spans)]
    assert all(a < b for a, b in itertools.pairwise(numbers))


def test_h27_missing_zero_negative_and_far_future_times() -> None:
    """H27: None, 0, negative and year-3000+ times map; times are clamped to 1970..9999."""
    spans = [
        _span(_wf(), start=None, end=None),
        _span(_wf(), start=0, end=0),
        _span(_wf(), start=-(10**18), end=-(10**18)),
        _span(_wf(), start=2**100, end=2**100),
    ]
    events = _deliver(*spans)
    assert [e.timestamp_ms for e in events[:3]] == [0, 0, 0]
    assert events[3].timestamp_ms == 253_402_300_799_000
    numbers = [e.sequence_number for e in events]
    assert all(a < b for a, b in itertools.pairwise(numbers))


def test_h28_ten_thousand_span_events_on_one_span() -> None:
    """H28: a span with 10 000 progress events reports each of them, then its outcome."""
    events = [Event(conv.PROGRESS_EVENT, {conv.PROGRESS: n % 101}, T0 + n) for n in range(10_000)]
    delivered = _deliver(_span(_wf(), events=events))
    assert len(delivered) == 10_001
    assert delivered[-1].event_type == "workflow_completed"


def test_h29_concurrent_attribute_writes_never_break_mapping() -> None:
    """H29: attributes written by other threads while spans end never break delivery."""
    sink = MemorySink()
    provider = TracerProvider()
    processor = StigmerSpanProcessor(sink)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    stop = threading.Event()
    with tracer.start_as_current_span("wf", attributes=_wf()) as workflow:

        def scribble() -> None:
            n = 0
            while not stop.is_set():
                workflow.set_attribute(f"{conv.METADATA_PREFIX}k{n % 50}", n)
                n += 1

        writer = threading.Thread(target=scribble)
        writer.start()
        try:
            for n in range(200):
                with tracer.start_as_current_span(f"t{n}", attributes={conv.TASK_NAME: f"t{n}"}):
                    pass
        finally:
            stop.set()
            writer.join()
    assert processor.force_flush(10_000)
    assert len(sink.events) == 2 + 2 * 200
    provider.shutdown()


# ---- through the reference receiver ------------------------------------------------


def test_h30_hostile_strings_survive_the_reference_receiver() -> None:
    """H30: 10 MB values, control characters and emoji go over gRPC and are stored."""
    with StigmerTestServer(api_key=CANARY) as server:
        provider = TracerProvider()
        pipeline = configure(
            StigmerConfig.from_env(server.env()), tracer_provider=provider, retry_policy=FAST
        )
        name = "wf\x00\x1b\n🙂"
        attributes = {
            conv.WORKFLOW_EXECUTION_ID: "hostile-wire",
            conv.WORKFLOW_NAME: name,
            conv.MESSAGE: "m" * TEN_MB,
            conv.METADATA_PREFIX + "blob": "b" * TEN_MB,
        }
        with provider.get_tracer("t").start_as_current_span("wf", attributes=attributes):
            pass
        assert pipeline.force_flush(30_000)
        stored = server.events("hostile-wire")
        assert [(e.event_type, e.workflow_name) for e in stored] == [
            ("workflow_started", name),
            ("workflow_completed", name),
        ]
        assert len(stored[1].message) == MAX_MESSAGE_CHARS
        provider.shutdown()


def _hostile_pipeline(endpoint: str, provider: TracerProvider) -> Any:
    env = {
        "STIGMER_SERVICE_ENDPOINT": endpoint,
        "STIGMER_SERVICE_API_KEY": CANARY,
        "STIGMER_SERVICE_USE_TLS": "false",
        "STIGMER_SERVICE_TIMEOUT": "1",
    }
    return configure(StigmerConfig.from_env(env), tracer_provider=provider, retry_policy=FAST)


def _recover_on(port: int, pipeline: Any, expected: dict[str, list[tuple[str, str]]]) -> None:
    """The reference receiver takes over the port: everything kept is delivered once."""
    with StigmerTestServer(api_key=CANARY, port=port) as server:
        assert pipeline.force_flush(60_000), pipeline.stats().as_dict()
        assert_exactly_once_in_order(server.events(), expected)
    assert not pipeline.stats().dropped


def test_h31_receiver_answering_garbage() -> None:
    """H31: answers that are no protobuf count as failed calls; events are kept and retried."""
    provider = TracerProvider()
    with GarbageReceiver() as receiver:
        port = receiver.port
        pipeline = _hostile_pipeline(receiver.endpoint, provider)
        expected = run_workflows(provider.get_tracer("t"), "garbage", workflows=2, tasks=2)
        assert wait_until(lambda: pipeline.stats().failed_calls >= 2, timeout=30)
        assert receiver.calls >= 2
        assert pipeline.stats().queue_depth == 16
    _recover_on(port, pipeline, expected)
    provider.shutdown()


@pytest.mark.parametrize("mode", ["close", "http1"])
def test_h32_receiver_dropping_the_connection_mid_call(mode: str) -> None:
    """H32: a peer that closes mid-call or speaks HTTP/1.1: retried, then delivered once."""
    provider = TracerProvider()
    with RawSocketReceiver(mode) as receiver:
        port = receiver.port
        pipeline = _hostile_pipeline(receiver.endpoint, provider)
        expected = run_workflows(provider.get_tracer("t"), mode, workflows=2, tasks=2)
        assert wait_until(lambda: pipeline.stats().failed_calls >= 2, timeout=30)
        assert receiver.connections >= 1
        assert pipeline.stats().queue_depth == 16
    _recover_on(port, pipeline, expected)
    provider.shutdown()


def test_h33_receiver_that_never_answers(caplog: pytest.LogCaptureFixture) -> None:
    """H33: a silent peer: calls end at the timeout, spans never wait, shutdown keeps time."""
    provider = TracerProvider()
    with RawSocketReceiver("silent") as receiver:
        pipeline = _hostile_pipeline(receiver.endpoint, provider)
        started = time.monotonic()
        run_workflows(provider.get_tracer("t"), "silent", workflows=2, tasks=2)
        assert time.monotonic() - started < 5  # the spans did not wait for the peer
        assert wait_until(lambda: pipeline.stats().failed_calls >= 1, timeout=30)
        started = time.monotonic()
        pipeline.shutdown(500)
        assert time.monotonic() - started < 5
        assert pipeline.stats().dropped["shutdown"] == 16
    assert any("DEADLINE_EXCEEDED" in r.getMessage() for r in caplog.records)
    provider.shutdown()


def test_h34_stigmer_attributes_on_unrelated_spans_only() -> None:
    """H34: spans from other instrumentations (no Stigmer attributes) never reach the sink."""
    sink = MemorySink()
    provider = TracerProvider()
    processor = StigmerSpanProcessor(sink)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    with (
        tracer.start_as_current_span("GET /", attributes={"http.method": "GET"}),
        tracer.start_as_current_span("task-ish", attributes={conv.TASK_NAME: "orphan"}),
    ):
        pass
    assert processor.force_flush(10_000)
    assert sink.events == []
    assert trace.get_current_span() is trace.INVALID_SPAN
    provider.shutdown()
