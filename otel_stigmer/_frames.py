"""Length-prefixed ``marshal`` frames over a pipe, between the process sender and its child.

A frame is a 4-byte little-endian length and that many bytes of ``marshal.dumps`` of one
message, a tuple whose first item names it. Both ends run the same interpreter
(``sys.executable``), so the ``marshal`` format is the same. Raw file descriptors only:
no buffered file object whose lock a fork could inherit held.
"""

from __future__ import annotations

import marshal
import os
import struct
from typing import Any

__all__ = [
    "ACK",
    "CONFIG",
    "FLUSH",
    "LOG",
    "RECORDS",
    "SHUTDOWN",
    "STATS",
    "FrameReader",
    "frame",
    "write_all",
]

#: Parent to child, first frame: ``(CONFIG, config fields, retry policy fields or None)``.
CONFIG = "config"
#: Parent to child: ``(RECORDS, [encoded record, ...])``.
RECORDS = "records"
#: Parent to child: ``(FLUSH, token, timeout_millis)``; acknowledged once delivered.
FLUSH = "flush"
#: Parent to child: ``(SHUTDOWN, token, timeout_millis)``; acknowledged once shut down.
SHUTDOWN = "shutdown"
#: Child to parent: ``(ACK, token, ok, stats)``.
ACK = "ack"
#: Child to parent: ``(STATS, stats)``, the delivery counters now and then.
STATS = "stats"
#: Child to parent: ``(LOG, level, logger name, message)``, re-logged by the parent.
LOG = "log"

_HEADER = struct.Struct("<I")
_READ_SIZE = 1 << 16


def frame(message: tuple[Any, ...]) -> bytes:
    """One frame holding ``message`` (raises ``ValueError`` on a value marshal cannot write)."""
    data = marshal.dumps(message)
    return _HEADER.pack(len(data)) + data


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the blocking descriptor ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class FrameReader:
    """Reads whole frames from a blocking descriptor."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()

    def read(self) -> tuple[Any, ...] | None:
        """The next message; ``None`` at end of input (or a frame cut short by it)."""
        header = self._take(_HEADER.size)
        if header is None:
            return None
        body = self._take(_HEADER.unpack(header)[0])
        if body is None:
            return None
        # From our own child or parent, over a pipe only the two of them hold.
        message: tuple[Any, ...] = marshal.loads(body)  # noqa: S302
        return message

    def _take(self, size: int) -> bytes | None:
        buffer = self._buffer
        while len(buffer) < size:
            chunk = os.read(self._fd, max(_READ_SIZE, size - len(buffer)))
            if not chunk:
                return None
            buffer += chunk
        data = bytes(buffer[:size])
        del buffer[:size]
        return data
