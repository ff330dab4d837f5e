"""Property tests of the mapping: any span shape maps without raising to valid, bounded protos."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanContext, StatusCode

from otel_stigmer import conventions as conv
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.mapping import (
    MAX_ID_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_METADATA_ENTRIES,
    MAX_NAME_CHARS,
    MAX_STACK_TRACE_CHARS,
    SpanLike,
    ended_events,
    started_events,
)
from otel_stigmer.sequencing import Sequencer

#: An event holds at most ~117 000 characters of text (see the MAX_* limits), at most
#: 4 bytes each in UTF-8: well below this, and far below gRPC's 4 MiB message limit.
MAX_EVENT_BYTES = 512 * 1024
INT64_MAX = 2**63 - 1

_ANY_CHAR = st.characters(codec=None, blacklist_categories=())
_TEXT = st.text(_ANY_CHAR, max_size=40) | st.sampled_from(["", "x" * 5000, "\x00\x1b\n", "🙂‍↔️"])
_KEYS = st.sampled_from(
    [
        conv.WORKFLOW_EXECUTION_ID,
        conv.WORKFLOW_NAME,
        conv.TASK_NAME,
        conv.TASK_ATTEMPT,
        conv.ERROR_CODE,
        conv.STATUS,
        conv.PROGRESS,
        conv.MESSAGE,
        conv.EVENT_TYPE,
        "exception.type",
        "exception.message",
        "exception.stacktrace",
        conv.METADATA_PREFIX + "k",
        conv.METADATA_PREFIX,
    ]
) | st.text(_ANY_CHAR, max_size=20).map(lambda k: conv.METADATA_PREFIX + k)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | _TEXT
    | st.binary(max_size=40)
    | st.sampled_from(["workflow_started", "task_completed", "workflow_failed", "cancelled"])
)
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner), max_leaves=8
)
_ATTRIBUTES = st.none() | st.dictionaries(_KEYS, _VALUES, max_size=8)
_TIMES = st.none() | st.integers(min_value=-(2**80), max_value=2**80)
_EVENT_NAMES = st.sampled_from(
    [
        "progress",
        "exception",
        "task_retry",
        "task_progress",
        "workflow_paused",
        "workflow_resumed",
        "workflow_completed",
        "task_started",
    ]
) | st.text(_ANY_CHAR, max_size=20)


@dataclass(frozen=True)
class FakeEvent:
    """A span event of any shape."""

    name: str
    timestamp: int | None
    attributes: Any


@dataclass(frozen=True)
class FakeStatus:
    """A span status of any shape."""

    status_code: StatusCode
    description: str | None


@dataclass(frozen=True)
class FakeSpan:
    """A span of any shape (what another SDK or a custom exporter may hand over)."""

    name: str
    context: SpanContext | None
    parent: SpanContext | None
    start_time: int | None
    end_time: int | None
    attributes: Any
    events: Sequence[FakeEvent] = field(default_factory=tuple)
    status: FakeStatus = FakeStatus(StatusCode.UNSET, None)


_CONTEXTS = st.none() | st.builds(
    SpanContext,
    trace_id=st.integers(min_value=0, max_value=2**128 - 1),
    span_id=st.integers(min_value=0, max_value=2**64 - 1),
    is_remote=st.booleans(),
)
_EVENTS = st.lists(
    st.builds(
        FakeEvent,
        name=_EVENT_NAMES,
        timestamp=_TIMES,
        attributes=_ATTRIBUTES,
    ),
    max_size=5,
)


@st.composite
def spans(draw: st.DrawFn) -> FakeSpan:
    """Spans with a Stigmer role most of the time, and hostile everything."""
    attributes = draw(_ATTRIBUTES)
    if attributes is not None and draw(st.booleans()):
        attributes[conv.WORKFLOW_EXECUTION_ID] = draw(_VALUES)
    return FakeSpan(
        name=draw(_TEXT),
        context=draw(_CONTEXTS),
        parent=draw(_CONTEXTS),
        start_time=draw(_TIMES),
        end_time=draw(_TIMES),
        attributes=attributes,
        events=draw(_EVENTS),
        status=FakeStatus(draw(st.sampled_from(list(StatusCode))), draw(st.none() | _TEXT)),
    )


def _check(event: WorkflowProgressEvent) -> None:
    data = event.SerializeToString()
    assert len(data) <= MAX_EVENT_BYTES
    assert WorkflowProgressEvent.FromString(data) == event
    assert len(event.workflow_execution_id) <= MAX_ID_CHARS
    assert len(event.workflow_name) <= MAX_NAME_CHARS
    assert len(event.task_name) <= MAX_NAME_CHARS
    assert len(event.message) <= MAX_MESSAGE_CHARS
    assert len(event.error.message) <= MAX_MESSAGE_CHARS
    assert len(event.error.stack_trace) <= MAX_STACK_TRACE_CHARS
    assert len(event.metadata) <= MAX_METADATA_ENTRIES + 1
    assert 0 <= event.task_progress <= 100
    assert event.event_id
    assert event.event_type
    assert event.status


@settings(
    max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(span=spans())
def test_any_span_maps_to_valid_bounded_events(span: FakeSpan) -> None:
    """Start and end of any span never raise and yield valid, size-bounded events."""
    hostile = cast("SpanLike", span)  # on purpose outside the declared types
    for event in [*started_events(hostile), *ended_events(hostile)]:
        _check(event)


@settings(
    max_examples=100, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(batch=st.lists(spans(), min_size=1, max_size=6))
def test_sequence_numbers_stay_valid_and_increasing(batch: list[FakeSpan]) -> None:
    """Numbering events of any times never raises; numbers rise strictly per execution."""
    sequencer = Sequencer()
    last: dict[str, int] = {}
    for span in batch:
        hostile = cast("SpanLike", span)
        for event in [*started_events(hostile), *ended_events(hostile)]:
            sequencer.assign(event)
            _check(event)
            number = event.sequence_number
            assert 0 < number <= INT64_MAX
            assert number > last.get(event.workflow_execution_id, 0)
            last[event.workflow_execution_id] = number
