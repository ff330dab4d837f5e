"""A FIFO of integers kept in a C array: nothing in it for the garbage collector to visit.

A ``deque`` of ints is a container the collector traverses on every full collection,
touching each int object (a cache miss apiece on a queue of 100 000); an ``array`` holds
machine integers and is not traversed at all.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

__all__ = ["Numbers"]

#: Removed numbers at the front are compacted away once there are this many and they are
#: at least half of the array (amortised O(1) per number).
_COMPACT_AT = 4096


class Numbers:
    """First in, first out, for 64-bit integers."""

    __slots__ = ("_head", "_items")

    def __init__(self) -> None:
        self._items = array("q")
        self._head = 0

    def __len__(self) -> int:
        return len(self._items) - self._head

    def __bool__(self) -> bool:
        return len(self._items) > self._head

    def append(self, number: int) -> None:
        """Add ``number`` at the end."""
        self._items.append(number)

    def first(self) -> int:
        """The oldest number (the queue must not be empty)."""
        return self._items[self._head]

    def popleft(self) -> int:
        """Remove and return the oldest number (the queue must not be empty)."""
        head = self._head
        number = self._items[head]
        head += 1
        if head >= _COMPACT_AT and head * 2 >= len(self._items):
            del self._items[:head]
            head = 0
        self._head = head
        return number

    def __iter__(self) -> Iterator[int]:
        items = self._items
        for index in range(self._head, len(items)):
            yield items[index]
