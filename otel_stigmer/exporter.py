"""A standard OTel ``SpanExporter`` for pipelines that only see ended spans."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_stigmer._guard import swallow_errors
from otel_stigmer.records import START, Record
from otel_stigmer.roles import Kind, role_of
from otel_stigmer.sequencing import Sequencer
from otel_stigmer.stats import DeliveryStats
from otel_stigmer.wiring import sender_for

if TYPE_CHECKING:
    from otel_stigmer.config import StigmerConfig
    from otel_stigmer.retry import RetryPolicy
    from otel_stigmer.sinks import EventSink

__all__ = ["DEFAULT_EXIT_TIMEOUT_MILLIS", "DEFAULT_EXPORT_WAIT_MILLIS", "StigmerSpanExporter"]

#: The longest the exporter's shutdown waits for a receiver (milliseconds). The SDK
#: shuts exporters down at interpreter exit with 30 s; a receiver that is down must not
#: hold a process that long.
DEFAULT_EXIT_TIMEOUT_MILLIS = 3_000
#: The longest one ``export`` waits for its events to be delivered (milliseconds).
DEFAULT_EXPORT_WAIT_MILLIS = 2_000


class StigmerSpanExporter(SpanExporter):
    """Exports ended workflow and task spans as Stigmer progress events.

    For each span it reports the started event, the span events and the outcome, so it
    is complete under a plain ``BatchSpanProcessor`` (started events then arrive when the
    span ends; use :class:`~otel_stigmer.StigmerSpanProcessor` or
    :func:`otel_stigmer.configure` for live events). ``export`` enqueues and then waits
    until those events are delivered, at most ``export_wait_millis`` and not at all while
    the receiver is failing, so ``provider.force_flush()`` returns with the events stored;
    undelivered events stay queued and are retried. At interpreter exit (the SDK's
    shutdown) a receiver that is down holds the process at most about
    ``export_wait_millis + exit_timeout_millis``.

    With no arguments (as ``OTEL_TRACES_EXPORTER=stigmer`` creates it) the settings come
    from the ``STIGMER_SERVICE_*`` environment variables; a misconfiguration raises
    :class:`~otel_stigmer.ConfigError` here, at start-up.

    Args:
        config: Connection and queue settings.
        sink: Deliver somewhere else than the Stigmer Service.
        retry_policy: Backoff between failed deliveries.
        exit_timeout_millis: Upper bound of :meth:`shutdown`, whatever it is given.
        export_wait_millis: Upper bound of the wait for delivery in :meth:`export`.
    """

    def __init__(
        self,
        config: StigmerConfig | None = None,
        *,
        sink: EventSink | None = None,
        retry_policy: RetryPolicy | None = None,
        exit_timeout_millis: int = DEFAULT_EXIT_TIMEOUT_MILLIS,
        export_wait_millis: int = DEFAULT_EXPORT_WAIT_MILLIS,
    ) -> None:
        # Spans arrive when they end, not when they start: number events by time.
        self.sender = sender_for(
            sink, config, retry_policy=retry_policy, sequencer=Sequencer(monotonic=False)
        )
        self._export_wait = export_wait_millis / 1000
        self._exit_timeout_millis = exit_timeout_millis
        self._shut_down = False

    @swallow_errors(SpanExportResult.FAILURE)
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Enqueue the events of ``spans`` and wait for their delivery; FAILURE after shutdown."""
        if self._shut_down:
            return SpanExportResult.FAILURE
        submitted = False
        for span in spans:
            role = role_of(span.attributes)
            if not role.reported:
                continue
            submitted = True
            if role.kind is Kind.MARKER:
                self.sender.submit(Record(START, span, role.terminal))
                continue
            self.sender.submit(Record(START, span, False))
            self.sender.submit(Record.ended(span))
        if submitted and not self.sender.failing:
            self.sender.wait_delivered(time.monotonic() + self._export_wait)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver everything exported so far; False if ``timeout_millis`` passed first."""
        return self.sender.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Flush and stop within ``timeout_millis`` (at most ``exit_timeout_millis``)."""
        self._shut_down = True
        self.sender.shutdown(min(timeout_millis, self._exit_timeout_millis))

    def stats(self) -> DeliveryStats:
        """Delivery counters."""
        return self.sender.stats()
