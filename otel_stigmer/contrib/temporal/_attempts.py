"""What this process knows about the activity attempts it ran (bounded, thread-safe)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["ATTEMPTS", "AttemptBook", "AttemptState"]


@dataclass
class AttemptState:
    """The latest attempt of one task that ran in this process.

    Attributes:
        attempt: The attempt number.
        started: When it started (wall clock, UTC).
        start_to_close: Its start-to-close timeout, if any.
        heartbeat_timeout: Its heartbeat timeout, if any.
        last_beat: When it last heartbeated (or started).
        open: Whether it has neither reported an outcome nor been superseded.
        asynchronous: Whether it will be completed by a client (``raise_complete_async``).
    """

    attempt: int
    started: datetime
    start_to_close: timedelta | None
    heartbeat_timeout: timedelta | None
    last_beat: datetime
    open: bool = True
    asynchronous: bool = False

    def timed_out_by(self, now: datetime) -> str | None:
        """The timeout Temporal has applied to this attempt by ``now``, if any."""
        if self.heartbeat_timeout is not None and now - self.last_beat > self.heartbeat_timeout:
            return "HeartbeatTimeout"
        if self.start_to_close is not None and now - self.started > self.start_to_close:
            return "StartToCloseTimeout"
        return None


class AttemptBook:
    """The latest attempt per task instance id; the oldest are forgotten beyond capacity."""

    def __init__(self, capacity: int = 16_384) -> None:
        """Initialize an empty book holding at most ``capacity`` tasks."""
        self._capacity = capacity
        self._states: OrderedDict[str, AttemptState] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, instance_id: str, state: AttemptState) -> AttemptState | None:
        """Record a new attempt; return the previous one if it was still open (superseded)."""
        with self._lock:
            previous = self._states.pop(instance_id, None)
            self._states[instance_id] = state
            if len(self._states) > self._capacity:
                self._states.popitem(last=False)
        if previous is not None and previous.open and previous.attempt < state.attempt:
            previous.open = False
            return previous
        return None

    def get(self, instance_id: str) -> AttemptState | None:
        """The latest attempt of the task, if this process ran one."""
        with self._lock:
            return self._states.get(instance_id)


#: The book of this process, shared by every interceptor instance.
ATTEMPTS = AttemptBook()
