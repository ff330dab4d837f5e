"""Which wire protocol a config asks for: the sink that speaks it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otel_stigmer.config import StigmerConfig
    from otel_stigmer.retry import RetryPolicy
    from otel_stigmer.sinks import EventSink

__all__ = ["sink_for"]


def sink_for(config: StigmerConfig, *, retry_policy: RetryPolicy | None = None) -> EventSink:
    """Return the sink of ``config.protocol`` (``STIGMER_PROTOCOL``).

    ``progress`` gives a :class:`~otel_stigmer.sinks.GrpcSink` (``report_progress``, the
    Stigmer Service); ``status`` a :class:`~otel_stigmer.status.StatusSink`
    (``updateStatus``, the open-source Stigmer server).
    """
    if config.protocol == "status":
        from otel_stigmer.status.sink import StatusSink  # noqa: PLC0415 - keeps grpc lazy

        return StatusSink(config, retry_policy=retry_policy)
    from otel_stigmer.sinks import GrpcSink  # noqa: PLC0415 - keeps grpc lazy

    return GrpcSink(config)
