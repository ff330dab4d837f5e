"""Remember which workflow events this process already reported."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["OnceFilter"]


class OnceFilter:
    """A bounded set of keys: :meth:`first` is True only the first time it sees a key.

    A workflow task that fails (a bug, a worker crash) is retried without replay, so its
    markers would be emitted again; remembering them per process stops the common case of
    a task retried on the same worker. The oldest keys are forgotten beyond ``capacity``.
    """

    def __init__(self, capacity: int = 65_536) -> None:
        """Initialize an empty filter holding at most ``capacity`` keys."""
        self._capacity = capacity
        self._seen: OrderedDict[Hashable, None] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, key: Hashable) -> bool:
        """Whether ``key`` was recorded (without recording it)."""
        with self._lock:
            return key in self._seen

    def forget(self, key: Hashable) -> None:
        """Drop ``key``, so that it is new again."""
        with self._lock:
            self._seen.pop(key, None)

    def first(self, key: Hashable) -> bool:
        """Record ``key``; return whether it was new."""
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            return True
