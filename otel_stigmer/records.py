"""What the calling thread hands to the delivery pipeline: a span and what happened to it.

A :class:`Record` is cheap to make (no mapping on the business thread); the sender
thread turns it into progress events with :func:`map_record`. The live processor queues
a :class:`SpanSnapshot` (plain values copied from the SDK span) rather than the span, so
a span dies when it ends, whatever the sender's backlog: a queued span kept some 3 KB and
a dozen objects alive that the garbage collector scanned again and again.
"""

from __future__ import annotations

import logging
import marshal
from dataclasses import dataclass
from typing import Any, NamedTuple

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.trace import SpanContext, Status, StatusCode
from opentelemetry.util.types import Attributes

from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.mapping import SpanLike, added_event, ended_events, started_events
from otel_stigmer.values import attributes_view

__all__ = [
    "END",
    "EVENT",
    "OUTCOME",
    "START",
    "EventSnapshot",
    "Record",
    "SpanSnapshot",
    "event_snapshot",
    "map_record",
    "outcome_of",
    "pack",
    "snapshot",
    "unpack",
]

_log = logging.getLogger("otel_stigmer.delivery")

#: ``*_started``, or the one event of a marker span.
START = 0
#: One span event added to a live span.
EVENT = 1
#: An ended span: its span events, then its outcome (spans seen only when they end).
END = 2
#: An ended span whose span events were reported live: its outcome only.
OUTCOME = 3

#: The SDK's span classes, whose private fields :func:`snapshot` reads directly.
_SDK_SPANS = frozenset({ReadableSpan, SdkSpan, *SdkSpan.__subclasses__()})
#: Builds a named tuple from its values in C (its ``__new__`` is Python).
_new = tuple.__new__
#: ``StatusCode`` members by value (a snapshot keeps the int).
_STATUS_CODES = {code.value: code for code in StatusCode}


class Record(NamedTuple):
    """One queued record.

    Attributes:
        kind: :data:`START`, :data:`EVENT`, :data:`END` or :data:`OUTCOME`.
        span: The span (an SDK span or anything :class:`SpanLike`).
        terminal: Whether it ends a workflow or task (kept first when queues are full).
        weight: How many events it can become; the input queue is bounded by this sum.
        span_event: The span event of an :data:`EVENT` record.
        position: Its index among the span's span events (part of the event id).
    """

    kind: int
    span: SpanLike
    terminal: bool
    weight: int = 1
    span_event: Any = None
    position: int = 0

    @classmethod
    def ended(cls, span: SpanLike) -> Record:
        """An :data:`END` record, weighing its span events plus the outcome."""
        try:
            weight = 1 + len(span.events)
        except Exception:  # an unreadable span still takes one slot
            weight = 1
        return cls(END, span, True, weight)


class EventSnapshot(NamedTuple):
    """A span event's plain values (what the mapping reads)."""

    name: str
    timestamp: int
    attributes: dict[str, Any]


class SpanSnapshot(NamedTuple):
    """The plain values of a span that the mapping reads; satisfies :class:`SpanLike`.

    A tuple of ids, times, a private attribute dict and the span events that matter, so a
    queued record holds a few hundred bytes and, once the collector has seen it, nothing
    it has to scan again: every field is a plain value (the status code is the
    ``StatusCode`` member's int value, since an enum member is an object the collector
    tracks, and a tuple holding one stays tracked).
    """

    name: str
    trace_id: int | None
    span_id: int
    parent_span_id: int | None
    start_time: int | None
    end_time: int | None
    attributes: dict[str, Any]
    events: tuple[EventSnapshot, ...] = ()
    status_code: int = 0
    status_description: str | None = None
    dropped_events: int = 0

    @property
    def context(self) -> SpanContext | None:
        """The span's context (ids only), if it had one."""
        if self.trace_id is None:
            return None
        return SpanContext(self.trace_id, self.span_id, is_remote=False)

    @property
    def parent(self) -> SpanContext | None:
        """The parent's context (ids only), if any."""
        if self.parent_span_id is None:
            return None
        return SpanContext(self.trace_id or 0, self.parent_span_id, is_remote=False)

    @property
    def status(self) -> Status:
        """The span's status."""
        return Status(_STATUS_CODES[self.status_code], self.status_description)


def snapshot(span: Any, events: str = "") -> SpanSnapshot:
    """Copy what the mapping needs out of ``span``.

    Args:
        span: An SDK span, an SDK ``ReadableSpan`` or anything :class:`SpanLike`.
        events: ``""`` for no span events (a start), ``"exception"`` for the last
            recorded exception only (an outcome) or ``"all"`` (an ended span whose span
            events were not reported live).
    """
    if type(span) in _SDK_SPANS:  # its public properties each return one of these
        name, context, parent = span._name, span._context, span._parent
        start_time, end_time, status = span._start_time, span._end_time, span._status
    else:
        name, context, parent = span.name, span.context, span.parent
        start_time, end_time, status = span.start_time, span.end_time, span.status
    attributes = attributes_view(span)
    kept: tuple[EventSnapshot, ...] = ()
    dropped = 0
    if events:
        raw = getattr(span, "_events", None)
        span_events = raw if raw is not None else span.events
        if events == "all":
            kept = tuple(event_snapshot(event) for event in span_events)
            dropped = int(getattr(span, "dropped_events", 0) or 0)
        else:
            for event in reversed(span_events):
                if event.name == "exception":
                    kept = (event_snapshot(event),)
                    break
    copied = dict(attributes) if attributes else {}
    return _new(
        SpanSnapshot,
        (
            name,
            context.trace_id if context is not None else None,
            context.span_id if context is not None else 0,
            parent.span_id if parent is not None else None,
            start_time,
            end_time,
            copied,
            kept,
            status.status_code._value_ if status is not None else 0,
            status.description if status is not None else None,
            dropped,
        ),
    )


def event_snapshot(event: Any) -> EventSnapshot:
    return EventSnapshot(event.name, event.timestamp, dict(attributes_view(event) or {}))


def map_record(record: Record) -> list[WorkflowProgressEvent]:
    """The events of one record (none, logged, when the span cannot be read)."""
    try:
        if record.kind == START:
            return started_events(record.span)
        if record.kind == EVENT:
            return added_event(record.span, record.span_event, record.position)
        return ended_events(record.span, span_events=record.kind == END)
    except Exception:  # a span we cannot read must not stop delivery
        _log.exception("otel-stigmer could not map span %r", _span_name(record.span))
        return []


def pack(record: Record) -> bytes | None:
    """``record`` as bytes (``marshal``), for a long queue to hold; :func:`unpack` restores it.

    Bytes are nothing the garbage collector tracks or visits, where a queued record is
    three objects it scans on every full collection (named tuples such as :class:`Record`
    and :class:`SpanSnapshot` are never untracked), and a dict or deque holding a hundred
    thousand of anything costs a visit apiece. None when the record does not hold a
    snapshot, or holds a value ``marshal`` cannot write (it is then queued as it is).
    """
    span = record.span
    event = record.span_event
    if type(span) is not SpanSnapshot or not (event is None or type(event) is EventSnapshot):
        return None
    events = span.events
    values = tuple(span) if not events else (*span[:7], tuple(map(tuple, events)), *span[8:])
    plain: Any = (
        record.kind,
        values,
        record.terminal,
        record.weight,
        None if event is None else tuple(event),
        record.position,
    )
    try:
        return marshal.dumps(plain, 2)
    except ValueError:  # not an OTel attribute type
        return None


def unpack(packed: bytes) -> Record:
    """The :class:`Record` of a :func:`pack` ed one."""
    # Only bytes made by pack() in this process are ever read here.
    kind, values, terminal, weight, event, position = marshal.loads(packed)  # noqa: S302
    events = values[7]
    if events:
        events = tuple([_new(EventSnapshot, item) for item in events])
        values = (*values[:7], events, *values[8:])
    if event is not None:
        event = _new(EventSnapshot, event)
    return _new(Record, (kind, _new(SpanSnapshot, values), terminal, weight, event, position))


def outcome_of(record: Record) -> Record:
    """The record of an ended span without its span events (its outcome only).

    Queued in place of a span whose span events had to be dropped, so the memory the
    span and its events hold is released at once.
    """
    span = record.span
    if isinstance(span, SpanSnapshot):
        kept = tuple([event for event in span.events if event.name == "exception"][-1:])
        return Record(OUTCOME, span._replace(events=kept), record.terminal, 1)
    exceptions = [event for event in span.events if event.name == "exception"]
    slim = _Outcome(
        span.name,
        span.context,
        span.parent,
        span.start_time,
        span.end_time,
        span.attributes,
        tuple(exceptions[-1:]),
        span.status,
    )
    return Record(OUTCOME, slim, record.terminal, 1)


@dataclass(frozen=True)
class _Outcome:
    """What the outcome of an ended span needs: the span without its other span events."""

    name: str
    context: SpanContext | None
    parent: SpanContext | None
    start_time: int | None
    end_time: int | None
    attributes: Attributes
    events: tuple[Any, ...]
    status: Any


def _span_name(span: SpanLike) -> str:
    try:
        return span.name
    except Exception:
        return "?"
