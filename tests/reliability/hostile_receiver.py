"""Receivers that misbehave in ways the reference receiver cannot: garbage and dropped calls.

Both listen on a free loopback port. :class:`GarbageReceiver` is a real gRPC server whose
progress RPCs answer bytes that are no protobuf message; :class:`RawSocketReceiver` is a
plain TCP server that speaks no gRPC at all.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

import grpc

SERVICE = "ai.stigmer.workflow.runner.v1.WorkflowRunnerCommandController"
#: Field 31 with wire type 7, which does not exist: no parser accepts this.
GARBAGE = b"\xff\xff\xff\xff\x0fnot a protobuf message"


class GarbageReceiver:
    """A gRPC server whose ``report_progress`` and ``report_progress_batch`` answer garbage."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        answer = grpc.unary_unary_rpc_method_handler(self._answer)
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"report_progress": answer, "report_progress_batch": answer}
        )
        self._server = grpc.server(ThreadPoolExecutor(max_workers=4), handlers=[handler])
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def _answer(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.calls += 1
        return GARBAGE

    def __enter__(self) -> GarbageReceiver:
        self._server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.stop(None).wait()


class RawSocketReceiver:
    """A TCP server that accepts connections and then misbehaves.

    Modes:
        ``close``: read the first bytes of the call, then close the connection.
        ``http1``: answer an HTTP/1.1 error page, then close.
        ``silent``: keep the connection open and never answer.
    """

    def __init__(self, mode: str) -> None:
        if mode not in {"close", "http1", "silent"}:
            raise ValueError(f"unknown mode {mode!r}")
        self.mode = mode
        self.connections = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name="raw-receiver", daemon=True)

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.settimeout(2.0)
            try:
                if self.mode == "silent":
                    self._open.append(conn)
                    continue
                with contextlib.suppress(OSError):
                    conn.recv(64)  # the client preface: the call has begun
                if self.mode == "http1":
                    conn.sendall(
                        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 7\r\n"
                        b"Connection: close\r\n\r\nbad gw\n"
                    )
            except OSError:
                pass
            if self.mode != "silent":
                conn.close()

    def __enter__(self) -> RawSocketReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for conn in self._open:
            conn.close()
