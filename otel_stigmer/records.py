"""What the calling thread hands to the delivery pipeline: a span and what happened to it.

A :class:`Record` is cheap to make (no mapping on the business thread); the sender
thread turns it into progress events with :func:`map_record`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

from opentelemetry.trace import SpanContext
from opentelemetry.util.types import Attributes

from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.mapping import SpanLike, added_event, ended_events, started_events

__all__ = ["END", "EVENT", "OUTCOME", "START", "Record", "map_record", "outcome_of"]

_log = logging.getLogger("otel_stigmer.delivery")

#: ``*_started``, or the one event of a marker span.
START = 0
#: One span event added to a live span.
EVENT = 1
#: An ended span: its span events, then its outcome (spans seen only when they end).
END = 2
#: An ended span whose span events were reported live: its outcome only.
OUTCOME = 3


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


def outcome_of(record: Record) -> Record:
    """The record of an ended span without its span events (its outcome only).

    Queued in place of a span whose span events had to be dropped, so the memory the
    span and its events hold is released at once.
    """
    span = record.span
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
