"""Senders in ``multiprocessing`` children forked from a configured process flush at exit.

Such a child ends with ``os._exit``: interpreter exit hooks do not run there, only
``multiprocessing``'s finalizers (cleared at the child's start, so armed after it). A child
forked by ``os.fork`` that exits normally flushes through the exit hook it inherited.
"""

from __future__ import annotations

import weakref
from typing import Protocol

__all__ = ["CHILD_EXIT_FLUSH_MILLIS", "flush_children_at_exit"]

#: How long a forked child's exit may spend delivering its own events.
CHILD_EXIT_FLUSH_MILLIS = 5_000


class _Sender(Protocol):
    def shutdown(self, timeout_millis: int = 30_000) -> bool: ...


def flush_children_at_exit(sender: _Sender) -> None:
    """Make a ``multiprocessing`` child forked from here shut ``sender`` down at its exit."""
    from multiprocessing import util  # noqa: PLC0415 - only where processes are forked

    util.register_after_fork(sender, _arm_exit_flush)


def _arm_exit_flush(sender: _Sender) -> None:
    from multiprocessing import util  # noqa: PLC0415 - only in a forked child

    util.Finalize(None, _exit_flush, args=(weakref.ref(sender),), exitpriority=100)


def _exit_flush(ref: weakref.ReferenceType[_Sender]) -> None:
    sender = ref()
    if sender is not None:
        sender.shutdown(CHILD_EXIT_FLUSH_MILLIS)
