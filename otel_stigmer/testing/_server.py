"""``StigmerTestServer``: the reference receiver in-process, on a free loopback port."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import grpc

from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.server.app import ReceiverServer
from otel_stigmer.server.faults import FaultInjector
from otel_stigmer.server.status_store import StatusStore
from otel_stigmer.status.wire import WorkflowExecutionStatus

__all__ = ["StigmerTestServer"]

_LOOPBACK = "127.0.0.1"


def _render(events: list[WorkflowProgressEvent]) -> str:
    if not events:
        return "  (none)"
    return "\n".join(
        f"  {e.workflow_execution_id} #{e.sequence_number} {e.event_type}"
        + (f" task={e.task_name}" if e.task_name else "")
        + (f" status={e.status}" if e.status else "")
        for e in events
    )


class StigmerTestServer:
    """A real Stigmer receiver for integration tests, started in-process.

    Use it as a context manager; it serves gRPC on ``127.0.0.1`` (a free port unless
    ``port`` is given), stores events in a temporary SQLite file unless ``db_path``
    is given, and serves TLS with a throw-away CA when ``tls`` is True.

    Example:
        >>> with StigmerTestServer() as server:                     # doctest: +SKIP
        ...     os.environ.update(server.env())
        ...     run_my_workflow()
        ...     server.wait_for_events(lambda evs: evs[-1].event_type == "workflow_completed")

    Args:
        api_key: The one API key the server accepts.
        tls: Serve TLS; clients trust :attr:`ca_file`.
        db_path: SQLite file to use instead of a temporary one.
        batch_enabled: False answers ``report_progress_batch`` with UNIMPLEMENTED.
        port: Port to bind; 0 picks a free one.
        protocol: When given (``progress`` or ``status``), :meth:`env` adds
            ``STIGMER_PROTOCOL`` with it. The server answers both protocols either way.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        tls: bool = False,
        db_path: str | None = None,
        batch_enabled: bool = True,
        port: int = 0,
        protocol: str | None = None,
    ) -> None:
        self._api_key = api_key
        self._protocol = protocol
        self._tmp = tempfile.TemporaryDirectory(prefix="stigmer-test-server-")
        tmp = Path(self._tmp.name)
        self._ca_file: str | None = None
        cert = key = None
        try:
            if tls:
                from otel_stigmer.testing._certs import make_test_certificates  # noqa: PLC0415

                certs = make_test_certificates(tmp / "tls")
                self._ca_file = str(certs.ca_cert_path)
                cert, key = certs.server_cert, certs.server_key
            self._server = ReceiverServer(
                api_keys=[api_key],
                db_path=db_path if db_path is not None else tmp / "events.db",
                host=_LOOPBACK,
                port=port,
                tls_cert=cert,
                tls_key=key,
                batch_enabled=batch_enabled,
                max_workers=8,
            )
        except BaseException:
            self._tmp.cleanup()
            raise

    def __repr__(self) -> str:
        return f"StigmerTestServer(endpoint={self.endpoint!r}, tls={self.tls})"

    # Lifecycle -------------------------------------------------------------------

    def start(self) -> StigmerTestServer:
        """Start serving (done by ``with``); returns self."""
        self._server.start()
        return self

    def stop(self, grace: float | None = 0.5) -> None:
        """Stop serving, keeping the port and the database for :meth:`restart`."""
        self._server.stop(grace)

    def restart(self) -> None:
        """Serve again on the same port with the same database (after :meth:`stop` or not)."""
        self._server.stop(0.5)
        self._server.start()

    def close(self) -> None:
        """Stop serving and delete the temporary directory."""
        try:
            self._server.stop(0.5)
        finally:
            self._tmp.cleanup()

    def __enter__(self) -> StigmerTestServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Connection details ----------------------------------------------------------

    @property
    def server(self) -> ReceiverServer:
        """The underlying :class:`~otel_stigmer.server.ReceiverServer`."""
        return self._server

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``, the value for ``STIGMER_SERVICE_ENDPOINT``."""
        return self._server.endpoint

    @property
    def port(self) -> int:
        """The bound port (known once started)."""
        return self._server.port

    @property
    def api_key(self) -> str:
        """The accepted API key."""
        return self._api_key

    @property
    def tls(self) -> bool:
        """True when serving TLS."""
        return self._server.tls

    @property
    def ca_file(self) -> str | None:
        """Path of the CA certificate (PEM) clients must trust; None without TLS."""
        return self._ca_file

    def env(self) -> dict[str, str]:
        """Return the ``STIGMER_SERVICE_*`` variables a client needs to reach this server."""
        env = {
            "STIGMER_SERVICE_ENDPOINT": self.endpoint,
            "STIGMER_SERVICE_API_KEY": self._api_key,
            "STIGMER_SERVICE_USE_TLS": "true" if self.tls else "false",
        }
        if self._ca_file is not None:
            env["STIGMER_SERVICE_CA_FILE"] = self._ca_file
        if self._protocol is not None:
            env["STIGMER_PROTOCOL"] = self._protocol
        return env

    # Received events -------------------------------------------------------------

    def events(self, execution_id: str | None = None) -> list[WorkflowProgressEvent]:
        """Return the stored events in sequence order, of one execution or of all."""
        return self._server.store.events(execution_id)

    def wait_for_events(
        self,
        count: int | Callable[[list[WorkflowProgressEvent]], bool],
        *,
        execution_id: str | None = None,
        timeout: float = 10.0,
    ) -> list[WorkflowProgressEvent]:
        """Wait until enough events are stored, then return them (in sequence order).

        Args:
            count: The number of events to wait for (at least), or a predicate on
                the current event list.
            execution_id: Only look at this execution's events.
            timeout: Seconds to wait at most.

        Raises:
            AssertionError: On timeout, listing the events seen.
        """
        done: Callable[[list[WorkflowProgressEvent]], bool]
        if callable(count):
            done = count
        else:
            wanted = count
            done = lambda events: len(events) >= wanted  # noqa: E731 - one-line predicate
        deadline = time.monotonic() + timeout
        while True:
            store = self._server.store
            seen_rowid = store.last_rowid
            events = store.events(execution_id)
            if done(events):
                return events
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                wanted_text = "the condition" if callable(count) else f"{count} event(s)"
                scope = f" of execution {execution_id!r}" if execution_id is not None else ""
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {wanted_text}{scope}; "
                    f"{len(events)} seen:\n{_render(events)}"
                )
            # Short slices keep the loop live across a restart, which swaps the store.
            store.wait_for_change(seen_rowid, min(remaining, 0.5))

    # Received statuses (updateStatus) ---------------------------------------------

    @property
    def status_store(self) -> StatusStore:
        """The statuses received through ``updateStatus``, merged as upstream does."""
        return self._server.status_store

    def status(self, execution_id: str) -> WorkflowExecutionStatus | None:
        """The stored status of ``execution_id`` (None when it never got an update)."""
        return self._server.status_store.status(execution_id)

    def wait_for_status(
        self,
        predicate: Callable[[WorkflowExecutionStatus], bool],
        execution_id: str,
        *,
        timeout: float = 10.0,
    ) -> WorkflowExecutionStatus:
        """Wait until the stored status of ``execution_id`` satisfies ``predicate``; return it.

        Raises:
            AssertionError: On timeout, showing the last status seen.
        """
        deadline = time.monotonic() + timeout
        while True:
            store = self._server.status_store
            seen = store.last_update_id
            status = store.status(execution_id)
            if status is not None and predicate(status):
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for the status of {execution_id!r}; "
                    f"last seen:\n{status}"
                )
            store.wait_for_change(seen, min(remaining, 0.5))

    # Faults ----------------------------------------------------------------------

    @property
    def faults(self) -> FaultInjector:
        """The fault switchboard, with the per-method call counters (``faults.calls``)."""
        return self._server.faults

    def fail_next(
        self,
        n: int,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        *,
        retry_delay: float | None = None,
        details: str = "injected fault",
    ) -> None:
        """Fail the next ``n`` authenticated calls with ``code`` (as ``faults.fail_next``)."""
        self.faults.fail_next(n, code, retry_delay=retry_delay, details=details)

    def set_latency(self, seconds: float) -> None:
        """Delay every authenticated call by ``seconds`` (0 to stop)."""
        self.faults.set_latency(seconds)
