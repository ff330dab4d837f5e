"""Reference Stigmer-compatible receiver: a real gRPC ``report_progress`` server on SQLite.

It authenticates bearer keys, de-duplicates events by ``event_id``, keeps them in a
SQLite file that survives restarts, and can inject faults for tests. Run it with
``otel-stigmer serve`` (or ``python -m otel_stigmer.server``) as a dev server.
"""

from __future__ import annotations

from otel_stigmer.server.app import ReceiverServer
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.faults import FaultInjector
from otel_stigmer.server.store import EventStore, ExecutionSummary, StoreClosedError

__all__ = [
    "BearerKeyAuth",
    "EventStore",
    "ExecutionSummary",
    "FaultInjector",
    "ReceiverServer",
    "StoreClosedError",
]
