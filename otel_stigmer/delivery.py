"""Background delivery: a bounded queue, one sender thread, retries, flush and shutdown.

The calling thread only appends a record (a span and what happened to it) to the input
queue. The sender thread maps records to events, numbers them, keeps them in an outbox
and delivers the outbox in order, in batches, retrying with backoff until the sink takes
them. Both the input queue and the outbox are bounded; when one is full, events that
end a workflow or task (``*_completed``, ``*_failed``, ``*_cancelled``) are kept in
preference to intermediate ones, and every drop is counted by reason.
"""

from __future__ import annotations

import collections
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import grpc
from opentelemetry import context as otel_context
from opentelemetry.trace import SpanContext
from opentelemetry.util.types import Attributes

from otel_stigmer.events import TERMINAL_EVENT_TYPES, WorkflowProgressEvent
from otel_stigmer.exceptions import CallbackError
from otel_stigmer.mapping import SpanLike, ended_events, started_events
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.sequencing import Sequencer
from otel_stigmer.sinks import EventSink, PartialDeliveryError

if TYPE_CHECKING:
    from otel_stigmer.config import StigmerConfig

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_MAX_QUEUE_SIZE",
    "DeliveryStats",
    "Sender",
    "Spool",
    "sender_for",
]

_log = logging.getLogger("otel_stigmer.delivery")

DEFAULT_MAX_QUEUE_SIZE = 100_000
DEFAULT_MAX_BATCH_SIZE = 500
#: Stay well under gRPC's default 4 MiB message limit.
MAX_BATCH_BYTES = 3 * 1024 * 1024
#: Backoff after an authentication failure starts here (seconds): a bad key never storms.
_AUTH_INITIAL_BACKOFF = 2.0
_AUTH_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
_IDLE_WAIT = 1.0
#: How long the sender waits, once woken, for more records to share a pass (seconds).
_LINGER = 0.002
# While backing off, keep mapping new records into the outbox at this interval.
_BACKOFF_SLICE = 0.05

START = 0
END = 1
# A queued record: kind, span, terminal, weight in events.
_Queued = tuple[int, SpanLike, bool, int]


class _Entry:
    """An outbox slot; delivered and evicted ones are marked dead and skipped.

    The event is kept serialized: a parsed message holds about 1.3 KB of memory, its bytes
    about 0.3 KB, and parsing them again before a send costs well under a microsecond.
    """

    __slots__ = ("live", "payload")

    def __init__(self, event: WorkflowProgressEvent) -> None:
        self.payload = event.SerializeToString()
        self.live = True

    @property
    def size(self) -> int:
        return len(self.payload)

    @property
    def event(self) -> WorkflowProgressEvent:
        return WorkflowProgressEvent.FromString(self.payload)

    def kill(self) -> None:
        """Mark dead; a dead slot may wait in the outbox until the head reaches it."""
        self.live = False
        self.payload = b""


class Spool(Protocol):
    """Durable storage for undelivered events (see :mod:`otel_stigmer.spool`)."""

    def load(self) -> list[WorkflowProgressEvent]:
        """Events left undelivered by an earlier process, in delivery order."""

    def store(self, events: Sequence[WorkflowProgressEvent]) -> None:
        """Persist events that entered the outbox."""

    def remove(self, event_ids: Sequence[str]) -> None:
        """Forget events that were delivered or dropped."""

    def close(self) -> None:
        """Release the file."""


@dataclass
class DeliveryStats:
    """Counters of one pipeline (events unless named otherwise)."""

    records: int = 0
    enqueued: int = 0
    sent: int = 0
    retried: int = 0
    failed_calls: int = 0
    unauthenticated_calls: int = 0
    dropped: dict[str, int] = field(default_factory=collections.Counter)
    queue_depth: int = 0

    def as_dict(self) -> dict[str, object]:
        """A plain-dict copy, for logs and JSON."""
        return {
            "records": self.records,
            "enqueued": self.enqueued,
            "sent": self.sent,
            "retried": self.retried,
            "failed_calls": self.failed_calls,
            "unauthenticated_calls": self.unauthenticated_calls,
            "dropped": dict(self.dropped),
            "dropped_total": sum(self.dropped.values()),
            "queue_depth": self.queue_depth,
        }


class Sender:
    """Delivers span records to an :class:`EventSink` from one background thread.

    Args:
        sink: Where events go.
        max_queue_size: Bound of the input queue and of the outbox, in records/events.
        max_batch_size: Events per ``sink.send`` call.
        retry_policy: Backoff between failed sends.
        spool: Optional durable storage for undelivered events.
        synchronous: Map and send on the calling thread, without a background thread
            (for tests and in-process capture); failures are logged and dropped.
        sequencer: Numbers events (a monotonic :class:`Sequencer` by default).
    """

    _thread: threading.Thread | None
    _input: collections.deque[_Queued]
    _outbox: collections.deque[_Entry]
    # The outbox's intermediate entries, oldest first: an eviction pops the first live one
    # here, O(1) amortised, where a scan of a full outbox cost O(bound) per eviction.
    _intermediate: collections.deque[_Entry]
    _live: int
    _input_weight: int
    _input_intermediate: int
    _input_strippable: int
    _submitted: int
    _submitted_dropped: int
    _mapped: int
    _assigned: int
    _settled: int

    def __init__(
        self,
        sink: EventSink,
        *,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        retry_policy: RetryPolicy | None = None,
        spool: Spool | None = None,
        synchronous: bool = False,
        sequencer: Sequencer | None = None,
    ) -> None:
        self._sink = sink
        self._max_queue_size = max_queue_size
        self._max_batch_size = max_batch_size
        self._policy = retry_policy or RetryPolicy(max_backoff=5.0)
        self._spool = spool
        self._synchronous = synchronous
        self._rng = random.Random()
        self._sequencer = sequencer or Sequencer()
        self._stats = DeliveryStats()
        self._closed = False
        self._reset_runtime_state()
        self._restore_spool()
        _register_fork_hook(self)

    # ---- calling thread -------------------------------------------------------------

    def submit(self, kind: int, span: SpanLike, terminal: bool) -> None:
        """Queue what happened to ``span``; never blocks on I/O and never raises."""
        if self._closed:
            self._stats.dropped["after_shutdown"] += 1
            return
        if self._synchronous:
            self._deliver_now(kind, span)
            return
        if self._pid != os.getpid():
            self._after_fork()
        weight = _weight(kind, span)
        with self._lock:
            # The input queue is bounded in events, not spans: a span with many span
            # events weighs as much as the events it becomes, so memory follows the bound.
            over = self._input_weight + weight - self._max_queue_size
            if over > 0 and self._input and not (terminal and self._make_room(over)):
                if not (terminal and self._make_room(over - (weight - 1))):
                    self._stats.dropped["queue_full"] += weight
                    return
                # Keep the outcome of this span, not its span events.
                self._stats.dropped["queue_full"] += weight - 1
                span, weight = _outcome_of(span), 1
            self._input.append((kind, span, terminal, weight))
            self._input_weight += weight
            if not terminal:
                self._input_intermediate += weight
            elif weight > 1:
                self._input_strippable += weight - 1
            self._stats.records += 1
            self._submitted += 1
        if self._idle and not self._wake.is_set():
            self._wake.set()
        if self._thread is None:
            self._start_thread()

    def _make_room(self, needed: int) -> bool:
        """Free ``needed`` slots for a terminal record; False (and nothing freed) if impossible.

        Intermediate records go first, oldest first; then queued terminal records lose their
        span events and keep only their outcome. The counters spare the business thread a
        scan that cannot succeed.
        """
        if needed <= 0:
            return True
        if self._input_intermediate + self._input_strippable < needed:
            return False
        kept: collections.deque[_Queued] = collections.deque()
        freed = 0
        for item in self._input:
            if freed < needed and not item[2]:
                freed += item[3]
                self._input_intermediate -= item[3]
                self._submitted_dropped += 1
            else:
                kept.append(item)
        if freed < needed:
            stripped: collections.deque[_Queued] = collections.deque()
            for kind, span, terminal, weight in kept:
                if freed < needed and weight > 1:
                    freed += weight - 1
                    self._input_strippable -= weight - 1
                    stripped.append((kind, _outcome_of(span), terminal, 1))
                else:
                    stripped.append((kind, span, terminal, weight))
            kept = stripped
        self._stats.dropped["queue_full"] += freed
        self._input = kept
        self._input_weight -= freed
        return True

    # ---- control ----------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver everything submitted so far; False if the timeout passed first."""
        if self._synchronous or self._closed:
            return True
        deadline = time.monotonic() + max(0, timeout_millis) / 1000
        with self._lock:
            target_records = self._submitted
        if self._thread is None and target_records == 0 and not self._live:
            return True
        self._start_thread()
        self._wake.set()
        with self._progress:
            ok = self._progress.wait_for(
                lambda: self._mapped >= target_records - self._submitted_dropped,
                timeout=max(0.0, deadline - time.monotonic()),
            )
            target_events = self._assigned
            ok = ok and self._progress.wait_for(
                lambda: self._settled >= target_events,
                timeout=max(0.0, deadline - time.monotonic()),
            )
        if not ok:
            _log.warning(
                "otel-stigmer flush timed out after %d ms with %d events not yet delivered",
                timeout_millis,
                self.queue_depth(),
            )
        return ok

    def shutdown(self, timeout_millis: int = 30_000) -> bool:
        """Flush within the timeout, stop the thread and close the sink.

        Returns:
            True when nothing was left undelivered.
        """
        if self._closed:
            return True
        flushed = self.force_flush(timeout_millis)
        self._closed = True
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(0.1, timeout_millis / 1000))
        left = self.queue_depth()
        if left:
            where = "kept in the spool" if self._spool is not None else "dropped"
            _log.warning("otel-stigmer shut down with %d undelivered events (%s)", left, where)
            if self._spool is None:
                self._stats.dropped["shutdown"] += left
        try:
            self._sink.close()
        finally:
            if self._spool is not None:
                self._spool.close()
        return flushed and not left

    def stats(self) -> DeliveryStats:
        """A snapshot of the counters."""
        snapshot = DeliveryStats(**{**self._stats.__dict__})
        snapshot.dropped = collections.Counter(self._stats.dropped)
        snapshot.queue_depth = self.queue_depth()
        return snapshot

    def queue_depth(self) -> int:
        """Records and events waiting for delivery."""
        return len(self._input) + self._live

    # ---- sender thread ------------------------------------------------------------------

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
            self._drain_input(self._max_batch_size)
            if not self._live:
                if self._stop.is_set():
                    return
                self._idle = True
                if not self._input and self._wake.wait(_IDLE_WAIT):
                    # Woken by the first record after a pause: let a few more arrive so
                    # that one pass maps and sends them together, instead of one wake-up,
                    # GIL hand-over and call per span while a producer is busy.
                    self._stop.wait(_LINGER)
                self._idle = False
                self._wake.clear()
                continue
            error = self._send_head()
            if error is None:
                failures = 0
                continue
            failures += 1
            if self._stop.is_set():
                return
            self._back_off(error, failures)

    def _drain_input(self, limit: int | None = None) -> None:
        """Map queued records into the outbox, at most ``limit`` of them (all when None).

        The sender thread passes a limit so that it sends between passes: draining until
        the input is empty never ends while a producer keeps up, and nothing went out
        before the producer paused.
        """
        with self._lock:
            queue = self._input
            if not queue:
                return
            if limit is None or limit >= len(queue):
                records = list(queue)
                queue.clear()
                self._input_weight = self._input_intermediate = self._input_strippable = 0
            else:
                records = [queue.popleft() for _ in range(limit)]
                for _, _, terminal, weight in records:
                    self._input_weight -= weight
                    if not terminal:
                        self._input_intermediate -= weight
                    elif weight > 1:
                        self._input_strippable -= weight - 1
        events: list[WorkflowProgressEvent] = []
        for kind, span, _, _ in records:
            try:
                mapped = started_events(span) if kind == START else ended_events(span)
            except Exception:  # a span we cannot read must not stop delivery
                _log.exception("otel-stigmer could not map span %r", _span_name(span))
                continue
            for event in mapped:
                self._sequencer.assign(event)
                events.append(event)
        self._accept(events)
        with self._progress:
            self._mapped += len(records)
            self._progress.notify_all()

    def _accept(self, events: list[WorkflowProgressEvent]) -> None:
        if not events:
            return
        if self._spool is not None:
            try:
                self._spool.store(events)
            except Exception:
                _log.exception("otel-stigmer could not write to the spool")
        for event in events:
            terminal = event.event_type in TERMINAL_EVENT_TYPES
            if self._live >= self._max_queue_size and not self._evict_for(terminal):
                self._settle_dropped([event], "queue_full")
                continue
            self._append(event, terminal)
            self._stats.enqueued += 1
        with self._progress:
            self._assigned += len(events)

    def _append(self, event: WorkflowProgressEvent, terminal: bool) -> None:
        entry = _Entry(event)
        self._outbox.append(entry)
        if not terminal:
            self._intermediate.append(entry)
        self._live += 1

    def _evict_for(self, terminal: bool) -> bool:
        if not terminal:
            return False
        intermediate = self._intermediate
        while intermediate:
            entry = intermediate.popleft()
            if entry.live:
                event = entry.event
                self._forget([entry])
                self._settle_dropped([event], "queue_full", counted=True)
                return True
        return False

    def _forget(self, entries: Sequence[_Entry]) -> None:
        """Take delivered or evicted entries out of the outbox (dead ones leave at the head)."""
        for entry in entries:
            entry.kill()
        self._live -= len(entries)
        for queue in (self._outbox, self._intermediate):
            while queue and not queue[0].live:
                queue.popleft()

    def _send_head(self) -> CallbackError | None:
        entries: list[_Entry] = []
        size = 0
        for entry in self._outbox:
            if not entry.live:
                continue
            if entries and (
                len(entries) >= self._max_batch_size or size + entry.size > MAX_BATCH_BYTES
            ):
                break
            entries.append(entry)
            size += entry.size
        batch = [entry.event for entry in entries]
        try:
            rejected = self._sink.send(batch) or ()
        except PartialDeliveryError as error:
            self._forget_delivered(entries, error.delivered_ids)
            return error
        except CallbackError as error:
            return error
        except Exception as error:  # a broken sink is treated like an unavailable receiver
            _log.exception("otel-stigmer event sink failed")
            return CallbackError(grpc.StatusCode.UNKNOWN, type(error).__name__)
        self._forget(entries)
        rejected_ids = {event.event_id for event in rejected}
        if rejected_ids:
            _log.error(
                "otel-stigmer: the receiver refused %d invalid events (dropped)", len(rejected_ids)
            )
            self._stats.dropped["rejected"] += len(rejected_ids)
        self._stats.sent += len(batch) - len(rejected_ids)
        self._settle(batch)
        return None

    def _forget_delivered(self, entries: list[_Entry], delivered_ids: frozenset[str]) -> None:
        # Undelivered events of the batch stay in the outbox, in order.
        done = [entry for entry in entries if entry.event.event_id in delivered_ids]
        delivered = [entry.event for entry in done]
        self._forget(done)
        self._stats.sent += len(done)
        self._settle(delivered)

    def _back_off(self, error: CallbackError, failures: int) -> None:
        self._stats.failed_calls += 1
        self._stats.retried += min(self._live, self._max_batch_size)
        if error.code in _AUTH_CODES:
            self._stats.unauthenticated_calls += 1
            delay = max(_AUTH_INITIAL_BACKOFF, self._policy.backoff(failures, rng=self._rng))
            delay = min(delay * 2 ** min(failures - 1, 5), 60.0)
            if failures == 1:
                _log.error(
                    "otel-stigmer: the Stigmer Service refused the API key (%s); events are "
                    "kept and retried every %.0f s or more. Check STIGMER_SERVICE_API_KEY.",
                    error.code.name,
                    delay,
                )
        else:
            delay = self._policy.backoff(failures, rng=self._rng, server_delay=error.retry_delay)
            if failures == 1:
                _log.warning(
                    "otel-stigmer: delivery failed (%s: %s); retrying with backoff",
                    error.code.name,
                    error.details,
                )
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._stop.wait(min(remaining, _BACKOFF_SLICE)):
                return
            self._drain_input()

    def _settle(self, events: Sequence[WorkflowProgressEvent]) -> None:
        self._unspool(events)
        with self._progress:
            self._settled += len(events)
            self._progress.notify_all()

    def _settle_dropped(
        self, events: Sequence[WorkflowProgressEvent], reason: str, *, counted: bool = False
    ) -> None:
        self._stats.dropped[reason] += len(events)
        if counted:
            self._settle(events)
        else:
            with self._progress:
                self._settled += len(events)
                self._progress.notify_all()
            self._unspool(events)

    def _unspool(self, events: Sequence[WorkflowProgressEvent]) -> None:
        # A failing spool (disk full, file gone) must never stop the sender thread.
        if self._spool is None:
            return
        try:
            self._spool.remove([event.event_id for event in events])
        except Exception:
            _log.exception("otel-stigmer could not update the spool")

    # ---- synchronous mode ---------------------------------------------------------------

    def _deliver_now(self, kind: int, span: SpanLike) -> None:
        with self._lock:
            events = started_events(span) if kind == START else ended_events(span)
            for event in events:
                self._sequencer.assign(event)
            if not events:
                return
            self._stats.enqueued += len(events)
            try:
                self._sink.send(events)
            except CallbackError as error:
                self._stats.failed_calls += 1
                self._stats.dropped["send_failed"] += len(events)
                _log.warning("otel-stigmer: synchronous delivery failed: %s", error.code.name)
            else:
                self._stats.sent += len(events)

    # ---- lifecycle --------------------------------------------------------------------

    def _reset_runtime_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._progress = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._input = collections.deque()
        self._outbox = collections.deque()
        self._intermediate = collections.deque()
        self._live = 0
        self._thread = None
        self._idle = False
        self._input_weight = 0
        self._input_intermediate = 0
        self._input_strippable = 0
        self._submitted = 0
        self._submitted_dropped = 0
        self._mapped = 0
        self._assigned = 0
        self._settled = 0

    def _restore_spool(self) -> None:
        if self._spool is None:
            return
        restored = self._spool.load()
        if restored:
            _log.info("otel-stigmer: %d undelivered events restored from the spool", len(restored))
            for event in restored:
                self._append(event, event.event_type in TERMINAL_EVENT_TYPES)
            self._assigned += len(restored)
            self._stats.enqueued += len(restored)
            self._start_thread()

    def _after_fork(self) -> None:
        # The parent keeps delivering what it queued; the child starts empty with its own
        # thread (and, in the gRPC sink, its own channel).
        self._reset_runtime_state()
        self._stats = DeliveryStats()


def _weight(kind: int, span: SpanLike) -> int:
    """The number of events a record can become (span events plus the outcome)."""
    if kind == START:
        return 1
    try:
        return 1 + len(span.events)
    except Exception:  # an unreadable span still takes one slot
        return 1


@dataclass(frozen=True)
class _Outcome:
    """What the outcome of an ended span needs: the span without its other span events.

    Queued in place of a span whose span events had to be dropped, so the memory the span
    and its events hold is released at once.
    """

    name: str
    context: SpanContext | None
    parent: SpanContext | None
    start_time: int | None
    end_time: int | None
    attributes: Attributes
    events: tuple[Any, ...]
    status: Any


def _outcome_of(span: SpanLike) -> SpanLike:
    exceptions = [event for event in span.events if event.name == "exception"]
    return _Outcome(
        span.name,
        span.context,
        span.parent,
        span.start_time,
        span.end_time,
        span.attributes,
        tuple(exceptions[-1:]),
        span.status,
    )


def _span_name(span: SpanLike) -> str:
    try:
        return span.name
    except Exception:
        return "?"


_senders: weakref.WeakSet[Sender] = weakref.WeakSet()
_fork_hook_installed = False


def _register_fork_hook(sender: Sender) -> None:
    global _fork_hook_installed  # noqa: PLW0603 - one hook per process
    _senders.add(sender)
    if not _fork_hook_installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_reset_all_after_fork)
        _fork_hook_installed = True


def _reset_all_after_fork() -> None:
    for sender in list(_senders):
        sender._after_fork()


def sender_for(
    sink: EventSink | None,
    config: StigmerConfig | None,
    *,
    retry_policy: RetryPolicy | None = None,
    spool: Spool | None = None,
    synchronous: bool = False,
    sequencer: Sequencer | None = None,
) -> Sender:
    """Build a :class:`Sender` from a sink and/or a config.

    Without a sink, events go to the Stigmer Service of ``config`` (read from the
    environment when ``config`` is None too); the config also supplies the queue and batch
    sizes and, with ``spool_path``, a SQLite spool.
    """
    if sink is None:
        if config is None:
            from otel_stigmer.config import StigmerConfig  # noqa: PLC0415 - avoid a cycle

            config = StigmerConfig.from_env()
        from otel_stigmer.protocol import sink_for  # noqa: PLC0415 - avoid a cycle

        sink = sink_for(config)
    if spool is None and config is not None and config.spool_path:
        from otel_stigmer.spool import SqliteSpool  # noqa: PLC0415 - optional feature

        spool = SqliteSpool(config.spool_path, max_restore=max(1, config.max_queue_size // 2))
    return Sender(
        sink,
        max_queue_size=config.max_queue_size if config else DEFAULT_MAX_QUEUE_SIZE,
        max_batch_size=config.max_batch_size if config else DEFAULT_MAX_BATCH_SIZE,
        retry_policy=retry_policy,
        spool=spool,
        synchronous=synchronous,
        sequencer=sequencer,
    )
