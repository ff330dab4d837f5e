"""Records as marshal-able tuples and back (the process sender's pipe format). Pure unit tests."""

from __future__ import annotations

import marshal
from typing import Any, NamedTuple

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import StatusCode

from otel_stigmer import _frames
from otel_stigmer import conventions as conv
from otel_stigmer._sender_setup import (
    config_fields,
    config_from,
    retry_policy_fields,
    retry_policy_from,
)
from otel_stigmer.config import StigmerConfig
from otel_stigmer.record_codec import _converter, decode_record, encode_record, plain
from otel_stigmer.records import (
    EVENT,
    OUTCOME,
    START,
    Record,
    SpanSnapshot,
    event_snapshot,
    map_record,
    snapshot,
)
from otel_stigmer.retry import RetryPolicy


def _records() -> list[Record]:
    """One record of each kind, from real SDK spans (every snapshot field set)."""
    tracer = TracerProvider().get_tracer("codec")
    records: list[Record] = []
    with (
        tracer.start_as_current_span(
            "wf", attributes={conv.WORKFLOW_EXECUTION_ID: "wf-codec", conv.WORKFLOW_NAME: "w"}
        ),
        tracer.start_as_current_span(
            "t", attributes={conv.TASK_NAME: "t", "rows": (1, 2), "ratio": 0.5, "ok": True}
        ) as span,
    ):
        records.append(Record(START, snapshot(span), False))
        span.add_event("progress", {conv.PROGRESS: 40, conv.MESSAGE: "ünïcode"})
        event = event_snapshot(span.events[0])  # type: ignore[attr-defined]
        records.append(Record(EVENT, snapshot(span), False, 1, event, 0))
        try:
            raise ValueError("bad row")
        except ValueError as error:
            span.record_exception(error)
        span.set_status(StatusCode.ERROR, "bad row")
    records.append(Record(OUTCOME, snapshot(span, "exception"), True))
    records.append(Record.ended(snapshot(span, "all")))
    return records


def test_every_kind_of_record_round_trips_through_marshal_unchanged() -> None:
    """decode(marshal(encode(record))) equals the record and maps to the same events."""
    for record in _records():
        encoded = encode_record(record)
        back = decode_record(marshal.loads(marshal.dumps(encoded)))
        assert back == record
        assert type(back.span) is SpanSnapshot
        assert isinstance(back.span, SpanSnapshot)
        assert isinstance(record.span, SpanSnapshot)
        assert back.span.status_code == record.span.status_code
        assert [e.SerializeToString() for e in map_record(back)] == [
            e.SerializeToString() for e in map_record(record)
        ]


def test_a_span_that_is_not_a_snapshot_travels_as_its_snapshot() -> None:
    """An SDK span handed in directly is encoded as its snapshot, span events included."""
    tracer = TracerProvider().get_tracer("codec")
    with tracer.start_as_current_span("t", attributes={conv.TASK_NAME: "t"}) as span:
        span.add_event("progress", {conv.PROGRESS: 10})
    back = decode_record(encode_record(Record.ended(span)))  # type: ignore[arg-type]
    assert back.span == snapshot(span, "all")


def test_the_codec_follows_the_fields_of_its_named_tuples() -> None:
    """A field added at the end of a named tuple travels without a change to the codec."""

    class Wider(NamedTuple):
        name: str
        code: StatusCode
        added: int = 7

    encode = _converter(Wider, {"code": lambda code: code.value}, build=False)
    decode = _converter(Wider, {"code": StatusCode}, build=True)
    value = Wider("x", StatusCode.OK, 42)
    assert encode(value) == ("x", StatusCode.OK.value, 42)
    assert decode(marshal.loads(marshal.dumps(encode(value)))) == value


def test_values_marshal_cannot_write_become_text() -> None:
    """The slow path of a frame: unknown objects become their str, containers stay."""

    class Odd:
        def __str__(self) -> str:
            return "odd"

    value: Any = {"a": (1, Odd()), "b": [Odd()], "c": None}
    assert plain(value) == {"a": (1, "odd"), "b": ("odd",), "c": None}
    marshal.dumps(plain(value))


def test_frames_are_read_back_whole_across_short_reads() -> None:
    """Frames written back to back come out one message at a time, then None at the end."""
    import os  # noqa: PLC0415

    read, write = os.pipe()
    try:
        messages = [(_frames.RECORDS, [(1, 2)] * 3000), (_frames.FLUSH, 1, 500)]
        data = b"".join(_frames.frame(m) for m in messages)
        reader = _frames.FrameReader(read)
        os.set_blocking(write, True)
        import threading  # noqa: PLC0415

        writer = threading.Thread(target=_frames.write_all, args=(write, data))
        writer.start()
        assert reader.read() == (_frames.RECORDS, [(1, 2)] * 3000)
        assert reader.read() == (_frames.FLUSH, 1, 500)
        writer.join()
        os.close(write)
        write = -1
        assert reader.read() is None
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)


def test_config_and_retry_policy_round_trip_as_plain_values() -> None:
    """The child's first frame rebuilds the same config (as a thread sender) and policy."""
    config = StigmerConfig("127.0.0.1:9", "k-123", use_tls=False, sender="process")
    fields = config_fields(config)
    marshal.dumps(fields)
    rebuilt = config_from(marshal.loads(marshal.dumps(fields)))
    assert rebuilt.sender == "thread"
    assert (rebuilt.endpoint, rebuilt.api_key, rebuilt.use_tls) == ("127.0.0.1:9", "k-123", False)
    policy = RetryPolicy(initial_backoff=0.01, max_backoff=0.5)
    plain_policy = retry_policy_fields(policy)
    assert retry_policy_from(marshal.loads(marshal.dumps(plain_policy))) == policy
    assert retry_policy_from(retry_policy_fields(None)) is None


def test_the_childs_environment_has_no_key_and_no_auto_instrumentation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The key variables are left out, OpenTelemetry's sitecustomize is off the path."""
    from otel_stigmer.process_sender import child_environment  # noqa: PLC0415

    monkeypatch.setenv("STIGMER_SERVICE_API_KEY", "k-secret")
    monkeypatch.setenv("STIGMER_API_KEY", "k-secret")
    monkeypatch.setenv("STIGMER_SERVICE_ENDPOINT", "127.0.0.1:9")
    sitecustomize = "/x/site-packages/opentelemetry/instrumentation/auto_instrumentation"
    monkeypatch.setenv("PYTHONPATH", f"/app:{sitecustomize}")
    env = child_environment()
    assert "k-secret" not in "".join(env.values())
    assert env["STIGMER_SERVICE_ENDPOINT"] == "127.0.0.1:9"
    assert env["PYTHONPATH"].split(":")[0] == "/app"
    assert sitecustomize not in env["PYTHONPATH"]
    assert env["OTEL_SDK_DISABLED"] == "true"


def test_a_frame_with_a_value_marshal_cannot_write_goes_as_text() -> None:
    """One odd attribute value does not cost the frame: it travels as its str."""
    from otel_stigmer.process_sender import _records_frame  # noqa: PLC0415

    class Odd:
        def __str__(self) -> str:
            return "odd"

    data = _records_frame([(0, {"a": Odd(), "b": 1})])
    assert marshal.loads(data[4:]) == (_frames.RECORDS, [(0, {"a": "odd", "b": 1})])
