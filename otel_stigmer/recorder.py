"""From SDK span hooks to records: start, live span events, end (no delivery here)."""

from __future__ import annotations

from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_stigmer._guard import swallow_errors
from otel_stigmer.records import (
    EVENT,
    OUTCOME,
    START,
    Record,
    event_snapshot,
    snapshot,
)
from otel_stigmer.roles import Kind, claim_role, role_of
from otel_stigmer.span_events import watch_span_events
from otel_stigmer.values import attributes_view

__all__ = ["SpanRecorder"]

_NONE, _TASK, _MARKER = Kind.NONE, Kind.TASK, Kind.MARKER
_new = tuple.__new__  # builds a Record in C (its generated __new__ is Python)


class SpanRecorder(SpanProcessor):
    """Turns what happens to workflow and task spans into :class:`Record` s, live.

    ``on_start`` claims the span's role (inheriting the workflow identity onto task
    spans) and records the start; span events that map to Stigmer events are recorded
    as they are added; ``on_end`` records the outcome. Records hold a
    :class:`~otel_stigmer.records.SpanSnapshot`, never the span, so an ended span is
    freed at once however far delivery lags. Subclasses decide where records go
    (:meth:`_record`) and whether they are wanted right now (:meth:`_active`).
    """

    def __init__(self) -> None:
        self._watched: set[int] = set()

    def _record(self, record: Record) -> None:
        raise NotImplementedError

    def _active(self) -> bool:
        return True

    @swallow_errors(None)
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Record ``*_started`` and watch the span's events (enqueue only)."""
        attributes = attributes_view(span)
        if not attributes:
            return
        role = role_of(attributes)
        kind = role.kind
        if (kind is _TASK or kind is _MARKER) and not role.execution_id:
            role = claim_role(span, parent_context)  # inherits the workflow identity
        if kind is _NONE or kind is _MARKER or not role.execution_id or not self._active():
            return  # a marker span is reported when it ends, with its exception recorded
        self._record(_new(Record, (START, snapshot(span), False, 1, None, 0)))
        self._watched.add(span.context.span_id)
        watch_span_events(span, self._on_span_event)

    @swallow_errors(None)
    def _on_span_event(self, span: Span, span_event: Any, index: int) -> None:
        if self._active():
            event = event_snapshot(span_event)
            self._record(_new(Record, (EVENT, snapshot(span), False, 1, event, index)))

    @swallow_errors(None)
    def on_end(self, span: ReadableSpan) -> None:
        """Record the outcome, with the span events not reported live (enqueue only)."""
        role = role_of(attributes_view(span))
        context = span.context
        watched = False
        if context is not None and context.span_id in self._watched:
            self._watched.discard(context.span_id)
            watched = True
        kind = role.kind
        if kind is _NONE or not role.execution_id or not self._active():
            return
        if kind is _MARKER:  # one event, mapped as a start
            self._record(
                _new(Record, (START, snapshot(span, "exception"), role.terminal, 1, None, 0))
            )
        elif watched:
            self._record(_new(Record, (OUTCOME, snapshot(span, "exception"), True, 1, None, 0)))
        else:
            self._record(Record.ended(snapshot(span, "all")))
