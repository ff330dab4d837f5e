"""Span events seen as they are added, not when their span ends.

The OTel SDK has no ``on_event`` hook, so :func:`watch_span_events` registers a span and
the SDK's ``Span.add_event`` is wrapped once (with wrapt) to tell the span's watchers
about every span event that maps to a Stigmer event (``progress``, ``workflow_paused``,
...). Spans nobody watches pay one set lookup per such event and nothing else;
``record_exception`` goes through ``add_event`` and is seen the same way. A span's
watchers live in the span's own ``__dict__`` (one private key: they die with the span,
and registering costs a dict write); a span without one is registered in a
``WeakKeyDictionary`` instead.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

import wrapt
from opentelemetry.sdk.trace import Span

from otel_stigmer._forksafe import renew_after_fork
from otel_stigmer.mapping import REPORTED_SPAN_EVENTS

__all__ = ["SpanEventHandler", "watch_span_events"]

#: Called with the span, the span event just added and its index among all span events
#: ever added to the span (dropped ones included), on the thread that added it.
SpanEventHandler = Callable[[Span, Any, int], None]

_watchers: weakref.WeakKeyDictionary[Span, tuple[SpanEventHandler, ...]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()
renew_after_fork(sys.modules[__name__], "_lock")
_installed = False
#: The key of a span's watchers in the span's ``__dict__``.
_KEY = "_otel_stigmer_span_event_handlers"


def watch_span_events(span: Span, handler: SpanEventHandler) -> None:
    """Call ``handler`` for each reported span event added to ``span`` from now on."""
    if not _installed:
        _install()
    own = getattr(span, "__dict__", None)
    if own is not None:
        own[_KEY] = (*own.get(_KEY, ()), handler)
        return
    with _lock:
        _watchers[span] = (*_watchers.get(span, ()), handler)


def _install() -> None:
    global _installed  # noqa: PLW0603 - the SDK class is wrapped once per process
    if _installed:
        return
    with _lock:
        if not _installed:
            wrapt.wrap_function_wrapper(Span, "add_event", _after_add_event)
            _installed = True


def _after_add_event(
    wrapped: Callable[..., None], instance: Span, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    ended = instance.end_time is not None
    wrapped(*args, **kwargs)
    name = args[0] if args else kwargs.get("name")
    if ended or name not in REPORTED_SPAN_EVENTS:
        return
    handlers = getattr(instance, _KEY, None) or _watchers.get(instance)
    if not handlers:
        return
    events = instance.events
    for position in range(len(events) - 1, -1, -1):
        if events[position].name == name:
            index = instance.dropped_events + position
            for handler in handlers:
                handler(instance, events[position], index)
            return
