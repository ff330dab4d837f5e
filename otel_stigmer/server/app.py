"""``ReceiverServer``: the reference receiver as a startable, stoppable gRPC server."""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

import grpc

from otel_stigmer._proto.ai.stigmer.agentic.workflowexecution.v1 import command_pb2_grpc
from otel_stigmer._proto.ai.stigmer.workflow.runner.v1 import progress_pb2_grpc
from otel_stigmer.exceptions import ConfigError
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.faults import FaultInjector
from otel_stigmer.server.service import ProgressService
from otel_stigmer.server.status_service import StatusService
from otel_stigmer.server.status_store import StatusStore
from otel_stigmer.server.store import EventStore

__all__ = ["ReceiverServer", "format_endpoint"]

_log = logging.getLogger(__name__)

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - mapping, not binding


if TYPE_CHECKING:
    _Interceptor = grpc.ServerInterceptor[Any, Any]
else:  # grpc's classes are generic only in its type stubs
    _Interceptor = grpc.ServerInterceptor


class _RefuseBeforeAWorker(_Interceptor):
    """Answers calls without an accepted key before they occupy a worker thread.

    gRPC runs interceptors on its polling thread, with the call's metadata, before the
    handler is given a worker. A unary handler's worker then waits for the request message;
    a client that never sends one would hold it for good, and 16 such calls would starve
    the receiver. A refused call gets a request-streaming handler instead, which answers
    without reading the request, so its worker is free again at once.
    """

    def __init__(self, service: ProgressService) -> None:
        self._service = service

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        method = str(handler_call_details.method).rsplit("/", 1)[-1]
        metadata: Any = handler_call_details.invocation_metadata
        if handler is None or self._service.admits(method, metadata):
            return handler
        return grpc.stream_unary_rpc_method_handler(
            functools.partial(self._service.refuse, method),
            response_serializer=handler.response_serializer,
        )


def format_endpoint(host: str, port: int) -> str:
    """Return ``host:port``, bracketing IPv6 literals (``[::1]:9090``)."""
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"[{host}]:{port}" if is_v6 else f"{host}:{port}"


class ReceiverServer:
    """The reference Stigmer receiver: bearer-key auth, optional TLS, SQLite storage.

    A :meth:`stop` followed by :meth:`start` serves again on the same port (the one
    picked at the first start when ``port`` is 0) and the same database.

    Args:
        api_keys: Accepted API keys (at least one).
        db_path: The SQLite file events are stored in.
        host: Interface to bind; ``"::1"`` and other IPv6 literals work.
        port: Port to bind; 0 picks a free one.
        tls_cert: Server certificate chain (PEM) to serve TLS; needs ``tls_key``.
        tls_key: Private key (PEM) of ``tls_cert``.
        batch_enabled: False answers ``report_progress_batch`` with UNIMPLEMENTED.
        max_workers: Threads serving calls.

    Raises:
        ConfigError: No key, an empty key, or only one of ``tls_cert`` / ``tls_key``.
    """

    def __init__(
        self,
        *,
        api_keys: Sequence[str],
        db_path: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: bytes | None = None,
        tls_key: bytes | None = None,
        batch_enabled: bool = True,
        max_workers: int = 16,
    ) -> None:
        if (tls_cert is None) != (tls_key is None):
            raise ConfigError(
                "TLS needs both a certificate and its private key: pass tls_cert and tls_key "
                "(--tls-cert and --tls-key for `otel-stigmer serve`), or neither for plaintext"
            )
        if not 0 <= port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535, got {port}")
        self._auth = BearerKeyAuth(api_keys)
        self._db_path = os.fspath(db_path)
        self._host = host
        self._port = port
        self._tls = None if tls_cert is None or tls_key is None else (tls_key, tls_cert)
        self._max_workers = max_workers
        self.faults = FaultInjector(batch_enabled=batch_enabled)
        self._store: EventStore | None = None
        self._status_store: StatusStore | None = None
        #: ``updateStatus`` calls received per execution id, failed ones included.
        self.status_calls: Counter[str] = Counter()
        self._server: grpc.Server | None = None

    def __repr__(self) -> str:
        state = "running" if self._server is not None else "stopped"
        scheme = "tls" if self._tls else "plaintext"
        return (
            f"ReceiverServer(endpoint={format_endpoint(self._host, self._port)!r}, "
            f"{scheme}, db_path={self._db_path!r}, {state})"
        )

    @property
    def port(self) -> int:
        """The bound port (the picked one once started with port 0)."""
        return self._port

    @property
    def host(self) -> str:
        """The bound interface."""
        return self._host

    @property
    def endpoint(self) -> str:
        """A ``host:port`` a client can dial (wildcard hosts become loopback)."""
        return format_endpoint(_WILDCARDS.get(self._host, self._host), self._port)

    @property
    def auth(self) -> BearerKeyAuth:
        """The key check (and its per-address throttle), to share with the HTTP side."""
        return self._auth

    @property
    def tls(self) -> bool:
        """True when serving TLS."""
        return self._tls is not None

    @property
    def store(self) -> EventStore:
        """The event store (opened at construction and at every start)."""
        if self._store is None:
            self._store = EventStore(self._db_path)
        return self._store

    @property
    def status_store(self) -> StatusStore:
        """The statuses received through ``updateStatus`` (same database, own tables)."""
        if self._status_store is None:
            self._status_store = StatusStore(self._db_path)
        return self._status_store

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._server is not None

    def start(self) -> ReceiverServer:
        """Bind and start serving; returns self.

        Raises:
            OSError: The address cannot be bound (for example the port is taken).
        """
        if self._server is not None:
            return self
        store = self.store
        self.faults.rearm()
        service = ProgressService(store, self._auth, self.faults)
        server = grpc.server(
            ThreadPoolExecutor(
                max_workers=self._max_workers, thread_name_prefix="stigmer-receiver"
            ),
            interceptors=[_RefuseBeforeAWorker(service)],
            # Without this, Linux lets a second server share a busy port silently.
            options=[("grpc.so_reuseport", 0)],
        )
        progress_pb2_grpc.add_WorkflowRunnerCommandControllerServicer_to_server(service, server)
        command_pb2_grpc.add_WorkflowExecutionCommandControllerServicer_to_server(
            StatusService(self.status_store, self._auth, self.faults, self.status_calls), server
        )
        address = format_endpoint(self._host, self._port)
        try:
            if self._tls is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, grpc.ssl_server_credentials([self._tls]))
        except RuntimeError as exc:
            port = 0
            cause: BaseException | None = exc
        else:
            cause = None
        if port == 0:
            server.stop(None)
            self.stop(None)
            raise OSError(f"cannot bind the receiver to {address}: is the port in use?") from cause
        self._port = port
        server.start()
        self._server = server
        _log.debug("receiver listening on %s", self.endpoint)
        return self

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving (in-flight calls get ``grace`` seconds) and close the store."""
        server, self._server = self._server, None
        self.faults.release()
        if server is not None:
            server.stop(grace).wait()
            self._auth.throttle.flush_log()
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._status_store is not None:
            self._status_store.close()
            self._status_store = None

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """Block until the server stops or ``timeout`` passes; True when it stopped."""
        server = self._server
        if server is None:
            return True
        return server.wait_for_termination(timeout)

    def __enter__(self) -> ReceiverServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
