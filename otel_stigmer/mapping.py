"""Span start, span end and span events -> progress events (pure: no I/O, clock or globals).

Every event gets a deterministic ``event_id`` derived from its span (trace id, span id and
what it stands for), so the same span reported twice — by the live processor and an
exporter, or after a retry — is de-duplicated by the receiver. ``sequence_number`` holds
the event's time in microseconds here; :class:`otel_stigmer.sequencing.Sequencer` turns
it into the final number in delivery order.

Strings are bounded (see the ``MAX_*`` limits); a cut string ends with
:data:`TRUNCATION_MARKER` and the number of characters removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from opentelemetry.trace import SpanContext, StatusCode
from opentelemetry.util.types import Attributes

from otel_stigmer import conventions as conv
from otel_stigmer.events import EventType, Status, WorkflowProgressEvent
from otel_stigmer.roles import Kind, SpanRole, role_of
from otel_stigmer.values import TRUNCATION_MARKER
from otel_stigmer.values import attribute_dict as _attributes
from otel_stigmer.values import attributes_of as _attributes_of
from otel_stigmer.values import bounded_text as _text
from otel_stigmer.values import clock_ns as _clock
from otel_stigmer.values import int_of as _int
from otel_stigmer.values import number_of as _number

__all__ = [
    "MAX_ID_CHARS",
    "MAX_MESSAGE_CHARS",
    "MAX_METADATA_ENTRIES",
    "MAX_METADATA_KEY_CHARS",
    "MAX_METADATA_VALUE_CHARS",
    "MAX_NAME_CHARS",
    "MAX_STACK_TRACE_CHARS",
    "REPORTED_SPAN_EVENTS",
    "TRUNCATION_MARKER",
    "SpanLike",
    "added_event",
    "ended_events",
    "started_events",
]

MAX_ID_CHARS = 256
MAX_NAME_CHARS = 256
MAX_MESSAGE_CHARS = 4096
MAX_STACK_TRACE_CHARS = 32 * 1024
MAX_METADATA_ENTRIES = 64
MAX_METADATA_KEY_CHARS = 128
MAX_METADATA_VALUE_CHARS = 1024

_EXCEPTION_EVENT = "exception"
_TERMINAL_OR_START = frozenset(
    {
        EventType.WORKFLOW_STARTED.value,
        EventType.WORKFLOW_COMPLETED.value,
        EventType.WORKFLOW_FAILED.value,
        EventType.WORKFLOW_CANCELLED.value,
        EventType.TASK_STARTED.value,
        EventType.TASK_COMPLETED.value,
        EventType.TASK_FAILED.value,
        EventType.TASK_CANCELLED.value,
    }
)
#: Event types a span event may carry by name, with the status each reports.
_SPAN_EVENT_STATUS: dict[str, str] = {
    EventType.WORKFLOW_PAUSED.value: Status.PAUSED.value,
    EventType.WORKFLOW_RESUMED.value: Status.RUNNING.value,
    EventType.WORKFLOW_PROGRESS.value: Status.RUNNING.value,
    EventType.TASK_RETRY.value: Status.RUNNING.value,
    EventType.TASK_PROGRESS.value: Status.RUNNING.value,
}
_MARKER_STATUS: dict[str, str] = {
    EventType.WORKFLOW_STARTED.value: Status.RUNNING.value,
    EventType.TASK_STARTED.value: Status.RUNNING.value,
    EventType.WORKFLOW_COMPLETED.value: Status.COMPLETED.value,
    EventType.TASK_COMPLETED.value: Status.COMPLETED.value,
    EventType.WORKFLOW_FAILED.value: Status.FAILED.value,
    EventType.TASK_FAILED.value: Status.FAILED.value,
    EventType.WORKFLOW_CANCELLED.value: Status.CANCELLED.value,
    EventType.TASK_CANCELLED.value: Status.CANCELLED.value,
    **_SPAN_EVENT_STATUS,
}
#: Names of the span events that become progress events (reported live when added).
REPORTED_SPAN_EVENTS: frozenset[str] = frozenset(_SPAN_EVENT_STATUS) | {conv.PROGRESS_EVENT}


class _EventLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def attributes(self) -> Attributes: ...


class _StatusLike(Protocol):
    @property
    def status_code(self) -> StatusCode: ...
    @property
    def description(self) -> str | None: ...


class SpanLike(Protocol):
    """The parts of an OTel span the mapping reads (an SDK ``ReadableSpan`` satisfies it)."""

    @property
    def name(self) -> str: ...
    @property
    def context(self) -> SpanContext | None: ...
    @property
    def parent(self) -> SpanContext | None: ...
    @property
    def start_time(self) -> int | None: ...
    @property
    def end_time(self) -> int | None: ...
    @property
    def attributes(self) -> Attributes: ...
    @property
    def events(self) -> Sequence[_EventLike]: ...
    @property
    def status(self) -> _StatusLike: ...


def started_events(span: SpanLike) -> list[WorkflowProgressEvent]:
    """Events for a span's start: ``workflow_started`` / ``task_started``, or a marker's event."""
    attrs = _attributes_of(span)
    role = role_of(attrs)
    if not role.reported:
        return []
    time_ns = span.start_time or 0
    if role.kind is Kind.MARKER:
        event_type = _text(attrs.get(conv.EVENT_TYPE), MAX_NAME_CHARS)
        if event_type not in _MARKER_STATUS:
            return []
        event = _base(_Identity(span, attrs), event_type, _MARKER_STATUS[event_type], time_ns, "m")
        explicit_id = _text(attrs.get(conv.EVENT_ID), MAX_ID_CHARS)
        if explicit_id:
            event.event_id = explicit_id
        event.message = _message(attrs, "") or _default_message(event)
        if event_type.endswith(("_failed", "_retry")):
            _fill_error(event, span, attrs, _last_exception(span.events))
        return [event]
    if attrs.get(conv.EVENTS_ONLY) is True:
        return []
    event_type = (
        EventType.TASK_STARTED.value if role.kind is Kind.TASK else EventType.WORKFLOW_STARTED.value
    )
    event = _base(_Identity(span, attrs), event_type, Status.RUNNING.value, time_ns, "s")
    event.message = _default_message(event)
    return [event]


def ended_events(span: SpanLike, *, span_events: bool = True) -> list[WorkflowProgressEvent]:
    """Events for a span's end: its span events in order (unless ``span_events`` is False,
    when they were reported live as they were added), then the terminal event."""
    attrs = _attributes_of(span)
    role = role_of(attrs)
    if not role.reported or role.kind is Kind.MARKER:
        return []
    identity = _Identity(span, attrs)
    events: list[WorkflowProgressEvent] = []
    if span_events and span.events:
        offset = _dropped_events(span)
        for index, span_event in enumerate(span.events):
            event = _span_event_event(span_event, offset + index, role, identity, span)
            if event is not None:
                events.append(event)
    if attrs.get(conv.EVENTS_ONLY) is not True:
        events.append(_terminal_event(span, attrs, role, identity))
    return events


def added_event(span: SpanLike, span_event: _EventLike, index: int) -> list[WorkflowProgressEvent]:
    """The event for one span event, as it is added to a live span.

    Args:
        span: The span (still open).
        span_event: The span event just added.
        index: Its position among all span events ever added to the span (the event id
            uses it, so the exporter, which sees the ended span, derives the same id).
    """
    attrs = _attributes_of(span)
    role = role_of(attrs)
    if not role.reported or role.kind is Kind.MARKER:
        return []
    event = _span_event_event(span_event, index, role, _Identity(span, attrs), span)
    return [] if event is None else [event]


def _terminal_event(
    span: SpanLike, attrs: Mapping[str, Any], role: SpanRole, identity: _Identity
) -> WorkflowProgressEvent:
    prefix = "task_" if role.kind is Kind.TASK else "workflow_"
    exception = _last_exception(span.events)
    outcome = _text(attrs.get(conv.STATUS), MAX_NAME_CHARS).lower()
    cancelled = outcome == conv.CANCELLED or _is_cancellation(exception)
    failed = span.status.status_code == StatusCode.ERROR
    time_ns = span.end_time or span.start_time or 0
    if cancelled:
        event = _base(identity, prefix + "cancelled", Status.CANCELLED.value, time_ns, "e")
    elif failed and role.kind is Kind.TASK and outcome == conv.RETRYING:
        event = _base(identity, EventType.TASK_RETRY.value, Status.RUNNING.value, time_ns, "e")
        _fill_error(event, span, attrs, exception)
    elif failed:
        event = _base(identity, prefix + "failed", Status.FAILED.value, time_ns, "e")
        _fill_error(event, span, attrs, exception)
    else:
        event = _base(identity, prefix + "completed", Status.COMPLETED.value, time_ns, "e")
    event.message = _message(attrs, "") or event.error.message or _default_message(event)
    return event


def _span_event_event(
    span_event: _EventLike, index: int, role: SpanRole, identity: _Identity, span: SpanLike
) -> WorkflowProgressEvent | None:
    name = span_event.name
    if name == conv.PROGRESS_EVENT:
        name = "task_progress" if role.kind is Kind.TASK else "workflow_progress"
    status = _SPAN_EVENT_STATUS.get(name)
    if status is None or name in _TERMINAL_OR_START:
        return None
    event_attrs = _attributes_of(span_event)
    event = _base(identity, name, status, span_event.timestamp, f"v{index}")
    _fill_metadata(event, event_attrs)
    if conv.TASK_ATTEMPT in event_attrs:
        event.attempt = _int(event_attrs[conv.TASK_ATTEMPT])
    if name.endswith("_progress"):
        _fill_progress(event, event_attrs.get(conv.PROGRESS))
    if "exception.type" in event_attrs or conv.ERROR_CODE in event_attrs:
        _fill_error(event, span, event_attrs, span_event)
    event.message = _message(event_attrs, "") or event.error.message or _default_message(event)
    return event


def _dropped_events(span: SpanLike) -> int:
    try:
        return int(getattr(span, "dropped_events", 0) or 0)
    except Exception:  # a span-like object without the counter
        return 0


class _Identity:
    """What every event of one span shares, computed once per span."""

    __slots__ = ("fields", "id_prefix")

    def __init__(self, span: SpanLike, attrs: Mapping[str, Any]) -> None:
        ctx = span.context
        trace_id = f"{ctx.trace_id:032x}" if ctx is not None else ""
        span_id = f"{ctx.span_id:016x}" if ctx is not None else ""
        parent = span.parent
        task_name = _text(attrs.get(conv.TASK_NAME), MAX_NAME_CHARS)
        workflow_name = _text(attrs.get(conv.WORKFLOW_NAME), MAX_NAME_CHARS)
        if not workflow_name and conv.TASK_NAME not in attrs:
            workflow_name = _text(span.name, MAX_NAME_CHARS)
        fields: dict[str, Any] = {
            "workflow_execution_id": _text(attrs.get(conv.WORKFLOW_EXECUTION_ID), MAX_ID_CHARS),
            "workflow_name": workflow_name,
            "task_name": task_name,
            "trace_id": trace_id,
            "span_id": span_id,
            "parent_span_id": f"{parent.span_id:016x}" if parent is not None else "",
        }
        if conv.TASK_ATTEMPT in attrs:
            fields["attempt"] = _int(attrs[conv.TASK_ATTEMPT])
        if task_name:
            instance_id = _text(attrs.get(conv.TASK_INSTANCE_ID), MAX_ID_CHARS)
            fields["task_instance_id"] = instance_id or span_id
        metadata = _metadata(attrs)
        if metadata:
            fields["metadata"] = metadata
        self.fields = fields
        self.id_prefix = f"{trace_id}{span_id}."


def _base(
    identity: _Identity, event_type: str, status: str, time_ns: object, suffix: str
) -> WorkflowProgressEvent:
    clock = _clock(time_ns)
    return WorkflowProgressEvent(
        event_type=event_type,
        status=status,
        timestamp_ms=clock // 1_000_000,
        sequence_number=clock // 1_000,
        event_id=identity.id_prefix + suffix,
        **identity.fields,
    )


def _fill_error(
    event: WorkflowProgressEvent,
    span: SpanLike,
    attrs: Mapping[str, Any],
    exception: _EventLike | None,
) -> None:
    exc_attrs = _attributes(exception.attributes) if exception is not None else {}
    code = _text(attrs.get(conv.ERROR_CODE), MAX_NAME_CHARS) or _text(
        exc_attrs.get("exception.type"), MAX_NAME_CHARS
    ).removeprefix("__main__.")
    message = _text(exc_attrs.get("exception.message"), MAX_MESSAGE_CHARS)
    if not message:
        message = _text(getattr(span.status, "description", None), MAX_MESSAGE_CHARS)
    event.error.code = code or "ERROR"
    event.error.message = message
    event.error.stack_trace = _text(exc_attrs.get("exception.stacktrace"), MAX_STACK_TRACE_CHARS)


def _fill_progress(event: WorkflowProgressEvent, raw: object) -> None:
    value = _number(raw)
    if value is None:
        if raw is not None:
            event.metadata["stigmer.progress.invalid"] = _text(raw, MAX_METADATA_VALUE_CHARS)
        return
    event.task_progress = int(min(100.0, max(0.0, value)))


def _metadata(attrs: Mapping[str, Any], room: int = MAX_METADATA_ENTRIES) -> dict[str, str]:
    prefix = conv.METADATA_PREFIX
    metadata: dict[str, str] = {}
    for key, value in attrs.items():
        if not key.startswith(prefix):
            continue
        if len(metadata) >= room:
            metadata["stigmer.metadata.truncated"] = "true"
            break
        metadata[_text(key[len(prefix) :], MAX_METADATA_KEY_CHARS)] = _text(
            value, MAX_METADATA_VALUE_CHARS
        )
    return metadata


def _fill_metadata(event: WorkflowProgressEvent, attrs: Mapping[str, Any]) -> None:
    room = MAX_METADATA_ENTRIES - len(event.metadata)
    if room <= 0:
        return
    event.metadata.update(_metadata(attrs, room))


def _message(attrs: Mapping[str, Any], default: str) -> str:
    return _text(attrs.get(conv.MESSAGE), MAX_MESSAGE_CHARS) or default


def _default_message(event: WorkflowProgressEvent) -> str:
    subject = (
        f"task {event.task_name}" if event.task_name else f"workflow {event.workflow_name}"
    ).strip()
    verb = event.event_type.split("_", 1)[1]
    if event.event_type.endswith("_progress"):
        return f"{subject} at {event.task_progress}%"
    if verb == "retry":
        return f"{subject} will be retried"
    return f"{subject} {verb}"


def _last_exception(events: Iterable[_EventLike]) -> _EventLike | None:
    found = None
    for event in events:
        if event.name == _EXCEPTION_EVENT:
            found = event
    return found


def _is_cancellation(exception: _EventLike | None) -> bool:
    if exception is None:
        return False
    exc_type = _attributes(exception.attributes).get("exception.type")
    return isinstance(exc_type, str) and exc_type.rsplit(".", 1)[-1] == "CancelledError"
