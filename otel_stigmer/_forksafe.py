"""Fork safety: locks a forked child re-creates, and a gate that lets a fork wait for a call.

A lock held by another thread at ``fork()`` stays held forever in the child, where that
thread does not exist: any object a child may use registers its locks with
:func:`renew_after_fork` and the child gets fresh ones. gRPC skips its own fork handlers
while a thread is inside a call, and a child forked then may never complete a call of its
own: :class:`CallGate` lets a fork wait (bounded) for the call in flight and holds back
new calls until the fork is done.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["FORK_WAIT_SECONDS", "CallGate", "renew_after_fork"]

#: How long a fork waits for the calls in flight before going ahead without them.
FORK_WAIT_SECONDS = 5.0

_owners: weakref.WeakKeyDictionary[object, tuple[str, ...]] = weakref.WeakKeyDictionary()
_gates: weakref.WeakSet[CallGate] = weakref.WeakSet()


def renew_after_fork(owner: object, *names: str) -> None:
    """Give ``owner`` new ``threading.Lock`` objects in attributes ``names`` in a forked child."""
    _owners[owner] = names


class CallGate:
    """Counts calls in flight so that a fork can wait for them to end.

    Calls run concurrently; a pending fork makes new calls wait until it is done.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._forking = False
        _gates.add(self)

    @contextmanager
    def call(self) -> Iterator[None]:
        """Run the body as a call in flight (after any pending fork)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._forking, timeout=FORK_WAIT_SECONDS)
            self._in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def _hold(self, deadline: float) -> None:
        with self._cond:
            self._forking = True
            self._cond.wait_for(
                lambda: self._in_flight == 0, timeout=max(0.0, deadline - time.monotonic())
            )

    def _release(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._forking = False


def _before_fork() -> None:
    deadline = time.monotonic() + FORK_WAIT_SECONDS
    for gate in list(_gates):
        gate._hold(deadline)


def _after_fork_in_parent() -> None:
    for gate in list(_gates):
        gate._release()


def _after_fork_in_child() -> None:
    for gate in list(_gates):
        gate._reset()
    for owner, names in list(_owners.items()):
        for name in names:
            setattr(owner, name, threading.Lock())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
