"""The send loop: one background thread from records to delivered events.

Calling threads :meth:`Sender.submit` records to the :class:`~otel_stigmer.intake.Intake`;
the sender thread maps and numbers them in that order (so numbers follow what happened),
keeps the events in the :class:`~otel_stigmer.outbox.Outbox` and hands the oldest to the
:class:`~otel_stigmer.sinks.EventSink`, backing off as the :class:`RetryPolicy` says.
Flush and shutdown share one deadline.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Sequence

from opentelemetry import context as otel_context

from otel_stigmer._child_exit import flush_children_at_exit
from otel_stigmer._forksafe import CallGate
from otel_stigmer.delivery_log import DeliveryLog
from otel_stigmer.events import EncodedEvents
from otel_stigmer.exceptions import CallbackError
from otel_stigmer.intake import Intake
from otel_stigmer.outbox import EVENT_ID, PAYLOAD, Entry, Outbox
from otel_stigmer.records import Record, map_record
from otel_stigmer.retry import AUTH_CODES, SHRINK_CODES, RetryPolicy, broken_sink_error
from otel_stigmer.sequencing import Sequencer
from otel_stigmer.sinks import EventSink, PartialDeliveryError, Refused
from otel_stigmer.spool import Spool
from otel_stigmer.stats import DeliveryStats

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_QUEUE_BYTES",
    "DEFAULT_MAX_QUEUE_SIZE",
    "DEFAULT_UNSPOOLED_WINDOW",
    "Sender",
]

_log = logging.getLogger("otel_stigmer.delivery")

DEFAULT_MAX_QUEUE_SIZE = 100_000
DEFAULT_MAX_BATCH_SIZE = 500
#: Records mapped per step when a whole queue is mapped at once.
_MAP_CHUNK = 2048
#: Bound of the input queue and of the outbox in (estimated) bytes, each.
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
#: With a spool, at most this many events wait unspooled in the input queue: past it, the
#: calling thread spools the queue itself (back-pressure instead of an unbounded window).
DEFAULT_UNSPOOLED_WINDOW = 1_000
_IDLE_WAIT = 1.0
_LINGER = 0.002  # once woken, wait this long for more records to share the pass
_BACKOFF_SLICE = 0.05  # while backing off, map new records into the outbox this often


class Sender:
    """Delivers records to an :class:`EventSink` from one background thread.

    Args:
        sink: Where events go.
        max_queue_size: Bound of the input queue and of the outbox, in events.
        max_queue_bytes: Their bound in bytes (estimated for the input queue).
        max_batch_size: Events per ``sink.send`` call.
        retry_policy: Backoff between failed sends (auth pauses included).
        spool: Optional durable storage for undelivered events.
        unspooled_window: With a spool, the events the input queue may hold before the
            calling thread maps and spools them itself.
        sequencer: Numbers events (a monotonic :class:`Sequencer` by default).

    Attributes:
        failing: True while the last send failed (the pipeline is backing off).
    """

    _thread: threading.Thread | None
    _batch_size: int

    def __init__(
        self,
        sink: EventSink,
        *,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
        retry_policy: RetryPolicy | None = None,
        spool: Spool | None = None,
        sequencer: Sequencer | None = None,
        unspooled_window: int = DEFAULT_UNSPOOLED_WINDOW,
    ) -> None:
        self._sink = sink
        self._max_queue_size = max_queue_size
        self._max_batch_size = max_batch_size
        self._max_queue_bytes = max_queue_bytes
        self._policy = retry_policy or RetryPolicy(max_backoff=5.0)
        self._spool = spool
        self._unspooled_window = unspooled_window
        self._sequencer = sequencer or Sequencer()
        self._rng = random.Random()
        self._closed = False
        # A fork waits for the sink call in flight: a child forked mid-call could not
        # deliver its own events (gRPC skips its fork handlers while a call runs).
        self._gate = CallGate()
        self._reset()
        restored = self._outbox.restore()
        if restored:
            DeliveryLog.restored(restored)
            self._stats.enqueued += restored
            self._start_thread()
        _senders.add(self)
        flush_children_at_exit(self)

    def submit(self, record: Record) -> None:
        """Queue ``record``; never blocks on I/O and never raises."""
        if self._closed:
            self._stats.dropped["after_shutdown"] += record.weight
            return
        if self._pid != os.getpid():
            self._reset()  # a forked child starts empty, with its own thread
        self._count_drop("queue_full", self._intake.put(record))
        self._stats.records += 1
        if self._spool is not None and self._intake.weight > self._unspooled_window:
            self._spool_on_caller()
        if self._idle and not self._wake.is_set():
            self._wake.set()
        if self._thread is None:
            self._start_thread()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver everything submitted so far; False if the timeout passed first."""
        ok = self.wait_delivered(time.monotonic() + max(0, timeout_millis) / 1000)
        if not ok:
            DeliveryLog.flush_timed_out(timeout_millis, self.queue_depth())
        return ok

    def wait_delivered(self, deadline: float) -> bool:
        """Wait until everything submitted so far is delivered or dropped, or ``deadline``."""
        if self._closed:
            return True
        target_records = self._intake.put_count
        if self._thread is None and target_records == 0 and not self._outbox.live:
            return True
        self._start_thread()
        self._wake.set()
        outbox = self._outbox
        with outbox.progress:
            ok = outbox.progress.wait_for(
                lambda: self._mapped >= target_records - self._intake.evicted_count,
                timeout=max(0.0, deadline - time.monotonic()),
            )
            target_events = outbox.added
            return ok and outbox.progress.wait_for(
                lambda: outbox.settled >= target_events,
                timeout=max(0.0, deadline - time.monotonic()),
            )

    def shutdown(self, timeout_millis: int = 30_000) -> bool:
        """Flush and stop, all within ``timeout_millis``; True when nothing was left."""
        if self._closed:
            return True
        deadline = time.monotonic() + max(0, timeout_millis) / 1000
        flushed = self.wait_delivered(deadline)
        self._closed = True
        self._stop.set()
        self._wake.set()
        try:  # closing the sink first cuts short a call in flight to a receiver that hangs
            self._sink.close()
        except Exception:
            _log.exception("otel-stigmer could not close the event sink")
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if not thread.is_alive():
                self._map_next(None)  # into the spool, if there is one
        left = self.queue_depth()
        if left:
            DeliveryLog.shut_down_with(left, spooled=self._spool is not None)
            self._count_drop("shutdown", 0 if self._spool is not None else left)
        self._outbox.close()
        return flushed and not left

    def stats(self) -> DeliveryStats:
        """A snapshot of the counters."""
        snapshot = self._stats.copy()
        snapshot.queue_depth = self.queue_depth()
        return snapshot

    def queue_depth(self) -> int:
        """Records and events waiting for delivery."""
        return len(self._intake) + self._outbox.live

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="otel-stigmer-sender", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        # Our own gRPC calls must not be traced by an auto-instrumentation.
        otel_context.attach(
            otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True)
        )
        failures = 0
        while True:
            self._map_next(self._max_batch_size)
            if not self._outbox.live:
                if self._stop.is_set():
                    return
                self._idle = True
                if not len(self._intake) and self._wake.wait(_IDLE_WAIT):
                    self._stop.wait(_LINGER)  # let a few more records share this pass
                self._idle = False
                self._wake.clear()
                continue
            error, progressed = self._send_head()
            if error is None:
                failures = 0
                self._batch_size = min(self._max_batch_size, self._batch_size * 2)
                self.failing = False
                continue
            failures = 1 if progressed else failures + 1
            if self._stop.is_set():
                return
            self._back_off(error, failures)

    def _spool_on_caller(self) -> None:
        """The sender is behind: map and spool the queue on the calling thread now.

        Instrumentation is suppressed meanwhile: a traced spool write would end spans that
        come back here.
        """
        token = otel_context.attach(
            otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True)
        )
        try:
            self._map_next(None)
        finally:
            otel_context.detach(token)

    def _map_next(self, limit: int | None) -> None:
        """Map, number and spool the oldest ``limit`` queued records (all when None).

        Runs on the sender thread and, when the unspooled window is full, on a calling
        thread: taking and numbering under one lock keeps numbers in the order of events.
        All of a full queue is mapped :data:`_MAP_CHUNK` records at a time, so the mapped
        events alive at once stay few whatever the queue holds.
        """
        with self._outbox_lock:
            if limit is not None:
                self._map_records(self._intake.take(limit))
                return
            for _ in range(len(self._intake) // _MAP_CHUNK + 1):
                if not self._map_records(self._intake.take(_MAP_CHUNK)):
                    return

    def _map_records(self, records: list[Record]) -> int:
        """Map, number and add ``records`` to the outbox (outbox lock held); return how many."""
        if not records:
            return 0
        events = [event for record in records for event in map_record(record)]
        for event in events:
            self._sequencer.assign(event)
        self._stats.enqueued += self._outbox.add(events)
        with self._outbox.progress:
            self._mapped += len(records)
            self._outbox.progress.notify_all()
        return len(records)

    def _send_head(self) -> tuple[CallbackError | None, bool]:
        """Send the oldest events; return the error, if any, and whether some went out."""
        with self._outbox_lock:
            entries = self._outbox.head(self._batch_size)
            events = EncodedEvents([entry[PAYLOAD] for entry in entries])
        try:
            with self._gate.call():
                refused = self._sink.send(events) or ()
        except PartialDeliveryError as error:
            done = error.delivered_ids
            self._settle([entry for entry in entries if entry[EVENT_ID] in done], error.refused)
            return error, bool(done)
        except CallbackError as error:
            return error, False
        except Exception as error:  # a broken sink is treated like an unavailable receiver
            _log.exception("otel-stigmer event sink failed")
            return broken_sink_error(error), False
        self._settle(entries, refused)
        return None, True

    def _settle(self, entries: list[Entry], refused: Sequence[Refused]) -> None:
        with self._outbox_lock:
            self._settle_locked(entries, refused)

    def _settle_locked(self, entries: list[Entry], refused: Sequence[Refused]) -> None:
        # By entry, not by id: two entries may carry one id (a span reported twice).
        refusals = {item.event.event_id: item for item in refused}
        delivered = [entry for entry in entries if entry[EVENT_ID] not in refusals]
        for item in refusals.values():
            self._outbox.dropped(
                [e for e in entries if e[EVENT_ID] == item.event.event_id], item.reason
            )
            self._log.refused(item)
        self._stats.sent += len(delivered)
        self._outbox.delivered(delivered)

    def _back_off(self, error: CallbackError, failures: int) -> None:
        self.failing = True
        self._stats.failed_calls += 1
        self._stats.retried += min(self._outbox.live, self._batch_size)
        if error.code in SHRINK_CODES:  # too slow: a smaller batch may pass, never a livelock
            self._batch_size = max(1, self._batch_size // 2)
        if error.code in AUTH_CODES:
            self._stats.unauthenticated_calls += 1
        delay = self._policy.pipeline_delay(
            error.code, failures, rng=self._rng, server_delay=error.retry_delay
        )
        self._log.failure(error, delay)
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.wait(min(remaining, _BACKOFF_SLICE)):
                return
            self._map_next(None)

    def _reset(self) -> None:
        """Fresh runtime state: at construction, and in a forked child (which starts empty)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        # Guards the outbox and the numbering: held while mapping and settling, never
        # during a sink call.
        self._outbox_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._intake = Intake(self._max_queue_size, self._max_queue_bytes)
        self._outbox = Outbox(
            self._max_queue_size, self._max_queue_bytes, self._spool, self._count_drop
        )
        self._stats = DeliveryStats()
        self._thread = None
        self._idle = False
        self.failing = False
        self._batch_size = self._max_batch_size
        self._mapped = 0
        self._log = DeliveryLog()

    def _count_drop(self, reason: str, count: int) -> None:
        if count:
            self._stats.dropped[reason] += count


_senders: weakref.WeakSet[Sender] = weakref.WeakSet()


def _reset_all_after_fork() -> None:
    for sender in list(_senders):
        sender._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)
