"""``configure()``: the one line a runner adds at start-up."""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer.contrib.temporal._sandbox import sandbox_pipeline
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.stats import DeliveryStats

if TYPE_CHECKING:
    from otel_stigmer.config import StigmerConfig
    from otel_stigmer.retry import RetryPolicy
    from otel_stigmer.sinks import EventSink

__all__ = ["StigmerPipeline", "configure"]

_log = logging.getLogger(__name__)
_EXIT_TIMEOUT_MILLIS = 5_000

_lock = threading.Lock()
_pipelines: weakref.WeakKeyDictionary[TracerProvider, StigmerPipeline] = weakref.WeakKeyDictionary()


class StigmerPipeline:
    """What :func:`configure` returns: the live processor attached to one tracer provider."""

    def __init__(self, processor: StigmerSpanProcessor, tracer_provider: TracerProvider) -> None:
        self.processor = processor
        self.tracer_provider = tracer_provider

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver everything reported so far; False if the timeout passed first."""
        return self.processor.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Flush within the timeout and stop reporting."""
        self.processor.shutdown(timeout_millis)

    def stats(self) -> DeliveryStats:
        """Delivery counters (enqueued, sent, retried, dropped by reason, queue depth)."""
        return self.processor.stats()


def configure(
    config: StigmerConfig | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    sink: EventSink | None = None,
    retry_policy: RetryPolicy | None = None,
) -> StigmerPipeline:
    """Report workflow and task spans to the Stigmer Service.

    Loads :meth:`StigmerConfig.from_env` unless ``config`` is given (a misconfiguration
    raises :class:`~otel_stigmer.ConfigError` here, never later), and attaches a
    :class:`StigmerSpanProcessor` to ``tracer_provider`` — by default the global SDK
    provider, created with a ``Resource`` from the ``OTEL_*`` variables when none is set.
    Calling it again for the same provider returns the same pipeline; pending events are
    flushed at interpreter exit.

    Args:
        config: Connection settings; read from the environment when omitted.
        tracer_provider: The SDK provider to attach to.
        sink: Deliver somewhere else than the Stigmer Service (e.g. an in-memory sink).
        retry_policy: Backoff between failed deliveries (the pipeline's default when omitted).
    """
    inert = sandbox_pipeline()  # a Temporal workflow module re-imported for each run
    if inert is not None:
        return inert
    with _lock:
        provider = tracer_provider or _global_sdk_provider()
        existing = _pipelines.get(provider)
        if existing is not None:
            return existing
        if sink is None and config is None:
            from otel_stigmer.config import StigmerConfig  # noqa: PLC0415 - avoid a cycle

            config = StigmerConfig.from_env()
        processor = StigmerSpanProcessor(sink, config=config, retry_policy=retry_policy)
        provider.add_span_processor(processor)
        pipeline = StigmerPipeline(processor, provider)
        _pipelines[provider] = pipeline
        atexit.register(_shutdown_at_exit, weakref.ref(pipeline))
        _log.debug("otel-stigmer configured for %r", provider)
        return pipeline


def _global_sdk_provider() -> TracerProvider:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    created = TracerProvider(resource=Resource.create())
    trace.set_tracer_provider(created)
    # Another thread may have won the race to set the global provider.
    current = trace.get_tracer_provider()
    return current if isinstance(current, TracerProvider) else created


def _shutdown_at_exit(ref: weakref.ReferenceType[StigmerPipeline]) -> None:
    pipeline = ref()
    if pipeline is not None:
        pipeline.shutdown(_EXIT_TIMEOUT_MILLIS)
