"""``StatusClient``: the callback client, speaking the open-source Stigmer's ``updateStatus``.

It is a :class:`~otel_stigmer.client.CallbackClient` (same channel, TLS, Bearer key,
key-file reload, key scrubbing, fork safety and retry policy) with the
``WorkflowExecutionCommandController/updateStatus`` call added.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import grpc

from otel_stigmer._proto.ai.stigmer.agentic.workflowexecution.v1 import command_pb2_grpc
from otel_stigmer.client import CallbackClient, suppress_instrumentation
from otel_stigmer.config import StigmerConfig
from otel_stigmer.exceptions import CallbackError
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.status.wire import (
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowExecutionUpdateStatusInput,
)

__all__ = ["StatusClient", "UpdateStatusError"]

_Stub = command_pb2_grpc.WorkflowExecutionCommandControllerStub


class UpdateStatusError(CallbackError):
    """An ``updateStatus`` call failed (a :class:`CallbackError`; the text never holds the key)."""

    def __init__(
        self, code: grpc.StatusCode, details: str, *, retry_delay: float | None = None
    ) -> None:
        super().__init__(code, details, retry_delay=retry_delay)
        self.args = (f"updateStatus failed: {code.name}: {details}",)

    @classmethod
    def of(cls, error: CallbackError) -> UpdateStatusError:
        """The same failure, named after ``updateStatus``."""
        return cls(error.code, error.details, retry_delay=error.retry_delay)


class StatusClient(CallbackClient):
    """Sends ``WorkflowExecutionStatus`` updates over one authenticated gRPC channel.

    Args:
        config: Where and how to connect.
        retry_policy: Backoff and retryable codes (see :class:`CallbackClient`).
        channel_options: Extra gRPC channel arguments.
    """

    def __init__(
        self,
        config: StigmerConfig,
        *,
        retry_policy: RetryPolicy | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        super().__init__(config, retry_policy=retry_policy, channel_options=channel_options)
        self._status_channel: grpc.Channel | None = None
        self._status_stub: _Stub | None = None

    def __repr__(self) -> str:
        return "Status" + super().__repr__()

    def __enter__(self) -> StatusClient:
        return self

    def update_status(
        self,
        execution_id: str,
        status: WorkflowExecutionStatus,
        timeout: float | None = None,
    ) -> WorkflowExecution:
        """Merge ``status`` into the stored execution; return the execution after the merge.

        Raises:
            UpdateStatusError: When the call fails; ``code`` is the gRPC status code.
        """
        result = self.update_status_many([(execution_id, status)], timeout)[0]
        if isinstance(result, CallbackError):
            raise result
        return result

    def update_status_many(
        self,
        updates: Sequence[tuple[str, WorkflowExecutionStatus]],
        timeout: float | None = None,
        *,
        max_in_flight: int = 32,
    ) -> list[WorkflowExecution | UpdateStatusError]:
        """Send one ``updateStatus`` per item concurrently, at most ``max_in_flight`` at a time.

        Give each execution at most one item: calls of one batch may be applied in any order.

        Returns:
            One entry per item, in input order: the merged execution, or the error.
        """
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        deadline = self._timeout(timeout)
        try:
            stub, metadata = self._status_prepare()
        except CallbackError as exc:
            return [UpdateStatusError.of(exc)] * len(updates)
        results: list[WorkflowExecution | UpdateStatusError] = [
            UpdateStatusError(grpc.StatusCode.UNKNOWN, "not sent")
        ] * len(updates)
        pending: collections.deque[tuple[int, grpc.Future[WorkflowExecution]]] = collections.deque()
        with suppress_instrumentation():
            for index, (execution_id, status) in enumerate(updates):
                if len(pending) >= max_in_flight:
                    self._settle_status(*pending.popleft(), results)
                request = WorkflowExecutionUpdateStatusInput(
                    execution_id=execution_id, status=status
                )
                try:
                    future = stub.updateStatus.future(request, timeout=deadline, metadata=metadata)
                except ValueError:
                    results[index] = UpdateStatusError.of(self._closed_error())
                    continue
                pending.append((index, future))
            while pending:
                self._settle_status(*pending.popleft(), results)
        return results

    def _status_prepare(self) -> tuple[_Stub, tuple[tuple[str, str], ...]]:
        """The status stub on the current channel (re-opened in a forked child) and auth."""
        _, metadata = self._prepare()
        channel = self._channel
        stub = self._status_stub
        if stub is None or self._status_channel is not channel:
            stub = _Stub(channel)
            self._status_channel, self._status_stub = channel, stub
        return stub, metadata

    def _settle_status(
        self,
        index: int,
        future: grpc.Future[WorkflowExecution],
        results: list[WorkflowExecution | UpdateStatusError],
    ) -> None:
        try:
            results[index] = future.result()
        except grpc.FutureCancelledError:
            results[index] = UpdateStatusError.of(self._closed_error())
        except grpc.RpcError as error:
            results[index] = UpdateStatusError.of(self._failure(error))
        except Exception as error:  # a broken call object must not stop the others
            results[index] = UpdateStatusError(grpc.StatusCode.UNKNOWN, type(error).__name__)
