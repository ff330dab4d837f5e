"""The span pipelines under test, installed on the global tracer provider of a worker.

* ``noop``: an SDK ``TracerProvider`` with one span processor that does nothing.
* ``otlp``: the standard pipeline, ``BatchSpanProcessor`` (defaults) + OTLP gRPC exporter.
* ``stigmer``: ``otel_stigmer.configure()`` against a reference receiver.
* ``process``: the same with ``sender="process"`` (``STIGMER_SENDER=process``): mapping and
  sending in a child process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

from otel_stigmer import StigmerPipeline, configure
from otel_stigmer.config import StigmerConfig
from otel_stigmer.process_sender import ProcessSender

__all__ = ["STIGMER_PIPELINES", "CountingOtlpExporter", "Installed", "install"]

PIPELINES = ("noop", "otlp", "stigmer", "process")
#: The pipelines that report Stigmer events (two per task call).
STIGMER_PIPELINES = ("stigmer", "process")


class CountingOtlpExporter(OTLPSpanExporter):
    """The OTLP gRPC exporter, counting the spans it delivered."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint=endpoint, insecure=True)
        self._changed = threading.Condition()
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = super().export(spans)
        if result is SpanExportResult.SUCCESS:
            with self._changed:
                self.exported += len(spans)
                self._changed.notify_all()
        return result

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until ``count`` spans were exported or ``timeout`` seconds pass."""
        with self._changed:
            return self._changed.wait_for(lambda: self.exported >= count, timeout=timeout)


class Installed:
    """A pipeline on the global tracer provider, with its flush and drop count."""

    def __init__(
        self,
        name: str,
        provider: TracerProvider,
        stigmer: StigmerPipeline | None = None,
        exporter: CountingOtlpExporter | None = None,
    ) -> None:
        self.name = name
        self.provider = provider
        self.stigmer = stigmer
        self.exporter = exporter

    def flush(self, timeout_s: float = 120.0) -> bool:
        """Deliver everything produced so far."""
        return self.provider.force_flush(int(timeout_s * 1000))

    def dropped(self, produced: int) -> int:
        """Items lost so far: counted drops (Stigmer) or produced minus exported (OTLP)."""
        if self.stigmer is not None:
            return sum(self.stigmer.stats().dropped.values())
        if self.exporter is not None:
            return max(0, produced - self.exporter.exported)
        return 0

    def shutdown(self) -> None:
        """Stop background threads and close channels."""
        self.provider.shutdown()

    def start_sender(self) -> None:
        """Start the sender process now and wait until it answers (``process`` only)."""
        if self.stigmer is not None and self.stigmer.active:
            sender = self.stigmer.processor.sender
            if isinstance(sender, ProcessSender):
                sender.start()
                sender.force_flush(60_000)

    def child_pid(self) -> int | None:
        """The sender process of the ``process`` pipeline, while it runs."""
        if self.stigmer is None or not self.stigmer.active:
            return None
        sender = self.stigmer.processor.sender
        return sender.child_pid if isinstance(sender, ProcessSender) else None

    def child_cpu_ns(self) -> int:
        """CPU time (user + system) of the sender process so far; 0 without one."""
        pid = self.child_pid()
        if pid is None:
            return 0
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0
        ticks = int(fields[11]) + int(fields[12])
        return ticks * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))

    def child_rss_bytes(self) -> int:
        """Resident memory of the sender process; 0 without one."""
        pid = self.child_pid()
        if pid is None:
            return 0
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0


def install(name: str, endpoint: str = "", api_key: str = "") -> Installed:
    """Create a tracer provider with pipeline ``name`` and make it the global one."""
    provider = TracerProvider()
    stigmer = None
    exporter = None
    if name == "noop":
        provider.add_span_processor(SpanProcessor())
    elif name == "otlp":
        exporter = CountingOtlpExporter(endpoint)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    elif name in STIGMER_PIPELINES:
        sender = "process" if name == "process" else "thread"
        config = StigmerConfig(endpoint=endpoint, api_key=api_key, use_tls=False, sender=sender)
        stigmer = configure(config, tracer_provider=provider)
    else:
        raise ValueError(f"unknown pipeline {name!r}; expected one of {PIPELINES}")
    trace.set_tracer_provider(provider)
    return Installed(name, provider, stigmer, exporter)
