"""A standard OTel ``SpanExporter`` for pipelines that only see ended spans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_stigmer import conventions as conv
from otel_stigmer._guard import swallow_errors
from otel_stigmer.delivery import END, START, DeliveryStats, sender_for
from otel_stigmer.events import TERMINAL_EVENT_TYPES
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.sequencing import Sequencer
from otel_stigmer.sinks import EventSink

if TYPE_CHECKING:
    from otel_stigmer.config import StigmerConfig

__all__ = ["StigmerSpanExporter"]


class StigmerSpanExporter(SpanExporter):
    """Exports ended workflow and task spans as Stigmer progress events.

    For each span it reports the started event, the span events and the outcome, so it
    is complete under a plain ``BatchSpanProcessor`` (started events then arrive when the
    span ends; use :class:`~otel_stigmer.StigmerSpanProcessor` or
    :func:`otel_stigmer.configure` for live starts). ``export`` only enqueues: delivery,
    retries and the bounded queue are the same as the live processor's, so a batch is
    never lost because the receiver was briefly down.

    With no arguments (as ``OTEL_TRACES_EXPORTER=stigmer`` creates it) the settings come
    from the ``STIGMER_SERVICE_*`` environment variables; a misconfiguration raises
    :class:`~otel_stigmer.ConfigError` here, at start-up.
    """

    def __init__(
        self,
        config: StigmerConfig | None = None,
        *,
        sink: EventSink | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        # Spans arrive when they end, not when they start: number events by time.
        self.sender = sender_for(
            sink, config, retry_policy=retry_policy, sequencer=Sequencer(monotonic=False)
        )
        self._shut_down = False

    @swallow_errors(SpanExportResult.FAILURE)
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Enqueue the events of ``spans``; FAILURE only after shutdown."""
        if self._shut_down:
            return SpanExportResult.FAILURE
        for span in spans:
            attributes = span.attributes
            if not attributes or conv.WORKFLOW_EXECUTION_ID not in attributes:
                continue
            if conv.EVENT_TYPE in attributes:
                terminal = attributes.get(conv.EVENT_TYPE) in TERMINAL_EVENT_TYPES
                self.sender.submit(START, span, terminal)
                continue
            self.sender.submit(START, span, False)
            self.sender.submit(END, span, True)
        return SpanExportResult.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver everything exported so far; False if ``timeout_millis`` passed first."""
        return self.sender.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Flush within the timeout and stop."""
        self._shut_down = True
        self.sender.shutdown(timeout_millis)

    def stats(self) -> DeliveryStats:
        """Delivery counters."""
        return self.sender.stats()
