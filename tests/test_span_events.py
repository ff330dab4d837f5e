"""Span events are seen as they are added: watchers live with their span, nowhere else."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from opentelemetry.sdk.trace import Span, TracerProvider

from otel_stigmer import span_events


def test_a_watched_span_reports_its_events_live_and_is_freed_after_it_ends() -> None:
    """A reported span event reaches the span's watchers with its index at once; ignored
    names do not; once the span is gone, nothing keeps it or its watchers alive."""
    seen: list[tuple[str, int]] = []

    def handler(span: Span, event: Any, index: int) -> None:
        seen.append((event.name, index))

    tracer = TracerProvider().get_tracer("t")
    span = tracer.start_span("task")
    assert isinstance(span, Span)
    span_events.watch_span_events(span, handler)
    span.add_event("noise")
    span.add_event("progress", {"stigmer.progress": 10})
    assert seen == [("progress", 1)]
    span.end()
    gone = weakref.ref(span)
    del span
    gc.collect()
    assert gone() is None


def test_a_span_without_its_own_dict_is_watched_through_a_weak_registry() -> None:
    """An object that cannot hold its watchers is registered weakly, and still seen."""

    class Slotted:
        __slots__ = ("__weakref__", "dropped_events", "end_time", "events")

        def __init__(self) -> None:
            self.end_time = None
            self.events: list[Any] = []
            self.dropped_events = 0

    seen: list[int] = []
    span = Slotted()
    span_events.watch_span_events(span, lambda _span, _event, index: seen.append(index))  # type: ignore[arg-type]

    class Event:
        name = "progress"

    def add_event(name: str) -> None:
        span.events.append(Event())

    span_events._after_add_event(add_event, span, ("progress",), {})  # type: ignore[arg-type]
    assert seen == [0]
    assert span in span_events._watchers  # type: ignore[comparison-overlap]
