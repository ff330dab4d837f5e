"""The live path: a span processor that reports starts and span events as they happen."""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_stigmer import _mute
from otel_stigmer.config import ENV_SENDER, StigmerConfig
from otel_stigmer.delivery import Sender
from otel_stigmer.exceptions import ConfigError
from otel_stigmer.process_sender import ProcessSender
from otel_stigmer.recorder import SpanRecorder
from otel_stigmer.records import Record
from otel_stigmer.stats import DeliveryStats
from otel_stigmer.wiring import sender_for

if TYPE_CHECKING:
    from otel_stigmer.retry import RetryPolicy
    from otel_stigmer.sinks import EventSink
    from otel_stigmer.spool import Spool

__all__ = ["StigmerSpanProcessor"]


class StigmerSpanProcessor(SpanRecorder):
    """Turns workflow and task spans into Stigmer progress events, live.

    ``*_started`` is reported at span start, span events (progress, pause, resume,
    retry) when they are added, the outcome at span end; the inherited execution id and
    workflow name are written onto task spans at start. The calling thread only
    enqueues: delivery runs on one background thread with retries, ordering and a
    bounded queue, or, with ``config.sender == "process"``, in a child process fed by a
    pipe (:class:`~otel_stigmer.process_sender.ProcessSender`). A test capture
    (``otel_stigmer.testing.capture_progress``) mutes it.

    Args:
        sink: Where events go; a :class:`~otel_stigmer.sinks.GrpcSink` for ``config`` when
            omitted.
        config: Connection and queue settings (``StigmerConfig.from_env()`` when both
            ``sink`` and ``config`` are omitted).
        retry_policy: Backoff between failed deliveries.
        spool: Durable storage for undelivered events.

    Raises:
        ConfigError: When the process sender is asked for together with a ``sink`` or a
            ``spool`` object (both live in this process; use ``spool_path`` instead).
    """

    def __init__(
        self,
        sink: EventSink | None = None,
        *,
        config: StigmerConfig | None = None,
        retry_policy: RetryPolicy | None = None,
        spool: Spool | None = None,
    ) -> None:
        super().__init__()
        if sink is None and config is None:
            config = StigmerConfig.from_env()
        self.sender: Sender | ProcessSender
        if config is not None and config.sender == "process":
            if sink is not None or spool is not None:
                raise ConfigError(
                    f"{ENV_SENDER}=process with a custom sink or spool object: those live in "
                    "this process and cannot be handed to the sender process. Fix: set "
                    f"{ENV_SENDER}=thread, or leave out the sink (and give the spool as "
                    "spool_path / STIGMER_SPOOL_PATH)."
                )
            self.sender = ProcessSender(config, retry_policy)
        else:
            self.sender = sender_for(sink, config, retry_policy=retry_policy, spool=spool)

    def _record(self, record: Record) -> None:
        self.sender.submit(record)

    def _active(self) -> bool:
        return not _mute.muted()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver everything reported so far; False if ``timeout_millis`` passed first."""
        return self.sender.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Flush and stop, both within ``timeout_millis``; later spans are ignored."""
        self.sender.shutdown(timeout_millis)

    def stats(self) -> DeliveryStats:
        """Delivery counters: enqueued, sent, retried, dropped by reason, queue depth."""
        return self.sender.stats()
