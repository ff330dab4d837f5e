"""The authenticated gRPC callback client: ``report_progress`` and friends.

One channel per client (re-created in a forked child), TLS by default, the API key
sent as ``authorization: Bearer <key>`` on every call and never written anywhere
else. gRPC's own retries are disabled because retrying is done here, by
:class:`~otel_stigmer.retry.RetryPolicy`, so that it is visible and interruptible.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import grpc

from otel_stigmer._forksafe import renew_after_fork
from otel_stigmer._wire import (
    RETRY_INFO_TRAILER,
    Stub,
    channel_args,
    encode_batch,
    retry_delay,
    run_ordered,
    run_pipelined,
    suppress_instrumentation,
)
from otel_stigmer.config import StigmerConfig
from otel_stigmer.events import (
    EncodedEvents,
    ProgressAckResponse,
    ReportProgressBatchRequest,
    ReportProgressBatchResponse,
    WorkflowProgressEvent,
)
from otel_stigmer.exceptions import CallbackError, ConfigError
from otel_stigmer.retry import RetryPolicy, describe_failure

__all__ = ["RETRY_INFO_TRAILER", "CallbackClient", "suppress_instrumentation"]

_log = logging.getLogger(__name__)

_MAX_REMEMBERED_WARNINGS = 256
_MAX_REMEMBERED_KEYS = 8


class CallbackClient:
    """Sends progress events to the Stigmer Service over one authenticated gRPC channel.

    Thread-safe: any number of threads may call it at once. Use it as a context manager
    or call :meth:`close`. Failures surface as :class:`~otel_stigmer.CallbackError`,
    whose text never contains the API key.

    Args:
        config: Where and how to connect.
        retry_policy: Backoff and retryable codes of :meth:`report_progress_with_retry`.
        channel_options: Extra gRPC channel arguments; they override the client's own
            (for example ``("grpc.ssl_target_name_override", "name-in-cert")``).

    Raises:
        ConfigError: When the key file or CA file has become unreadable since the
            config was built (no connection is attempted at construction).
    """

    def __init__(
        self,
        config: StigmerConfig,
        *,
        retry_policy: RetryPolicy | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self._config = config
        self._policy = retry_policy or RetryPolicy()
        self._options = channel_args(self._policy, channel_options, allow_proxy=config.allow_proxy)
        self._credentials = (
            grpc.ssl_channel_credentials(root_certificates=config.read_ca_bundle())
            if config.use_tls
            else None
        )
        self._lock = threading.Lock()
        renew_after_fork(self, "_lock")
        self._closed = threading.Event()
        self._key = config.read_api_key()
        self._known_keys: collections.deque[str] = collections.deque(
            [self._key], maxlen=_MAX_REMEMBERED_KEYS
        )
        self._metadata = self._auth_metadata(self._key)
        self._key_rejected = False
        self._warned: set[tuple[str, str]] = set()
        # Channels of a parent process are kept, never closed, in a forked child: closing
        # them there could block on the parent's gRPC threads, which the child lacks.
        self._orphans: list[grpc.Channel] = []
        self._pid = os.getpid()
        self._channel = self._open_channel()
        self._stub = Stub(self._channel)
        _log.debug("Stigmer callback client for %s (tls=%s)", config.authority(), config.use_tls)

    def __repr__(self) -> str:
        return (
            f"CallbackClient(endpoint={self._config.authority()!r}, "
            f"use_tls={self._config.use_tls!r}, closed={self._closed.is_set()!r})"
        )

    def __enter__(self) -> CallbackClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def config(self) -> StigmerConfig:
        """The configuration this client was built from."""
        return self._config

    @property
    def retry_policy(self) -> RetryPolicy:
        """The policy used by :meth:`report_progress_with_retry`."""
        return self._policy

    def close(self) -> None:
        """Close the channel and cut short any backoff in progress. Idempotent."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            channel = self._channel
        if self._pid == os.getpid():
            channel.close()

    def report_progress(
        self, event: WorkflowProgressEvent, timeout: float | None = None
    ) -> ProgressAckResponse:
        """Send one event.

        Args:
            event: The event to send.
            timeout: Seconds allowed for the call; ``config.timeout`` when ``None``.

        Returns:
            The receiver's acknowledgement.

        Raises:
            CallbackError: When the call fails; ``code`` is the gRPC status code.
        """
        deadline = self._timeout(timeout)
        stub, metadata = self._prepare()
        try:
            with suppress_instrumentation():
                response: ProgressAckResponse = stub.report_progress(
                    event, timeout=deadline, metadata=metadata
                )
        except grpc.RpcError as exc:
            raise self._failure(exc) from None
        except ValueError:
            # grpc raises ValueError when the channel was closed under a running call.
            raise self._closed_error() from None
        return response

    def report_progress_batch(
        self, events: Sequence[WorkflowProgressEvent], timeout: float | None = None
    ) -> ReportProgressBatchResponse:
        """Send several events in one call, in order.

        Raises:
            CallbackError: When the call fails; ``code`` is ``UNIMPLEMENTED`` when the
                receiver has no batch RPC (send the events one by one instead).
        """
        deadline = self._timeout(timeout)
        stub, metadata = self._prepare()
        request: ReportProgressBatchRequest | bytes
        if isinstance(events, EncodedEvents):
            request = encode_batch(events.payloads)  # the stored bytes, as they are
        else:
            request = ReportProgressBatchRequest(events=events)
        try:
            with suppress_instrumentation():
                response: ReportProgressBatchResponse = stub.report_progress_batch(
                    request, timeout=deadline, metadata=metadata
                )
        except grpc.RpcError as exc:
            raise self._failure(exc) from None
        except ValueError:
            raise self._closed_error() from None
        return response

    def report_progress_many(
        self,
        events: Sequence[WorkflowProgressEvent],
        timeout: float | None = None,
        *,
        max_in_flight: int = 32,
    ) -> list[CallbackError | None]:
        """Send events as pipelined unary calls, at most ``max_in_flight`` at a time.

        Unlike a batch, each event succeeds or fails on its own. Calls are issued in input
        order but may be stored out of order; send one execution's events in one batch
        or one by one when order matters to the receiver.

        Returns:
            One entry per event, in input order: ``None`` when delivered, else the error.
        """
        start = self._starter(timeout, max_in_flight)
        if isinstance(start, CallbackError):
            return [start] * len(events)
        with suppress_instrumentation():
            outcomes = run_pipelined(
                events, start, self._outcome, self._closed_error, max_in_flight
            )
        return [o if isinstance(o, CallbackError) else None for o in outcomes]

    def report_progress_ordered(
        self,
        events: Sequence[WorkflowProgressEvent],
        timeout: float | None = None,
        *,
        max_in_flight: int = 32,
    ) -> list[ProgressAckResponse | CallbackError | None]:
        """Send events as unary calls, in order per execution, pipelined across executions.

        Never two calls are in flight for one execution, so a receiver stores each
        execution's events in input order. After a failure, the later events of that
        execution are not sent (their entry is ``None``); other executions go on.

        Returns:
            One entry per event, in input order: the acknowledgement, the error, or
            ``None`` when the event was not sent.
        """
        start = self._starter(timeout, max_in_flight)
        if isinstance(start, CallbackError):
            return [start] * len(events)
        with suppress_instrumentation():
            return run_ordered(events, start, self._outcome, self._closed_error, max_in_flight)

    def report_progress_with_retry(
        self,
        event: WorkflowProgressEvent,
        max_attempts: int = 3,
        *,
        stop: threading.Event | None = None,
    ) -> ProgressAckResponse:
        """Send one event, retrying retryable failures with exponential backoff and jitter.

        A delay asked for by the server (``RetryInfo``) is waited at least. Codes outside
        the policy's retryable set (a wrong key, a bad request) fail at once.

        Args:
            event: The event to send; its ``event_id`` lets the receiver drop duplicates.
            max_attempts: Total attempts, including the first.
            stop: When set, ends a backoff early and gives up; :meth:`close` does the
                same when no ``stop`` is given.

        Raises:
            CallbackError: The last failure, once attempts are exhausted, the failure is
                not retryable or ``stop`` was set.
        """
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        waiter = stop if stop is not None else self._closed
        attempt = 1
        while True:
            try:
                return self.report_progress(event)
            except CallbackError as exc:
                if not self._policy.is_retryable(exc.code):
                    if exc.code is not grpc.StatusCode.CANCELLED:
                        self._warn_once(exc, "the event was not delivered")
                    raise
                if attempt >= max_attempts:
                    self._warn_once(
                        exc, f"giving up after {attempt} attempt(s); the event was not delivered"
                    )
                    raise
                delay = self._policy.backoff(attempt, server_delay=exc.retry_delay)
                text = f"attempt {attempt}/{max_attempts} failed with {exc.code.name}"
                _log.debug("Stigmer callback %s; retrying in %.3fs", text, delay)
                if waiter.wait(delay):
                    raise
                attempt += 1

    # -- internals -----------------------------------------------------------------

    @staticmethod
    def _auth_metadata(key: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {key}"),)

    def _open_channel(self) -> grpc.Channel:
        target = self._config.authority()
        if self._credentials is None:
            return grpc.insecure_channel(target, options=self._options)
        return grpc.secure_channel(target, self._credentials, options=self._options)

    def _timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self._config.timeout
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        return timeout

    def _prepare(
        self,
    ) -> tuple[Stub, tuple[tuple[str, str], ...]]:
        """Return the stub and auth metadata, re-opening the channel in a forked child."""
        if self._closed.is_set():
            raise self._closed_error()
        pid = os.getpid()
        if pid != self._pid:
            with self._lock:
                if pid != self._pid:
                    self._orphans.append(self._channel)
                    self._pid = pid
                    self._channel = self._open_channel()
                    self._stub = Stub(self._channel)
        if self._key_rejected:
            # The key was refused: read the file again before each call until it changes,
            # so a key rotated during a backoff is used by the very next attempt.
            self._reload_key()
        return self._stub, self._metadata

    def _closed_error(self) -> CallbackError:
        return CallbackError(grpc.StatusCode.CANCELLED, "the callback client is closed")

    def _scrub(self, text: str) -> str:
        for key in list(self._known_keys):
            text = text.replace(key, "***")
        return text

    def _failure(self, error: grpc.RpcError) -> CallbackError:
        """Turn a gRPC error into a CallbackError without the key; react to a rejected key."""
        code_of = getattr(error, "code", None)
        details_of = getattr(error, "details", None)
        code = code_of() if callable(code_of) else None
        details = details_of() if callable(details_of) else None
        if not isinstance(code, grpc.StatusCode):
            code = grpc.StatusCode.UNKNOWN
        failure = CallbackError(
            code, self._scrub(str(details or "")), retry_delay=retry_delay(error)
        )
        if code is grpc.StatusCode.UNAUTHENTICATED:
            self._key_rejected = self._config.api_key_file is not None
            self._reload_key()
        return failure

    def _starter(
        self, timeout: float | None, max_in_flight: int
    ) -> Callable[[WorkflowProgressEvent], grpc.Future[ProgressAckResponse]] | CallbackError:
        """What starts one ``report_progress`` call, or why none can start."""
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        deadline = self._timeout(timeout)
        try:
            stub, metadata = self._prepare()
        except CallbackError as exc:
            return exc
        return lambda event: stub.report_progress.future(event, timeout=deadline, metadata=metadata)

    def _outcome(
        self, future: grpc.Future[ProgressAckResponse]
    ) -> ProgressAckResponse | CallbackError:
        try:
            return future.result()
        except grpc.FutureCancelledError:
            return self._closed_error()
        except grpc.RpcError as error:
            return self._failure(error)
        except Exception as error:
            return CallbackError(grpc.StatusCode.UNKNOWN, type(error).__name__)

    def _reload_key(self) -> None:
        """Re-read a key file after a rejection, so a rotated key is used from the next call."""
        if self._config.api_key_file is None:
            return
        try:
            key = self._config.read_api_key()
        except ConfigError as exc:
            _log.warning("Could not re-read the Stigmer API key file: %s", exc)
            return
        with self._lock:
            if key == self._key:
                return
            self._key_rejected = False
            self._key = key
            self._known_keys.append(key)
            self._metadata = self._auth_metadata(key)
        _log.info("The Stigmer API key file changed; the next call uses the new key")

    def _warn_once(self, failure: CallbackError, consequence: str) -> None:
        signature = (failure.code.name, failure.details)
        with self._lock:
            if signature in self._warned:
                return
            if len(self._warned) >= _MAX_REMEMBERED_WARNINGS:
                self._warned.clear()
            self._warned.add(signature)
        _log.warning("%s", describe_failure(failure.code, failure.details, consequence))
