"""The live path: a span processor that reports starts as they happen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from otel_stigmer import _mute
from otel_stigmer import conventions as conv
from otel_stigmer._guard import swallow_errors
from otel_stigmer.delivery import END, START, DeliveryStats, sender_for
from otel_stigmer.events import TERMINAL_EVENT_TYPES
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.sinks import EventSink

if TYPE_CHECKING:
    from otel_stigmer.config import StigmerConfig
    from otel_stigmer.delivery import Spool

__all__ = ["StigmerSpanProcessor"]

_INHERITED = (conv.WORKFLOW_EXECUTION_ID, conv.WORKFLOW_NAME)


class StigmerSpanProcessor(SpanProcessor):
    """Turns workflow and task spans into Stigmer progress events, live.

    ``on_start`` reports ``*_started`` at once and writes the inherited execution id and
    workflow name onto task spans (from the parent span in this process, else from OTel
    baggage); ``on_end`` reports span events and the outcome. Both only enqueue: delivery
    runs on one background thread with retries, ordering and a bounded queue.

    Args:
        sink: Where events go; a :class:`~otel_stigmer.sinks.GrpcSink` for ``config`` when
            omitted.
        config: Connection and queue settings (``StigmerConfig.from_env()`` when both
            ``sink`` and ``config`` are omitted).
        synchronous: Deliver on the calling thread (tests and in-memory capture only).
        retry_policy: Backoff between failed deliveries.
        spool: Durable storage for undelivered events.
        mutable: Whether a test capture (``otel_stigmer.testing.capture_progress``) mutes
            this processor while it runs.
    """

    def __init__(
        self,
        sink: EventSink | None = None,
        *,
        config: StigmerConfig | None = None,
        synchronous: bool = False,
        retry_policy: RetryPolicy | None = None,
        spool: Spool | None = None,
        mutable: bool = True,
    ) -> None:
        self._mutable = mutable
        self.sender = sender_for(
            sink, config, retry_policy=retry_policy, spool=spool, synchronous=synchronous
        )

    @swallow_errors(None)
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Report ``*_started`` (enqueue only)."""
        attributes = span.attributes
        if not attributes:
            return
        is_task = conv.TASK_NAME in attributes
        is_marker = conv.EVENT_TYPE in attributes
        if conv.WORKFLOW_EXECUTION_ID not in attributes:
            if not (is_task or is_marker):
                return
            _inherit_workflow(span, parent_context)
            if conv.WORKFLOW_EXECUTION_ID not in attributes:
                return  # a task outside any workflow stays a plain span
        if is_marker or (self._mutable and _mute.muted()):
            return  # a marker span is reported when it ends, with its exception recorded
        self.sender.submit(START, span, False)

    @swallow_errors(None)
    def on_end(self, span: ReadableSpan) -> None:
        """Report span events and the outcome (enqueue only)."""
        attributes = span.attributes
        if not attributes or conv.WORKFLOW_EXECUTION_ID not in attributes:
            return
        if self._mutable and _mute.muted():
            return
        if conv.EVENT_TYPE in attributes:
            terminal = attributes.get(conv.EVENT_TYPE) in TERMINAL_EVENT_TYPES
            self.sender.submit(START, span, terminal)  # a marker is one event, mapped as a start
            return
        self.sender.submit(END, span, True)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver everything reported so far; False if ``timeout_millis`` passed first."""
        return self.sender.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Flush within the timeout, then stop delivering; later spans are ignored."""
        self.sender.shutdown(timeout_millis)

    def stats(self) -> DeliveryStats:
        """Delivery counters: enqueued, sent, retried, dropped by reason, queue depth."""
        return self.sender.stats()


def _inherit_workflow(span: Span, parent_context: Context | None) -> None:
    parent = trace.get_current_span(parent_context)
    parent_attributes = getattr(parent, "attributes", None)
    if parent_attributes and parent_attributes.get(conv.WORKFLOW_EXECUTION_ID):
        span.set_attribute(
            conv.WORKFLOW_EXECUTION_ID, parent_attributes[conv.WORKFLOW_EXECUTION_ID]
        )
        name = parent_attributes.get(conv.WORKFLOW_NAME)
        if name is None and conv.TASK_NAME not in parent_attributes:
            name = getattr(parent, "name", None)
        if name is not None and conv.WORKFLOW_NAME not in (span.attributes or {}):
            span.set_attribute(conv.WORKFLOW_NAME, name)
        return
    values = baggage.get_all(parent_context)
    execution_id = values.get(conv.BAGGAGE_EXECUTION_ID)
    if execution_id:
        span.set_attribute(conv.WORKFLOW_EXECUTION_ID, str(execution_id))
        name = values.get(conv.BAGGAGE_WORKFLOW_NAME)
        if name and conv.WORKFLOW_NAME not in (span.attributes or {}):
            span.set_attribute(conv.WORKFLOW_NAME, str(name))
