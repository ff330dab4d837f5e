"""The input queue: records from calling threads, bounded in events, never blocking.

The bound counts events, not records: an ended span with many span events weighs as much
as the events it becomes, so memory follows the bound. When full, intermediate records
(starts, span events) give way to terminal ones, oldest first; then queued terminal
records lose their span events and keep only their outcome. Every drop is counted.
"""

from __future__ import annotations

import collections
import threading

from otel_stigmer.records import Record, outcome_of

__all__ = ["Intake"]


class Intake:
    """A bounded FIFO of :class:`Record` shared by calling threads and the sender thread.

    Attributes:
        put_count: Records accepted so far.
        evicted_count: Accepted records later dropped to make room (never mapped).
    """

    def __init__(self, max_events: int) -> None:
        self._max = max_events
        self._lock = threading.Lock()
        self._queue: collections.deque[Record] = collections.deque()
        self._weight = 0
        self._intermediate = 0  # weight of non-terminal records
        self._strippable = 0  # span events of terminal records that could be stripped
        self.put_count = 0
        self.evicted_count = 0

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, record: Record) -> int:
        """Queue ``record``; return how many events were dropped to respect the bound."""
        with self._lock:
            over = self._weight + record.weight - self._max
            dropped = 0
            if over > 0 and self._queue:
                if not record.terminal:
                    return record.weight
                freed = self._make_room(over)
                if freed < over:
                    # Keep the outcome of this span, not its span events.
                    freed += self._make_room(over - freed - (record.weight - 1))
                    if self._weight + 1 > self._max:
                        return record.weight + freed
                    dropped = record.weight - 1
                    record = outcome_of(record)
                dropped += freed
            self._queue.append(record)
            self._add(record, 1)
            self.put_count += 1
            return dropped

    def take(self, limit: int | None = None) -> list[Record]:
        """Remove and return up to ``limit`` records (all when None), oldest first."""
        with self._lock:
            queue = self._queue
            if limit is None or limit >= len(queue):
                records = list(queue)
                queue.clear()
                self._weight = self._intermediate = self._strippable = 0
                return records
            records = [queue.popleft() for _ in range(limit)]
            for record in records:
                self._add(record, -1)
            return records

    def _add(self, record: Record, sign: int) -> None:
        self._weight += sign * record.weight
        if not record.terminal:
            self._intermediate += sign * record.weight
        elif record.weight > 1:
            self._strippable += sign * (record.weight - 1)

    def _make_room(self, needed: int) -> int:
        """Free up to ``needed`` events for a terminal record; return how many were freed.

        Frees nothing when ``needed`` cannot be reached: the counters spare the business
        thread a scan that cannot succeed.
        """
        if needed <= 0 or self._intermediate + self._strippable < needed:
            return 0
        kept: collections.deque[Record] = collections.deque()
        freed = 0
        for record in self._queue:
            if freed < needed and not record.terminal:
                freed += record.weight
                self.evicted_count += 1
            else:
                kept.append(record)
        if freed < needed:
            stripped: collections.deque[Record] = collections.deque()
            for record in kept:
                if freed < needed and record.weight > 1:
                    freed += record.weight - 1
                    stripped.append(outcome_of(record))
                else:
                    stripped.append(record)
            kept = stripped
        self._queue = kept
        self._weight = self._intermediate = self._strippable = 0
        for record in kept:
            self._add(record, 1)
        return freed
