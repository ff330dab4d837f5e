"""Loopback listeners that play the attacker: a recording sink, a CONNECT proxy, HTTP."""

from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class RecordingListener:
    """Accepts connections on loopback and keeps every byte sent to it.

    With ``tunnel=True`` it is a minimal HTTP CONNECT proxy: it answers ``200`` and relays
    both ways to the address named in the request, recording what the client sent.
    """

    def __init__(self, *, tunnel: bool = False) -> None:
        self.tunnel = tunnel
        self.connections = 0
        self._received = bytearray()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._closed = False

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, the form proxy variables take."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def received(self) -> bytes:
        """Everything clients sent so far."""
        with self._lock:
            return bytes(self._received)

    def __enter__(self) -> RecordingListener:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _record(self, data: bytes) -> None:
        with self._lock:
            self._received += data

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        with conn:
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    head += chunk
            except OSError:
                pass
            self._record(head)
            if not self.tunnel or not head.startswith(b"CONNECT "):
                return
            host, _, port = head.split(b" ", 2)[1].decode().rpartition(":")
            try:
                upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
            except OSError:
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                return
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with upstream:
                rest = head.split(b"\r\n\r\n", 1)[1]
                if rest:
                    upstream.sendall(rest)
                back = threading.Thread(target=_pipe, args=(upstream, conn, None), daemon=True)
                back.start()
                _pipe(conn, upstream, self._record)
                back.join(10)


def _pipe(source: socket.socket, target: socket.socket, record: Any) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            if record is not None:
                record(data)
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


class FakeLivePage:
    """An HTTP server on loopback answering fixed routes and recording request headers.

    Args:
        routes: Path -> ``(status, headers, body)``.
    """

    def __init__(self, routes: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        page = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page.requests.append((self.path, dict(self.headers.items())))
                status, headers, body = routes.get(self.path, (404, {}, b"{}"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The page's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeLivePage:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
