"""The input queue: records from calling threads, bounded in events and bytes, never blocking.

The bound counts events, not records: an ended span with many span events weighs as much
as the events it becomes. A second bound counts bytes, estimated from the text the span
holds (attribute values, span event attributes), because a queued span keeps all of it
alive. When full, intermediate records (starts, span events) give way to terminal ones,
oldest first; then queued terminal records lose their span events and keep only their
outcome. Every drop is counted.

Each put costs O(1) amortised, whatever the queue holds: evicted records are marked dead
and left for the sender thread to skip, so a full queue never makes a business thread
scan it.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from otel_stigmer.records import Record, outcome_of

__all__ = ["Intake", "record_bytes"]

#: What a record costs before its text is counted (objects, slots, the span itself).
_BASE_BYTES = 512


class _Slot:
    __slots__ = ("live", "nbytes", "record")

    def __init__(self, record: Record, nbytes: int) -> None:
        self.record = record
        self.nbytes = nbytes
        self.live = True


class Intake:
    """A bounded FIFO of :class:`Record` shared by calling threads and the sender thread.

    Args:
        max_events: Bound in events.
        max_bytes: Bound in estimated bytes (:func:`record_bytes`).

    Attributes:
        put_count: Records accepted so far.
        evicted_count: Accepted records later dropped to make room (never mapped).
    """

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self._max = max_events
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._queue: collections.deque[_Slot] = collections.deque()
        self._intermediate: collections.deque[_Slot] = collections.deque()
        self._strippable: collections.deque[_Slot] = collections.deque()
        self._live = 0
        self._weight = 0
        self._bytes = 0
        self._intermediate_weight = 0
        self.put_count = 0
        self.evicted_count = 0

    def __len__(self) -> int:
        return self._live

    @property
    def weight(self) -> int:
        """Events the queued records will become."""
        return self._weight

    def put(self, record: Record) -> int:
        """Queue ``record``; return how many events were dropped to respect the bounds."""
        nbytes = record_bytes(record)
        with self._lock:
            dropped = 0
            if self._live and self._over(record.weight, nbytes):
                if not record.terminal:
                    return record.weight
                dropped = self._make_room(record.weight, nbytes)
                if self._over(record.weight, nbytes) and record.weight > 1:
                    dropped += record.weight - 1  # keep the outcome, not its span events
                    record = outcome_of(record)
                    nbytes = record_bytes(record)
                if self._over(record.weight, nbytes):
                    return dropped + record.weight
            self._add(_Slot(record, nbytes))
            self.put_count += 1
            return dropped

    def take(self, limit: int | None = None) -> list[Record]:
        """Remove and return up to ``limit`` live records (all when None), oldest first."""
        records: list[Record] = []
        with self._lock:
            queue = self._queue
            while queue and (limit is None or len(records) < limit):
                slot = queue.popleft()
                if slot.live:
                    self._remove(slot)
                    records.append(slot.record)
            for side in (self._intermediate, self._strippable):
                while side and not side[0].live:
                    side.popleft()
        return records

    def _over(self, weight: int, nbytes: int) -> bool:
        return self._weight + weight > self._max or self._bytes + nbytes > self._max_bytes

    def _add(self, slot: _Slot) -> None:
        record = slot.record
        self._queue.append(slot)
        if not record.terminal:
            self._intermediate.append(slot)
            self._intermediate_weight += record.weight
        elif record.weight > 1:
            self._strippable.append(slot)
        self._live += 1
        self._weight += record.weight
        self._bytes += slot.nbytes

    def _remove(self, slot: _Slot) -> None:
        slot.live = False
        self._live -= 1
        self._weight -= slot.record.weight
        self._bytes -= slot.nbytes
        if not slot.record.terminal:
            self._intermediate_weight -= slot.record.weight

    def _make_room(self, weight: int, nbytes: int) -> int:
        """Evict intermediate records, oldest first, then strip queued span events.

        Frees nothing when even evicting every intermediate record could not make room by
        the event count, so a hopeless put costs nothing.
        """
        freed = 0
        if self._weight - self._intermediate_weight + weight > self._max and not self._strippable:
            return 0
        while self._intermediate and self._over(weight, nbytes):
            slot = self._intermediate.popleft()
            if slot.live:
                self._remove(slot)
                self.evicted_count += 1
                freed += slot.record.weight
        while self._strippable and self._over(weight, nbytes):
            slot = self._strippable.popleft()
            if slot.live and slot.record.weight > 1:
                freed += slot.record.weight - 1
                self._weight -= slot.record.weight - 1
                slot.record = outcome_of(slot.record)
                self._bytes -= slot.nbytes
                slot.nbytes = record_bytes(slot.record)
                self._bytes += slot.nbytes
        return freed


def record_bytes(record: Record) -> int:
    """An estimate of the memory a queued record keeps alive, from the text it holds.

    Counts the lengths of string and bytes attribute values of the span and, for an ended
    span, of its span events: what grows without bound in practice (payloads, stack
    traces, big attributes). Cheap: one pass over the attributes, no deep sizing.
    """
    span = record.span
    try:
        attributes = span.attributes
    except Exception:  # an unreadable span is counted by its base cost
        attributes = None
    total = _BASE_BYTES + _text_bytes(attributes)
    if record.span_event is not None:
        total += _text_bytes(getattr(record.span_event, "attributes", None))
    elif record.weight > 1:
        total += sum(_BASE_BYTES + _text_bytes(event.attributes) for event in _events(span))
    return total


def _events(span: object) -> tuple[Any, ...]:
    try:
        return tuple(span.events)  # type: ignore[attr-defined]
    except Exception:  # an unreadable span is counted by its base cost
        return ()


def _text_bytes(attributes: object) -> int:
    """Lengths of the string and bytes values of an attribute mapping."""
    if not attributes:
        return 0
    try:
        values = attributes.values()  # type: ignore[attr-defined]
        return sum(len(v) for v in values if isinstance(v, (str, bytes)))
    except Exception:  # mutated while read, or not a mapping: count nothing
        return 0
