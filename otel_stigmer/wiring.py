"""Wiring: build a :class:`~otel_stigmer.delivery.Sender` from a sink and/or a config.

The one place that turns configuration into parts: the gRPC sink, the SQLite spool and
the queue bounds and the batch size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from otel_stigmer.delivery import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    Sender,
)
from otel_stigmer.protocol import sink_for
from otel_stigmer.sinks import EventSink

if TYPE_CHECKING:
    from otel_stigmer.config import StigmerConfig
    from otel_stigmer.retry import RetryPolicy
    from otel_stigmer.sequencing import Sequencer
    from otel_stigmer.spool import Spool

__all__ = ["sender_for"]


def sender_for(
    sink: EventSink | None,
    config: StigmerConfig | None,
    *,
    retry_policy: RetryPolicy | None = None,
    spool: Spool | None = None,
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
        sink = sink_for(config)
    if spool is None and config is not None and config.spool_path:
        from otel_stigmer.spool import SqliteSpool  # noqa: PLC0415 - optional feature

        spool = SqliteSpool(config.spool_path, max_restore=max(1, config.max_queue_size // 2))
    return Sender(
        sink,
        max_queue_size=config.max_queue_size if config else DEFAULT_MAX_QUEUE_SIZE,
        max_batch_size=config.max_batch_size if config else DEFAULT_MAX_BATCH_SIZE,
        max_queue_bytes=config.max_queue_bytes if config else DEFAULT_MAX_QUEUE_BYTES,
        retry_policy=retry_policy,
        spool=spool,
        sequencer=sequencer,
    )
