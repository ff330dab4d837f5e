"""The input queue: records from calling threads, bounded in events and bytes, never blocking.

The bound counts events, not records: an ended span with many span events weighs as much
as the events it becomes. A second bound counts bytes, estimated from the text the span
holds (attribute values, span event attributes), because a queued span keeps all of it
alive. When full, intermediate records (starts, span events) give way to terminal ones,
oldest first; then queued terminal records lose their span events and keep only their
outcome. Every drop is counted.

Each put costs O(1) amortised, whatever the queue holds: records are numbered, and an
evicted record leaves only its number behind, for the sender thread to skip, so a full
queue never makes a business thread scan it. What a full queue holds is invisible to the
garbage collector: numbers, and tuples of plain values (the collector stops tracking a
tuple that holds none of the objects it tracks), so a full collection does not grow with
the queue.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, cast

from otel_stigmer.records import (
    PACKED_NBYTES,
    PACKED_TERMINAL,
    PACKED_WEIGHT,
    Packed,
    Record,
    outcome_of,
    pack,
    unpack,
)

__all__ = ["Intake", "record_bytes"]

#: What a record costs before its text is counted (objects, slots, the span itself).
_BASE_BYTES = 512
#: Past this many queued records, records are queued packed (``records.pack``): a long
#: queue then holds nothing the garbage collector tracks, and a short one costs no packing.
PACK_ABOVE = 4096

#: A queued record: packed, or as it is with its estimated bytes.
_Queued = Packed | tuple[Record, int]


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
        # Live records by number; numbers in arrival order.
        self._live: dict[int, _Queued] = {}
        self._order: collections.deque[int] = collections.deque()
        self._intermediate: collections.deque[int] = collections.deque()
        self._strippable: collections.deque[int] = collections.deque()
        self._next = 0
        self._weight = 0
        self._bytes = 0
        self._intermediate_weight = 0
        self.put_count = 0
        self.evicted_count = 0

    def __len__(self) -> int:
        return len(self._live)

    @property
    def weight(self) -> int:
        """Events the queued records will become."""
        return self._weight

    def put(self, record: Record) -> int:
        """Queue ``record``; return how many events were dropped to respect the bounds."""
        nbytes = record_bytes(record)
        with self._lock:
            dropped = 0
            weight = record.weight
            if self._live and self._over(weight, nbytes):
                if not record.terminal:
                    return weight
                dropped = self._make_room(weight, nbytes)
                if self._over(weight, nbytes) and weight > 1:
                    dropped += weight - 1  # keep the outcome, not its span events
                    record = outcome_of(record)
                    weight = 1
                    nbytes = record_bytes(record)
                if self._over(weight, nbytes):
                    return dropped + weight
            number = self._next
            self._next = number + 1
            live = self._live
            live[number] = (len(live) >= PACK_ABOVE and pack(record, nbytes)) or (record, nbytes)
            self._order.append(number)
            if not record.terminal:
                self._intermediate.append(number)
                self._intermediate_weight += weight
            elif weight > 1:
                self._strippable.append(number)
            self._weight += weight
            self._bytes += nbytes
            self.put_count += 1
            return dropped

    def take(self, limit: int | None = None) -> list[Record]:
        """Remove and return up to ``limit`` live records (all when None), oldest first."""
        records: list[Record] = []
        with self._lock:
            live = self._live
            order = self._order
            count = len(order) if limit is None else limit
            while order and len(records) < count:
                queued = live.pop(order.popleft(), None)
                if queued is not None:
                    self._forget(queued)
                    records.append(_record_of(queued))
            for side in (self._intermediate, self._strippable):
                while side and side[0] not in live:
                    side.popleft()
        return records

    def _over(self, weight: int, nbytes: int) -> bool:
        return self._weight + weight > self._max or self._bytes + nbytes > self._max_bytes

    def _forget(self, queued: _Queued) -> None:
        terminal, weight, nbytes = _facts(queued)
        self._weight -= weight
        self._bytes -= nbytes
        if not terminal:
            self._intermediate_weight -= weight

    def _make_room(self, weight: int, nbytes: int) -> int:
        """Evict intermediate records, oldest first, then strip queued span events.

        Frees nothing when even evicting every intermediate record could not make room by
        the event count, so a hopeless put costs nothing.
        """
        freed = 0
        if self._weight - self._intermediate_weight + weight > self._max and not self._strippable:
            return 0
        live = self._live
        while self._intermediate and self._over(weight, nbytes):
            queued = live.pop(self._intermediate.popleft(), None)
            if queued is not None:
                self._forget(queued)
                self.evicted_count += 1
                freed += _facts(queued)[1]
        while self._strippable and self._over(weight, nbytes):
            number = self._strippable.popleft()
            queued = live.get(number)
            if queued is not None and _facts(queued)[1] > 1:
                record = _record_of(queued)
                freed += record.weight - 1
                self._weight -= record.weight - 1
                slim = outcome_of(record)
                slim_bytes = record_bytes(slim)
                self._bytes += slim_bytes - _facts(queued)[2]
                # Keeps its place in the order.
                live[number] = pack(slim, slim_bytes) or (slim, slim_bytes)
        return freed


def _facts(queued: _Queued) -> tuple[bool, int, int]:
    """Whether a queued record is terminal, its weight and its estimated bytes."""
    first = queued[0]
    if type(first) is Record:
        return first.terminal, first.weight, cast(int, queued[1])
    return queued[PACKED_TERMINAL], queued[PACKED_WEIGHT], queued[PACKED_NBYTES]  # type: ignore[return-value]


def _record_of(queued: _Queued) -> Record:
    first = queued[0]
    return first if type(first) is Record else unpack(queued)


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
