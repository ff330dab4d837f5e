"""The input queue: records from calling threads, bounded in events and bytes, never blocking.

The bound counts events, not records: an ended span with many span events weighs as much
as the events it becomes. A second bound counts bytes, estimated from the text the span
holds (attribute values, span event attributes), because a queued span keeps all of it
alive. When full, intermediate records (starts, span events) give way to terminal ones,
oldest first; then queued terminal records lose their span events and keep only their
outcome. Every drop is counted.

Each put costs O(1) amortised, whatever the queue holds: records are numbered, and an
evicted record leaves only its number behind, for the sender thread to skip, so a full
queue never makes a business thread scan it. A long queue costs the garbage collector
nothing per record: past :data:`PACK_ABOVE` queued records, each is kept as bytes
(``records.pack``); numbers, sizes and bytes live in dicts of ints and bytes (which the
collector does not track) and arrays of numbers (which it does not visit).
"""

from __future__ import annotations

import threading
from typing import Any

from otel_stigmer._numbers import Numbers
from otel_stigmer.records import Record, outcome_of, pack, unpack

__all__ = ["PACK_ABOVE", "Intake", "record_bytes"]

#: What a record costs before its text is counted (objects, slots, the span itself).
_BASE_BYTES = 512
#: Past this many queued records, records are queued packed (``records.pack``): a long
#: queue then holds nothing the garbage collector tracks, and a short one costs no packing.
PACK_ABOVE = 4096


def _facts(terminal: bool, weight: int, nbytes: int) -> int:
    """A queued record's terminal flag, weight and bytes in one int (kept untracked)."""
    return (nbytes << 32) | (weight << 1) | terminal


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
        # Live records by number: their facts (_facts), and each record as it is or packed.
        self._facts: dict[int, int] = {}
        self._records: dict[int, Record] = {}
        self._packed: dict[int, bytes] = {}
        self._order = Numbers()  # numbers in arrival order (taken or evicted ones skipped)
        self._intermediate = Numbers()
        self._strippable = Numbers()
        self._next = 0
        self._weight = 0
        self._bytes = 0
        self._intermediate_weight = 0
        self.put_count = 0
        self.evicted_count = 0

    def __len__(self) -> int:
        return len(self._facts)

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
            if self._facts and self._over(weight, nbytes):
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
            self._keep(number, record)
            self._facts[number] = _facts(record.terminal, weight, nbytes)
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
            facts = self._facts
            order = self._order
            count = len(order) if limit is None else limit
            while order and len(records) < count:
                number = order.popleft()
                known = facts.pop(number, None)
                if known is not None:
                    self._forget(known)
                    records.append(self._release(number))
            for side in (self._intermediate, self._strippable):
                while side and side.first() not in facts:
                    side.popleft()
        return records

    def _keep(self, number: int, record: Record) -> None:
        packed = pack(record) if len(self._facts) >= PACK_ABOVE else None
        if packed is None:
            self._records[number] = record
        else:
            self._packed[number] = packed

    def _release(self, number: int) -> Record:
        record = self._records.pop(number, None)
        return record if record is not None else unpack(self._packed.pop(number))

    def _over(self, weight: int, nbytes: int) -> bool:
        return self._weight + weight > self._max or self._bytes + nbytes > self._max_bytes

    def _forget(self, known: int) -> None:
        weight = (known >> 1) & 0x7FFF_FFFF
        self._weight -= weight
        self._bytes -= known >> 32
        if not known & 1:
            self._intermediate_weight -= weight

    def _make_room(self, weight: int, nbytes: int) -> int:
        """Evict intermediate records, oldest first, then strip queued span events.

        Frees nothing when even evicting every intermediate record could not make room by
        the event count, so a hopeless put costs nothing.
        """
        freed = 0
        if self._weight - self._intermediate_weight + weight > self._max and not self._strippable:
            return 0
        facts = self._facts
        while self._intermediate and self._over(weight, nbytes):
            number = self._intermediate.popleft()
            known = facts.pop(number, None)
            if known is not None:
                self._forget(known)
                self._records.pop(number, None)
                self._packed.pop(number, None)
                self.evicted_count += 1
                freed += (known >> 1) & 0x7FFF_FFFF
        while self._strippable and self._over(weight, nbytes):
            number = self._strippable.popleft()
            known = facts.get(number)
            if known is not None and (known >> 1) & 0x7FFF_FFFF > 1:
                record = self._release(number)
                freed += record.weight - 1
                self._weight -= record.weight - 1
                slim = outcome_of(record)
                slim_bytes = record_bytes(slim)
                self._bytes += slim_bytes - (known >> 32)
                self._keep(number, slim)  # keeps its place in the order
                facts[number] = _facts(True, 1, slim_bytes)
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
