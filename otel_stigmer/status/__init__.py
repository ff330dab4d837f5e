"""The open-source Stigmer's status protocol: ``updateStatus`` with a whole execution status.

Select it with ``STIGMER_PROTOCOL=status``. :class:`StatusSink` folds each execution's
progress events into its ``WorkflowExecutionStatus`` (:mod:`otel_stigmer.status.fold`)
and sends it, coalesced, one call in flight per execution.
"""

from __future__ import annotations

from otel_stigmer.status.client import StatusClient, UpdateStatusError
from otel_stigmer.status.fold import ExecutionFold, fold_events
from otel_stigmer.status.sink import StatusSink, StatusSinkStats

__all__ = [
    "ExecutionFold",
    "StatusClient",
    "StatusSink",
    "StatusSinkStats",
    "UpdateStatusError",
    "fold_events",
]
