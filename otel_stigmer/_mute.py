"""A process-wide switch that mutes live Stigmer processors while a test capture runs."""

from __future__ import annotations

import sys
import threading

from otel_stigmer._forksafe import renew_after_fork

_lock = threading.Lock()
renew_after_fork(sys.modules[__name__], "_lock")
_depth = 0


def muted() -> bool:
    """True while at least one capture is active."""
    return _depth > 0


def push() -> None:
    """Mute live processors (nestable)."""
    global _depth  # noqa: PLW0603 - one switch for the whole process by design
    with _lock:
        _depth += 1


def pop() -> None:
    """Undo one :func:`push`."""
    global _depth  # noqa: PLW0603
    with _lock:
        _depth = max(0, _depth - 1)
