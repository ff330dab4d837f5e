"""A :class:`~otel_stigmer.records.Record` as plain tuples that ``marshal`` can write, and back.

The process sender ships records to its child process as marshalled tuples: ``marshal``
takes only exact built-in types, so the named tuples become plain tuples (the status code
is already its integer). The converters are generated from the fields of :class:`Record`,
:class:`SpanSnapshot` and :class:`EventSnapshot` when this module is imported, so a field
added at the end of one of them (with a default) travels without a change here; only a
field whose values ``marshal`` cannot write needs a converter below. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from otel_stigmer.records import EventSnapshot, Record, SpanSnapshot, snapshot

__all__ = ["decode_record", "encode_record", "plain"]

Encoded = tuple[Any, ...]


def _encode_span(span: Any) -> Encoded:
    if type(span) is not SpanSnapshot:  # a span handed in by other code than the recorder
        span = snapshot(span, "all")
    return _span_to_tuple(span)


def _encode_event(event: Any) -> Encoded | None:
    if event is None:
        return None
    if type(event) is not EventSnapshot:
        event = EventSnapshot(event.name, event.timestamp, dict(event.attributes or {}))
    return tuple(event)


def _encode_events(events: tuple[EventSnapshot, ...]) -> tuple[Encoded, ...]:
    return tuple(tuple(event) for event in events)


def _decode_events(events: tuple[Encoded, ...]) -> tuple[EventSnapshot, ...]:
    return tuple(EventSnapshot._make(event) for event in events)


def _decode_event(event: Encoded | None) -> EventSnapshot | None:
    return None if event is None else EventSnapshot._make(event)


def _converter(kind: type, converters: Mapping[str, Callable[[Any], Any]], build: bool) -> Any:
    """Compile ``value -> tuple`` (or ``tuple -> kind``) from ``kind``'s fields, once.

    Generated like :func:`collections.namedtuple` builds its methods: one tuple display
    per call instead of a loop over the fields, as this runs once per record. Fields not
    named in ``converters`` are taken as they are.
    """
    fields: tuple[str, ...] = kind._fields  # type: ignore[attr-defined]
    names = {name: f"_c_{name}" for name in fields if name in converters}
    items = ", ".join(
        f"{names[name]}(v[{i}])" if name in names else f"v[{i}]" for i, name in enumerate(fields)
    )
    body = f"_new(_kind, ({items},))" if build else f"({items},)"
    scope: dict[str, Any] = {names[name]: converters[name] for name in names}
    scope.update(_new=tuple.__new__, _kind=kind)
    exec(f"def convert(v):\n    return {body}\n", scope)  # noqa: S102 - fixed, generated text
    return scope["convert"]


# Per type, the fields whose values marshal cannot write as they are, and how they travel.
_span_to_tuple: Callable[[SpanSnapshot], Encoded] = _converter(
    SpanSnapshot, {"events": _encode_events}, build=False
)
_tuple_to_span: Callable[[Encoded], SpanSnapshot] = _converter(
    SpanSnapshot, {"events": _decode_events}, build=True
)
_record_to_tuple: Callable[[Record], Encoded] = _converter(
    Record, {"span": _encode_span, "span_event": _encode_event}, build=False
)
_tuple_to_record: Callable[[Encoded], Record] = _converter(
    Record, {"span": _tuple_to_span, "span_event": _decode_event}, build=True
)


def encode_record(record: Record) -> Encoded:
    """``record`` as nested plain tuples (what ``marshal`` writes)."""
    return _record_to_tuple(record)


def decode_record(value: Encoded) -> Record:
    """The :class:`Record` that :func:`encode_record` turned into ``value``."""
    return _tuple_to_record(value)


def plain(value: Any) -> Any:
    """``value`` with anything ``marshal`` cannot write turned into its ``str``.

    For the rare attribute value that is not a plain type (the slow path of a frame that
    failed to marshal).
    """
    if value is None or type(value) in (str, int, float, bool, bytes):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(plain(item) for item in value)
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    return str(value)
