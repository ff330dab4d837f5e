"""Sequence numbers: strictly increasing per execution, ordered across processes.

A hybrid logical clock: an event's number is ``max(last + 1, event time in microseconds)``.
Within one process numbers never repeat or go back for an execution; across processes
(tasks of one workflow on several machines) events are ordered by when they happened,
as far as the machines' clocks agree.

The exporter path sees spans only when they end, so a workflow's start is reported after
its tasks ended. There numbers are the event times themselves (``monotonic=False``), made
unique per execution, so the receiver's order is still the order of events.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from otel_stigmer._forksafe import renew_after_fork
from otel_stigmer.events import WorkflowProgressEvent

_USED_PER_EXECUTION = 4096


class Sequencer:
    """Assigns ``sequence_number`` to events, per execution id.

    Args:
        max_executions: Executions remembered (least recently used are forgotten).
        monotonic: Numbers increase in assignment order (the live path). When False,
            numbers are event times made unique, for events assigned out of time order.
    """

    def __init__(self, max_executions: int = 100_000, *, monotonic: bool = True) -> None:
        self._last: OrderedDict[str, int] = OrderedDict()
        self._used: OrderedDict[str, set[int]] = OrderedDict()
        self._max_executions = max_executions
        self._monotonic = monotonic
        self._lock = threading.Lock()
        renew_after_fork(self, "_lock")

    def next(self, execution_id: str, time_us: int) -> int:
        """Return the number for an event of ``execution_id`` that happened at ``time_us``."""
        with self._lock:
            if self._monotonic:
                number = max(self._last.get(execution_id, 0) + 1, time_us)
                self._last[execution_id] = number
                self._remember(self._last, execution_id)
                return number
            used = self._used.get(execution_id)
            if used is None:
                used = self._used[execution_id] = set()
            number = max(time_us, 1)
            while number in used:
                number += 1
            if len(used) >= _USED_PER_EXECUTION:
                used.clear()
            used.add(number)
            self._remember(self._used, execution_id)
            return number

    def assign(self, event: WorkflowProgressEvent) -> None:
        """Turn the event's provisional ``sequence_number`` (its time in µs) into the final one.

        An event without a provisional time falls back to ``timestamp_ms``.
        """
        when = event.sequence_number or event.timestamp_ms * 1000
        event.sequence_number = self.next(event.workflow_execution_id, when)

    def _remember(self, table: OrderedDict[str, Any], execution_id: str) -> None:
        table.move_to_end(execution_id)
        if len(table) > self._max_executions:
            table.popitem(last=False)
