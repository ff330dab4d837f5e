"""``configure()``: the one line a runner adds at start-up.

Each SDK tracer provider gets at most one Stigmer pipeline, whichever way it was asked for
(``configure()``, the ``stigmer`` exporter entry point, the ``stigmer`` configurator): the
provider holds one :class:`_Slot` processor, and a later request either reuses what the slot
holds (same settings) or swaps it (new settings), so nothing is ever reported twice.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import weakref
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from otel_stigmer import _baggage_policy, _mute, _tls_hint
from otel_stigmer._forksafe import renew_after_fork
from otel_stigmer.config import (
    ALIAS_API_KEY,
    ALIAS_ENDPOINT,
    ENV_API_KEY,
    ENV_API_KEY_FILE,
    ENV_ENDPOINT,
    StigmerConfig,
)
from otel_stigmer.contrib.temporal._sandbox import in_workflow_sandbox
from otel_stigmer.exceptions import ConfigError
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.stats import DeliveryStats

if TYPE_CHECKING:
    from otel_stigmer.sinks import EventSink

__all__ = [
    "ENV_SDK_DISABLED",
    "StigmerPipeline",
    "configure",
    "configure_as",
    "has_pipeline",
    "set_test_session",
    "warn_if_unconfigured",
]

_log = logging.getLogger(__name__)
_EXIT_TIMEOUT_MILLIS = 5_000

#: The standard OpenTelemetry switch; ``true`` makes :func:`configure` a no-op.
ENV_SDK_DISABLED = "OTEL_SDK_DISABLED"

_CONNECTION_VARIABLES = (ENV_ENDPOINT, ALIAS_ENDPOINT, ENV_API_KEY, ALIAS_API_KEY, ENV_API_KEY_FILE)

_lock = threading.Lock()
renew_after_fork(sys.modules[__name__], "_lock")
_slots: weakref.WeakKeyDictionary[TracerProvider, _Slot] = weakref.WeakKeyDictionary()
# Providers configure() created and made global itself (to explain a later refusal of the user's).
_created: weakref.WeakSet[TracerProvider] = weakref.WeakSet()
_warned: set[str] = set()
_test_session = False


class StigmerPipeline:
    """What :func:`configure` returns: the live processor attached to one tracer provider.

    An inactive pipeline (``active`` is False, ``reason`` says why) reports nothing; its
    methods are harmless no-ops.

    Attributes:
        tracer_provider: The SDK provider it is attached to, or ``None`` when inactive.
        reason: Why the pipeline is inactive (empty when active).
    """

    def __init__(
        self,
        processor: StigmerSpanProcessor | None,
        tracer_provider: TracerProvider | None,
        *,
        reason: str = "",
    ) -> None:
        self._processor = processor
        self.tracer_provider = tracer_provider
        self.reason = reason

    @property
    def active(self) -> bool:
        """Whether this pipeline reports anything."""
        return self._processor is not None

    @property
    def processor(self) -> StigmerSpanProcessor:
        """The live processor.

        Raises:
            RuntimeError: When the pipeline is inactive (``reason`` says why).
        """
        if self._processor is None:
            raise RuntimeError(f"this Stigmer pipeline is inactive: {self.reason}")
        return self._processor

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver everything reported so far; False if the timeout passed first.

        Raises:
            TypeError: When ``timeout_millis`` is not a whole number of milliseconds.
        """
        _check_millis("force_flush", timeout_millis)
        return True if self._processor is None else self._processor.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Flush within the timeout and stop reporting.

        Raises:
            TypeError: When ``timeout_millis`` is not a whole number of milliseconds.
        """
        _check_millis("shutdown", timeout_millis)
        if self._processor is not None:
            self._processor.shutdown(timeout_millis)

    def stats(self) -> DeliveryStats:
        """Delivery counters (enqueued, sent, retried, dropped by reason, queue depth)."""
        return DeliveryStats() if self._processor is None else self._processor.stats()

    def __repr__(self) -> str:
        if self._processor is None:
            return f"StigmerPipeline(inactive: {self.reason})"
        return f"StigmerPipeline(active, provider={type(self.tracer_provider).__name__})"


class _Slot(SpanProcessor):
    """The one Stigmer processor a provider holds; configure() swaps what it forwards to."""

    def __init__(self) -> None:
        self.pipeline: StigmerPipeline | None = None
        self.settings: tuple[object, ...] | None = None
        self.source = ""

    def _current(self) -> StigmerSpanProcessor | None:
        pipeline = self.pipeline
        return None if pipeline is None else pipeline._processor

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        processor = self._current()
        if processor is not None:
            processor.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        processor = self._current()
        if processor is not None:
            processor.on_end(span)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        processor = self._current()
        return True if processor is None else processor.force_flush(timeout_millis)

    def shutdown(self) -> None:
        processor = self._current()
        if processor is not None:
            processor.shutdown()


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
    Pending events are flushed at interpreter exit.

    One pipeline per provider: calling it again with the same settings returns the same
    pipeline; with other settings the new ones replace the old (whose pending events are
    still delivered in the background), and a line is logged.

    It returns an inactive pipeline, reporting nothing, when ``OTEL_SDK_DISABLED=true``, and
    in a pytest session when no ``STIGMER_SERVICE_*`` connection variable is set at all (one
    warning; the ``stigmer_events`` fixture and ``capture_progress()`` capture events anyway).

    Args:
        config: Connection settings; read from the environment when omitted.
        tracer_provider: The SDK provider to attach to.
        sink: Deliver somewhere else than the Stigmer Service (e.g. an in-memory sink).
        retry_policy: Backoff between failed deliveries (the pipeline's default when omitted).

    Raises:
        ConfigError: When the settings are missing or invalid.
        TypeError: When an argument has the wrong type (e.g. the API's placeholder
            ``ProxyTracerProvider`` instead of an SDK ``TracerProvider``).
    """
    return configure_as(
        "otel_stigmer.configure()",
        config,
        tracer_provider=tracer_provider,
        sink=sink,
        retry_policy=retry_policy,
    )


def configure_as(
    source: str,
    config: StigmerConfig | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    sink: EventSink | None = None,
    retry_policy: RetryPolicy | None = None,
) -> StigmerPipeline:
    """:func:`configure`, naming who asked (for the warning when two set-ups meet)."""
    _check_arguments(config, tracer_provider, sink, retry_policy)
    if in_workflow_sandbox():
        # A Temporal workflow module is re-imported in the sandbox for every run.
        return StigmerPipeline(None, None, reason="inside a Temporal workflow sandbox")
    if _sdk_disabled():
        _warn_once(
            "disabled", logging.INFO, "otel-stigmer: %s=true, reporting is off", ENV_SDK_DISABLED
        )
        return StigmerPipeline(None, None, reason=f"{ENV_SDK_DISABLED}=true")
    _baggage_policy.install()  # validates STIGMER_IDENTITY_BAGGAGE before anything is attached
    with _lock:
        if sink is None and config is None:
            config = _config_from_env()
            if config is None:
                return StigmerPipeline(
                    None, None, reason="pytest session without STIGMER_SERVICE_ENDPOINT"
                )
        provider = tracer_provider if tracer_provider is not None else _global_sdk_provider()
        pipeline = _attach(source, provider, config, sink, retry_policy)
    if config is not None:
        _tls_hint.check_in_background(config)
    return pipeline


def has_pipeline(provider: object) -> bool:
    """Whether ``provider`` has an active Stigmer pipeline attached by this module."""
    if not isinstance(provider, TracerProvider):
        return False
    slot = _slots.get(provider)
    return slot is not None and slot.pipeline is not None and slot.pipeline.active


def set_test_session(active: bool) -> None:
    """Called by the pytest plugin: inside a test session a missing endpoint is not an error."""
    global _test_session  # noqa: PLW0603 - one process-wide flag, set by the pytest plugin
    _test_session = active


def _attach(
    source: str,
    provider: TracerProvider,
    config: StigmerConfig | None,
    sink: EventSink | None,
    retry_policy: RetryPolicy | None,
) -> StigmerPipeline:
    slot = _slots.get(provider)
    if slot is None:
        slot = _Slot()
        provider.add_span_processor(slot)
        _slots[provider] = slot
    settings = (config, sink, retry_policy)
    old = slot.pipeline
    if old is not None and slot.source != source:
        _warn_once(
            f"combined:{slot.source}:{source}",
            logging.WARNING,
            "otel-stigmer: set up twice for the same tracer provider, by %s and by %s; "
            "one pipeline is kept and nothing is sent twice (remove one of the two)",
            slot.source,
            source,
        )
    if old is not None and _same_settings(slot.settings, settings):
        return old
    processor = StigmerSpanProcessor(sink, config=config, retry_policy=retry_policy)
    pipeline = StigmerPipeline(processor, provider)
    slot.pipeline, slot.settings, slot.source = pipeline, settings, source
    atexit.register(_shutdown_at_exit, weakref.ref(pipeline))
    if old is not None:
        _log.warning(
            "otel-stigmer: configure() called again with other settings for the same tracer "
            "provider; the new settings replace the old ones (events already reported are "
            "still delivered with the old ones)"
        )
        threading.Thread(
            target=_shutdown_quietly, args=(old,), name="otel-stigmer-retire", daemon=True
        ).start()
    _log.debug("otel-stigmer configured for %r", provider)
    return pipeline


def _same_settings(old: tuple[object, ...] | None, new: tuple[object, ...]) -> bool:
    if old is None:
        return False
    old_config, old_sink, old_policy = old
    config, sink, policy = new
    return old_config == config and old_sink is sink and old_policy == policy


def _shutdown_quietly(pipeline: StigmerPipeline) -> None:
    pipeline.shutdown(_EXIT_TIMEOUT_MILLIS)


def _check_arguments(
    config: object, tracer_provider: object, sink: object, retry_policy: object
) -> None:
    if config is not None and not isinstance(config, StigmerConfig):
        raise TypeError(
            f"configure(config=...) takes a StigmerConfig, got {type(config).__name__}; "
            "build one with StigmerConfig(endpoint, api_key=...) or StigmerConfig.from_env()"
        )
    if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
        hint = (
            " (the API's placeholder, returned by trace.get_tracer_provider() before an SDK "
            "provider is set)"
            if isinstance(tracer_provider, trace.ProxyTracerProvider)
            else ""
        )
        raise TypeError(
            "configure(tracer_provider=...) takes an opentelemetry.sdk.trace.TracerProvider, "
            f"got {type(tracer_provider).__name__}{hint}; pass the SDK TracerProvider you "
            "created, or omit the argument to use (or create) the global one"
        )
    if sink is not None and not callable(getattr(sink, "send", None)):
        raise TypeError(
            f"configure(sink=...) takes an EventSink (an object with send(events) and "
            f"close()), got {type(sink).__name__}"
        )
    if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
        raise TypeError(
            f"configure(retry_policy=...) takes a RetryPolicy, got {type(retry_policy).__name__}"
        )


def _check_millis(method: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{method}(timeout_millis=...) takes a number of milliseconds, e.g. 5000, got {value!r}"
        )


def _sdk_disabled() -> bool:
    return os.environ.get(ENV_SDK_DISABLED, "").strip().lower() == "true"


def _config_from_env() -> StigmerConfig | None:
    unset = not any(os.environ.get(name, "").strip() for name in _CONNECTION_VARIABLES)
    if unset and _test_session:
        _warn_once(
            "test-session",
            logging.WARNING,
            "otel-stigmer: configure() in a pytest session with no %s set: reporting is off; "
            "the stigmer_events fixture and capture_progress() capture the events instead",
            ENV_ENDPOINT,
        )
        return None
    return StigmerConfig.from_env()


def _global_sdk_provider() -> TracerProvider:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider
    if not isinstance(provider, trace.ProxyTracerProvider):
        raise ConfigError(
            f"The global tracer provider is a {type(provider).__name__}, not an OpenTelemetry "
            "SDK TracerProvider, so no span processor can be attached to it. Fix: pass "
            "configure(tracer_provider=<your opentelemetry.sdk.trace.TracerProvider>)."
        )
    created = TracerProvider(resource=Resource.create())
    trace.set_tracer_provider(created)
    # Another thread may have won the race to set the global provider.
    current = trace.get_tracer_provider()
    if current is created:
        _created.add(created)
        _watch_refusals()
    return current if isinstance(current, TracerProvider) else created


class _RefusalExplainer(logging.Filter):
    """Explains the API's refusal of a later ``set_tracer_provider`` after configure()."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "Overriding of current TracerProvider" in str(record.msg) and (
            trace.get_tracer_provider() in _created
        ):
            _log.error(
                "otel-stigmer: trace.set_tracer_provider(...) was refused because "
                "otel_stigmer.configure() ran first and made its own TracerProvider the global "
                "one; the provider you passed receives no spans. Fix: call "
                "trace.set_tracer_provider(yours) before otel_stigmer.configure(), or call "
                "otel_stigmer.configure(tracer_provider=yours)"
            )
        return True


_explainer = _RefusalExplainer()


def _watch_refusals() -> None:
    api_log = logging.getLogger(trace.__name__)
    if _explainer not in api_log.filters:
        api_log.addFilter(_explainer)


def _warn_once(key: str, level: int, message: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        _log.log(level, message, *args)


def _shutdown_at_exit(ref: weakref.ReferenceType[StigmerPipeline]) -> None:
    pipeline = ref()
    if pipeline is not None:
        pipeline.shutdown(_EXIT_TIMEOUT_MILLIS)


def warn_if_unconfigured(provider: object) -> None:
    """Log one warning per process when a workflow starts while nothing reports its progress.

    Called by ``@workflow``. Nothing reports when no capture is active and ``provider`` has no
    Stigmer processor: neither one from :func:`configure` or the zero-code set-up, nor a
    :class:`StigmerSpanProcessor` or a processor around a ``StigmerSpanExporter`` added by hand.
    """
    if "unconfigured" in _warned or _mute.muted() or _reports_to_stigmer(provider):
        return
    _warn_once(
        "unconfigured",
        logging.WARNING,
        "otel-stigmer: a workflow started but nothing reports its progress: call "
        "otel_stigmer.configure() at start-up, or run under opentelemetry-instrument with "
        "%s=stigmer (this is logged once)",
        "OTEL_TRACES_EXPORTER",
    )


def _reports_to_stigmer(provider: object) -> bool:
    if has_pipeline(provider):
        return True
    # A processor added by hand: look through the SDK's processor list (best effort).
    multi = getattr(provider, "_active_span_processor", None)
    for processor in getattr(multi, "_span_processors", ()):
        if isinstance(processor, StigmerSpanProcessor):
            return True
        exporter = getattr(processor, "span_exporter", None)
        if exporter is not None and type(exporter).__module__.startswith("otel_stigmer"):
            return True
    return False
