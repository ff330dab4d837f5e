"""In-memory capture of progress events: ``capture_progress()`` and the query helpers.

Importing this module does not import pytest.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import overload

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from otel_stigmer import _mute
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.recorder import SpanRecorder
from otel_stigmer.records import Record, map_record
from otel_stigmer.sequencing import Sequencer

__all__ = [
    "DETERMINISTIC_EPOCH_MS",
    "EventList",
    "ExpectedEvent",
    "ProgressCapture",
    "capture_active",
    "capture_progress",
]

_log = logging.getLogger(__name__)

#: The first timestamp of a deterministic capture (2024-01-01T00:00:00Z); +1 ms per event.
DETERMINISTIC_EPOCH_MS = 1_704_067_200_000

#: One item of :meth:`EventList.assert_sequence`: an event type, or ``(event type, task name)``.
ExpectedEvent = str | tuple[str, str]


class EventList(Sequence[WorkflowProgressEvent]):
    """A read-only list of progress events with helpers for assertions."""

    def __init__(self, events: Iterable[WorkflowProgressEvent] = ()) -> None:
        self._events = list(events)

    def _snapshot(self) -> list[WorkflowProgressEvent]:
        return list(self._events)

    @property
    def events(self) -> list[WorkflowProgressEvent]:
        """The events, in the order they were reported (a copy of the list)."""
        return self._snapshot()

    @overload
    def __getitem__(self, index: int) -> WorkflowProgressEvent: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[WorkflowProgressEvent]: ...
    def __getitem__(
        self, index: int | slice
    ) -> WorkflowProgressEvent | Sequence[WorkflowProgressEvent]:
        return self._snapshot()[index]

    def __iter__(self) -> Iterator[WorkflowProgressEvent]:
        return iter(self._snapshot())

    def __len__(self) -> int:
        return len(self._events)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} events)"

    def types(self) -> list[str]:
        """The event types, in order (``["workflow_started", "task_started", ...]``)."""
        return [event.event_type for event in self._snapshot()]

    def executions(self) -> list[str]:
        """The distinct execution ids, in order of first appearance."""
        return list(dict.fromkeys(e.workflow_execution_id for e in self._snapshot()))

    def for_execution(self, execution_id: str) -> EventList:
        """The events of one workflow execution."""
        return EventList(e for e in self._snapshot() if e.workflow_execution_id == execution_id)

    def for_task(self, task_name: str) -> EventList:
        """The events of one task (all attempts, all executions)."""
        return EventList(e for e in self._snapshot() if e.task_name == task_name)

    def assert_sequence(self, expected: Sequence[ExpectedEvent], *, exact: bool = True) -> None:
        """Assert the events match ``expected``, in order.

        Args:
            expected: Event types, or ``(event type, task name)`` tuples to check the task too.
            exact: True: the events are exactly these. False: these appear in this order,
                possibly with other events between them.

        Raises:
            AssertionError: With the expected and the actual sequence, and the timeline.
        """
        events = self._snapshot()
        actual = [_project(event, item) for event, item in zip(events, expected, strict=False)]
        if exact:
            ok = len(events) == len(expected) and actual == [_norm(i) for i in expected]
        else:
            ok = _is_subsequence([_norm(i) for i in expected], events)
        if not ok:
            full = [(e.event_type, e.task_name) if e.task_name else e.event_type for e in events]
            raise AssertionError(
                f"progress events do not match{'' if exact else ' (as a subsequence)'}\n"
                f"expected: {[_norm(i) for i in expected]}\n"
                f"actual:   {full}\n"
                f"timeline:\n{EventList(events).timeline()}"
            )

    def timeline(self, *, times: bool = False) -> str:
        """Render the events one per line, tasks indented, for reading and snapshot asserts.

        Each line shows the event type, the workflow or task name (``#n`` for the attempt),
        the status, and the progress or error when there is one. With more than one
        execution each line starts with its execution id.

        Args:
            times: Prefix each line with the time since the first event (``+12ms``).
        """
        events = self._snapshot()
        if not events:
            return "(no events)"
        several = len({e.workflow_execution_id for e in events}) > 1
        first_ms = events[0].timestamp_ms
        lines = []
        for event in events:
            subject = event.task_name or event.workflow_name
            if event.attempt:
                subject += f" #{event.attempt}"
            indent = "  " if event.task_name else ""
            line = f"{indent}{event.event_type:<{20 - len(indent)}} {subject:<24} {event.status:<9}"
            detail = _detail(event)
            if detail:
                line += f"  {detail}"
            if several:
                line = f"[{event.workflow_execution_id}] {line}"
            if times:
                line = f"+{event.timestamp_ms - first_ms:>6}ms {line}"
            lines.append(line.rstrip())
        return "\n".join(lines)


class ProgressCapture(EventList):
    """The live list of events captured by :func:`capture_progress`.

    Attributes:
        deterministic: Whether ids, sequence numbers and timestamps are renumbered.
    """

    def __init__(self, *, deterministic: bool = False) -> None:
        super().__init__()
        self.deterministic = deterministic
        self._lock = threading.Lock()
        self._trace_ids: dict[str, str] = {}
        self._span_ids: dict[str, str] = {}
        self._sequences: dict[str, int] = {}

    def _snapshot(self) -> list[WorkflowProgressEvent]:
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        """Forget the events captured so far (deterministic numbering starts again)."""
        with self._lock:
            self._events.clear()
            self._trace_ids.clear()
            self._span_ids.clear()
            self._sequences.clear()

    def _receive(self, events: Sequence[WorkflowProgressEvent]) -> None:
        with self._lock:
            for event in events:
                # A copy: the pipeline may still hold (and retry) the original.
                copy = WorkflowProgressEvent()
                copy.CopyFrom(event)
                if self.deterministic:
                    self._renumber(copy)
                self._events.append(copy)

    def _renumber(self, event: WorkflowProgressEvent) -> None:
        n = len(self._events) + 1
        event.event_id = f"evt-{n}"
        event.timestamp_ms = DETERMINISTIC_EPOCH_MS + n - 1
        execution = event.workflow_execution_id
        self._sequences[execution] = self._sequences.get(execution, 0) + 1
        event.sequence_number = self._sequences[execution]
        if event.trace_id:
            event.trace_id = _stable(self._trace_ids, event.trace_id, 32)
        if event.span_id:
            event.span_id = _stable(self._span_ids, event.span_id, 16)
        if event.parent_span_id:
            event.parent_span_id = _stable(self._span_ids, event.parent_span_id, 16)


def capture_active() -> bool:
    """True while a :func:`capture_progress` block is running (live processors are muted)."""
    return bool(_captures)


@contextmanager
def capture_progress(*, deterministic: bool = False) -> Iterator[ProgressCapture]:
    """Route the progress events of workflows and tasks to memory for the duration of a block.

    No network and no configuration are needed. If the global tracer provider is not an SDK
    ``TracerProvider`` one is installed (OpenTelemetry allows that once per process). Live
    Stigmer processors of the process are muted meanwhile, so nothing is sent to a service.
    Captures nest: events go to the innermost active one.

    Args:
        deterministic: Renumber event ids (``evt-1``, ...), trace and span ids, per-execution
            sequence numbers (from 1) and timestamps (from :data:`DETERMINISTIC_EPOCH_MS`,
            +1 ms per event) in capture order, for snapshot-style asserts.

    Yields:
        The :class:`ProgressCapture` that fills up as events are reported.
    """
    _install()
    capture = ProgressCapture(deterministic=deterministic)
    with _captures_lock:
        _captures.append(capture)
    _mute.push()
    try:
        yield capture
    finally:
        _mute.pop()
        with _captures_lock:
            _captures.remove(capture)


# --- routing -------------------------------------------------------------------------------

_captures: list[ProgressCapture] = []
_captures_lock = threading.Lock()
_installed: weakref.WeakSet[TracerProvider] = weakref.WeakSet()
_install_lock = threading.Lock()


class _CaptureRecorder(SpanRecorder):
    """Maps records on the calling thread and hands the events to the innermost capture.

    Only forwarded to while a capture runs, so it costs nothing after.
    """

    def __init__(self) -> None:
        super().__init__()
        self._sequencer = Sequencer()
        self._lock = threading.Lock()

    def _active(self) -> bool:
        return bool(_captures)

    def _record(self, record: Record) -> None:
        with self._lock:
            events = map_record(record)
            for event in events:
                self._sequencer.assign(event)
            with _captures_lock:
                target = _captures[-1] if _captures else None
            if target is not None and events:
                target._receive(events)


class _WhileCapturing(SpanProcessor):
    """Forwards starts and ends to the recorder only while a capture runs."""

    def __init__(self, inner: SpanProcessor) -> None:
        self._inner = inner

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if _captures:
            self._inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if _captures:
            self._inner.on_end(span)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        """Nothing to release."""


def _install() -> None:
    with _install_lock:
        provider = _sdk_provider()
        if provider is None or provider in _installed:
            return
        provider.add_span_processor(_WhileCapturing(_CaptureRecorder()))
        _installed.add(provider)


def _sdk_provider() -> TracerProvider | None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    trace.set_tracer_provider(TracerProvider())
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    _log.warning(
        "otel_stigmer: capture_progress() cannot capture: the global tracer provider is a %s, "
        "not an SDK TracerProvider; set an opentelemetry.sdk.trace.TracerProvider as the "
        "global provider before the first capture",
        type(provider).__name__,
    )
    return None


def _stable(mapping: dict[str, str], value: str, width: int) -> str:
    if value not in mapping:
        mapping[value] = f"{len(mapping) + 1:0{width}x}"
    return mapping[value]


def _norm(item: ExpectedEvent) -> ExpectedEvent:
    if isinstance(item, tuple):
        return (str(item[0]), item[1])
    return str(item)


def _project(event: WorkflowProgressEvent, like: ExpectedEvent) -> ExpectedEvent:
    return (event.event_type, event.task_name) if isinstance(like, tuple) else event.event_type


def _is_subsequence(expected: list[ExpectedEvent], events: list[WorkflowProgressEvent]) -> bool:
    position = 0
    for event in events:
        if position < len(expected) and _project(event, expected[position]) == expected[position]:
            position += 1
    return position == len(expected)


def _detail(event: WorkflowProgressEvent) -> str:
    if event.HasField("error") and (event.error.code or event.error.message):
        return f"{event.error.code}: {event.error.message}"
    if event.event_type.endswith("_progress"):
        return f"{event.task_progress}% {event.message}".rstrip()
    return ""
