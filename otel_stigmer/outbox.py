"""The outbox: numbered events waiting for delivery, in order, bounded, optionally spooled.

Events are kept serialized (deterministically), so a retry sends the very bytes of the
first attempt. When the outbox is full, a terminal event (``*_completed``, ``*_failed``,
``*_cancelled``) evicts the oldest intermediate one. With a spool, events are stored when
they enter and removed once delivered or dropped; flush accounting (``added`` and
``settled``) lives here too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from otel_stigmer._numbers import Numbers
from otel_stigmer.events import TERMINAL_EVENT_TYPES, WorkflowProgressEvent
from otel_stigmer.spool import Spool

__all__ = ["EVENT_ID", "MAX_BATCH_BYTES", "PAYLOAD", "Entry", "Outbox"]

_log = logging.getLogger("otel_stigmer.delivery")

#: Stay well under gRPC's default 4 MiB message limit.
MAX_BATCH_BYTES = 3 * 1024 * 1024


#: An outbox slot: the event's number in the outbox, its deterministic serialization and
#: its id. A parsed message holds about 1.3 KB of memory, its bytes about 0.3 KB, and
#: parsing them again before a send costs well under a microsecond.
Entry = tuple[int, bytes, str]
#: Where an :data:`Entry` keeps its bytes and its event id.
PAYLOAD: Final = 1
EVENT_ID: Final = 2


class Outbox:
    """Events accepted for delivery, oldest first.

    A full outbox costs the garbage collector nothing per event: bytes and ids live in
    dicts by number (dicts of ints, bytes and text are not tracked) and numbers in arrays
    (not visited), never in objects per event.

    Args:
        max_events: Bound on live events.
        max_bytes: Bound on the live events' serialized bytes.
        spool: Durable storage for events not yet delivered, if any.
        on_drop: Called with a reason and a count for each drop.
    """

    def __init__(
        self,
        max_events: int,
        max_bytes: int,
        spool: Spool | None,
        on_drop: Callable[[str, int], None],
    ) -> None:
        self._max = max_events
        self._max_bytes = max_bytes
        self.bytes = 0
        self._spool = spool
        self._on_drop = on_drop
        # Live events by number; numbers in order (delivered and evicted ones are skipped).
        self._payloads: dict[int, bytes] = {}
        self._ids: dict[int, str] = {}
        self._order = Numbers()
        # Intermediate events, oldest first: an eviction pops the first live one here,
        # O(1) amortised, where a scan of a full outbox cost O(bound) per eviction.
        self._intermediate = Numbers()
        self._next = 0
        self.live = 0
        self.added = 0
        self.settled = 0
        self.progress = threading.Condition()

    def add(self, events: Sequence[WorkflowProgressEvent]) -> int:
        """Accept numbered events; return how many entered (the rest were dropped)."""
        if not events:
            return 0
        self._spool_call("write to", lambda spool: spool.store(events))
        entered = 0
        for event in events:
            payload = event.SerializeToString(deterministic=True)
            terminal = event.event_type in TERMINAL_EVENT_TYPES
            size = len(payload)
            full = self.live >= self._max or self.bytes + size > self._max_bytes
            if full and self.live and not self._room_for(terminal, size):
                self._dropped([event.event_id], "queue_full")
                continue
            self._append(payload, event.event_id, terminal)
            entered += 1
        with self.progress:
            self.added += len(events)
        return entered

    def restore(self) -> int:
        """Load what an earlier process left in the spool; return how many events."""
        if self._spool is None:
            return 0
        restored = self._spool.load()
        for event in restored:
            self._append(
                event.SerializeToString(deterministic=True),
                event.event_id,
                event.event_type in TERMINAL_EVENT_TYPES,
            )
        with self.progress:
            self.added += len(restored)
        return len(restored)

    def head(self, max_events: int) -> list[Entry]:
        """The oldest live entries: at most ``max_events`` and :data:`MAX_BATCH_BYTES`."""
        entries: list[Entry] = []
        size = 0
        payloads = self._payloads
        ids = self._ids
        for number in self._order:
            payload = payloads.get(number)
            if payload is None:
                continue
            if entries and (len(entries) >= max_events or size + len(payload) > MAX_BATCH_BYTES):
                break
            entries.append((number, payload, ids[number]))
            size += len(payload)
        return entries

    def delivered(self, entries: Iterable[Entry]) -> None:
        """Forget entries the receiver took."""
        self._settle(self._forget(entries))

    def dropped(self, entries: Iterable[Entry], reason: str) -> None:
        """Forget entries that can never be delivered, counted under ``reason``."""
        ids = self._forget(entries)
        self._on_drop(reason, len(ids))
        self._settle(ids)

    def drop_all(self, reason: str) -> int:
        """Give up on every live entry (shutdown without a spool); return how many."""
        return self._count_live(lambda live: self.dropped(live, reason))

    def _room_for(self, terminal: bool, size: int) -> bool:
        """Whether an event fits, after evicting intermediate events for a terminal one."""
        while self.live and (self.live >= self._max or self.bytes + size > self._max_bytes):
            if not (terminal and self._evict_one()):
                return False
        return True

    def _append(self, payload: bytes, event_id: str, terminal: bool) -> None:
        number = self._next
        self._next = number + 1
        self._payloads[number] = payload
        self._ids[number] = event_id
        self._order.append(number)
        if not terminal:
            self._intermediate.append(number)
        self.live += 1
        self.bytes += len(payload)

    def _evict_one(self) -> bool:
        payloads = self._payloads
        while self._intermediate:
            number = self._intermediate.popleft()
            payload = payloads.get(number)
            if payload is not None:
                self.dropped([(number, payload, self._ids[number])], "queue_full")
                return True
        return False

    def _forget(self, entries: Iterable[Entry]) -> list[str]:
        ids = []
        payloads = self._payloads
        for entry in entries:
            payload = payloads.pop(entry[0], None)
            if payload is not None:
                self.bytes -= len(payload)
                ids.append(self._ids.pop(entry[0]))
        self.live -= len(ids)
        for queue in (self._order, self._intermediate):
            while queue and queue.first() not in payloads:
                queue.popleft()
        return ids

    def _dropped(self, event_ids: list[str], reason: str) -> None:
        self._on_drop(reason, len(event_ids))
        self._settle(event_ids)

    def _settle(self, event_ids: list[str]) -> None:
        if event_ids:
            self._spool_call("update", lambda spool: spool.remove(event_ids))
        with self.progress:
            self.settled += len(event_ids)
            self.progress.notify_all()

    def _count_live(self, action: Callable[[list[Entry]], None]) -> int:
        ids = self._ids
        live = [(number, payload, ids[number]) for number, payload in self._payloads.items()]
        action(live)
        return len(live)

    def _spool_call(self, verb: str, call: Callable[[Spool], None]) -> None:
        # A failing spool (disk full, file gone) must never stop the sender thread.
        if self._spool is None:
            return
        try:
            call(self._spool)
        except Exception:
            _log.exception("otel-stigmer could not %s the spool", verb)

    def close(self) -> None:
        """Close the spool, if any."""
        if self._spool is not None:
            self._spool.close()
