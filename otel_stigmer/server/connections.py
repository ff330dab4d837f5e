"""Open connections of a ``socketserver`` server end when the server closes.

``ThreadingHTTPServer.server_close()`` joins the request threads, and a request thread
reads until its client sends a whole request or goes quiet for the handler's timeout. A
client that trickles header bytes, or an idle keep-alive connection, would so hold the
close (and a ``serve`` told to stop) for as long as it likes. Here each accepted
connection is remembered and shut down at close, which ends its thread's read at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

__all__ = ["ClosesConnectionsMixin"]


class ClosesConnectionsMixin:
    """Mix into a threading ``socketserver`` server, before the server class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections_lock = threading.Lock()
        # A duplicate of each socket: it stays valid (and names the same connection) even
        # after TLS wrapping detached the original, and its number cannot be reused by
        # another file while it is open.
        self._connections: dict[int, socket.socket] = {}
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Remember the connection, then serve it as usual."""
        with self._connections_lock:
            self._connections[id(request)] = request.dup()
        super().process_request(request, client_address)  # type: ignore[misc]

    def shutdown_request(self, request: Any) -> None:
        """Forget the connection once its request thread is done with it."""
        super().shutdown_request(request)  # type: ignore[misc]
        with self._connections_lock:
            duplicate = self._connections.pop(id(request), None)
        if duplicate is not None:
            duplicate.close()

    def server_close(self) -> None:
        """Shut every open connection down, then close as usual (joining the threads)."""
        with self._connections_lock:
            open_connections = list(self._connections.values())
        for duplicate in open_connections:
            with contextlib.suppress(OSError):  # already gone
                duplicate.shutdown(socket.SHUT_RDWR)
        super().server_close()  # type: ignore[misc]
