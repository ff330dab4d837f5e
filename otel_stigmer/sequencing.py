"""Sequence numbers: strictly increasing per execution, ordered across processes.

A hybrid logical clock: an event's number is ``max(last + 1, event time in microseconds)``.
Within one process numbers never repeat or go back for an execution; across processes
(tasks of one workflow on several machines) events are ordered by when they happened,
as far as the machines' clocks agree.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from otel_stigmer.events import WorkflowProgressEvent


class Sequencer:
    """Assigns ``sequence_number`` to events, per execution id."""

    def __init__(self, max_executions: int = 100_000) -> None:
        self._last: OrderedDict[str, int] = OrderedDict()
        self._max_executions = max_executions
        self._lock = threading.Lock()

    def next(self, execution_id: str, time_us: int) -> int:
        """Return the next number for ``execution_id`` for an event that happened at ``time_us``."""
        with self._lock:
            last = self._last.get(execution_id, 0)
            number = max(last + 1, time_us)
            self._last[execution_id] = number
            self._last.move_to_end(execution_id)
            if len(self._last) > self._max_executions:
                self._last.popitem(last=False)
            return number

    def assign(self, event: WorkflowProgressEvent) -> None:
        """Turn the event's provisional ``sequence_number`` (its time in µs) into the final one.

        An event without a provisional time falls back to ``timestamp_ms``.
        """
        when = event.sequence_number or event.timestamp_ms * 1000
        event.sequence_number = self.next(event.workflow_execution_id, when)
