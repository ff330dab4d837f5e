"""Counters of one delivery pipeline."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

__all__ = ["DeliveryStats"]


@dataclass
class DeliveryStats:
    """Counters of one pipeline (events unless named otherwise).

    ``dropped`` counts by reason: ``queue_full``, ``rejected`` (refused as invalid),
    ``refused`` (answered ``accepted = false``), ``shutdown``, ``after_shutdown``.
    """

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

    def copy(self) -> DeliveryStats:
        """A snapshot that later counting does not change."""
        snapshot = DeliveryStats(**{**self.__dict__})
        snapshot.dropped = collections.Counter(self.dropped)
        return snapshot
