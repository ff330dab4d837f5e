"""``StatusSink``: delivers progress as the open-source Stigmer's ``updateStatus`` calls.

Each ``send`` folds its events into the status of their executions and sends, per
execution it changed, one ``updateStatus`` with the whole current status; calls for
different executions run concurrently. Sends never overlap, so at most one call per
execution is in flight; events that arrive meanwhile wait in the pipeline's queue and
the next send carries the latest status for all of them (coalescing: the last state
wins, and since the fold never regresses, neither do the calls).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from otel_stigmer.config import StigmerConfig
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.exceptions import CallbackError
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.sinks import PartialDeliveryError, Refused
from otel_stigmer.status.client import StatusClient, UpdateStatusError
from otel_stigmer.status.fold import ExecutionFold
from otel_stigmer.status.wire import WorkflowExecutionStatus

__all__ = ["StatusSink", "StatusSinkStats"]

_log = logging.getLogger(__name__)

#: Answers that repeating cannot fix: the events of that execution are refused.
_REFUSED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)
#: Why a status too large to send is refused.
_TOO_LARGE = "status over the message size limit even without task metadata"
DEFAULT_MAX_OPEN_EXECUTIONS = 10_000
DEFAULT_MAX_FINISHED_IDS = 10_000
#: Largest status sent: gRPC servers refuse messages over 4 MiB by default.
DEFAULT_MAX_STATUS_BYTES = 3 * 1024 * 1024


@dataclass
class StatusSinkStats:
    """Counters of a :class:`StatusSink`.

    Attributes:
        events: Events folded.
        calls: ``updateStatus`` calls made (failed ones included).
        failed_calls: Calls that failed.
        unchanged: Executions of a send whose status had not changed since the last
            acknowledged one (no call made).
        late_events: Events ignored because their execution's terminal status was
            already acknowledged (or its status had grown too large to send).
        evicted: Open executions forgotten to stay within ``max_open_executions``.
        compacted: Statuses sent without task metadata to stay within ``max_status_bytes``.
        oversized: Statuses not sent because even without task metadata they were too large.
        open_executions: Executions whose status is held now.
    """

    events: int = 0
    calls: int = 0
    failed_calls: int = 0
    unchanged: int = 0
    late_events: int = 0
    evicted: int = 0
    compacted: int = 0
    oversized: int = 0
    open_executions: int = 0


class _Execution:
    __slots__ = ("acked", "fold")

    def __init__(self, execution_id: str) -> None:
        self.fold = ExecutionFold(execution_id)
        self.acked = b""


class StatusSink:
    """An :class:`~otel_stigmer.sinks.EventSink` that speaks ``updateStatus``.

    Memory stays bounded: an execution's status is dropped once its terminal phase is
    acknowledged (its id is remembered, among the last ``max_finished_ids``, so that a
    late event cannot send a status that would undo it), and at most
    ``max_open_executions`` statuses are held (the least recently updated one with
    nothing left to send goes first).

    Args:
        config: Where and how to connect (TLS, Bearer key, timeout).
        retry_policy: Passed to the client (the pipeline does the retrying).
        max_in_flight: Concurrent calls of one send, across executions.
        max_open_executions: Statuses held at most.
        max_finished_ids: Finished execution ids remembered.
        max_status_bytes: Largest status sent; a larger one goes without task metadata,
            and one still too large is refused (its events are returned as refused).
    """

    def __init__(
        self,
        config: StigmerConfig,
        *,
        retry_policy: RetryPolicy | None = None,
        max_in_flight: int = 32,
        max_open_executions: int = DEFAULT_MAX_OPEN_EXECUTIONS,
        max_finished_ids: int = DEFAULT_MAX_FINISHED_IDS,
        max_status_bytes: int = DEFAULT_MAX_STATUS_BYTES,
    ) -> None:
        self._config = config
        self._retry_policy = retry_policy
        self._max_in_flight = max_in_flight
        self._max_open = max_open_executions
        self._max_finished = max_finished_ids
        self._max_bytes = max_status_bytes
        self._client: StatusClient | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._open: collections.OrderedDict[str, _Execution] = collections.OrderedDict()
        self._finished: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._stats = StatusSinkStats()

    def __repr__(self) -> str:
        return f"StatusSink(endpoint={self._config.authority()!r}, open={len(self._open)})"

    def stats(self) -> StatusSinkStats:
        """A snapshot of the counters."""
        with self._lock:
            return StatusSinkStats(**{**self._stats.__dict__, "open_executions": len(self._open)})

    def status(self, execution_id: str) -> WorkflowExecutionStatus | None:
        """The status currently held for ``execution_id`` (None when not held)."""
        with self._lock:
            held = self._open.get(execution_id)
            return None if held is None else held.fold.status()

    def send(self, events: Sequence[WorkflowProgressEvent]) -> list[Refused]:
        """Fold ``events`` and send the changed statuses; return the refused events.

        Raises:
            CallbackError: A call failed with a retryable or authentication error; a
                :class:`PartialDeliveryError` when other executions of the batch went through.
        """
        if self._pid != os.getpid():
            self._after_fork()
        with self._lock:
            touched = self._fold(events)
            updates: list[tuple[str, WorkflowExecutionStatus, bytes]] = []
            done_ids: set[str] = set()
            refused: list[Refused] = []
            for execution_id, batch in touched.items():
                held = self._open[execution_id]
                status = self._fit(execution_id, held.fold.status())
                if status is None:
                    # A task list only grows: this execution can never be sent again.
                    refused.extend(Refused(event, "rejected", _TOO_LARGE) for event in batch)
                    done_ids.update(event.event_id for event in batch)
                    self._forget(execution_id)
                    continue
                payload = status.SerializeToString(deterministic=True)
                if payload == held.acked:
                    self._stats.unchanged += 1
                    done_ids.update(event.event_id for event in batch)
                    self._finish_if_terminal(execution_id, held)
                    continue
                updates.append((execution_id, status, payload))
            if not updates:
                return refused
            results = self._get_client().update_status_many(
                [(execution_id, status) for execution_id, status, _ in updates],
                max_in_flight=self._max_in_flight,
            )
            self._stats.calls += len(updates)
            failure: CallbackError | None = None
            for (execution_id, _, payload), result in zip(updates, results, strict=True):
                batch = touched[execution_id]
                if not isinstance(result, UpdateStatusError):
                    held = self._open[execution_id]
                    held.acked = payload
                    done_ids.update(event.event_id for event in batch)
                    self._finish_if_terminal(execution_id, held)
                    continue
                self._stats.failed_calls += 1
                if result.code in _REFUSED:
                    invalid = result.code == grpc.StatusCode.INVALID_ARGUMENT
                    reason = "rejected" if invalid else "refused"
                    refused.extend(Refused(event, reason, result.details) for event in batch)
                    done_ids.update(event.event_id for event in batch)
                elif failure is None:
                    failure = result
            self._evict_settled()
        if failure is None:
            return refused
        done_ids.discard("")
        if done_ids:
            raise PartialDeliveryError(failure, frozenset(done_ids), refused)
        raise failure

    def close(self) -> None:
        """Close the channel."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- internals -----------------------------------------------------------------

    def _fold(
        self, events: Sequence[WorkflowProgressEvent]
    ) -> dict[str, list[WorkflowProgressEvent]]:
        touched: dict[str, list[WorkflowProgressEvent]] = {}
        for event in events:
            execution_id = event.workflow_execution_id
            if execution_id in self._finished:
                self._stats.late_events += 1
                continue
            held = self._open.get(execution_id)
            if held is None:
                held = self._open[execution_id] = _Execution(execution_id)
            else:
                self._open.move_to_end(execution_id)
            held.fold.apply(event)
            touched.setdefault(execution_id, []).append(event)
            self._stats.events += 1
        return touched

    def _fit(
        self, execution_id: str, status: WorkflowExecutionStatus
    ) -> WorkflowExecutionStatus | None:
        """``status`` within ``max_status_bytes``: as is, without task metadata, or None."""
        if status.ByteSize() <= self._max_bytes:
            return status
        for task in status.tasks:
            task.ClearField("metadata")
        if status.ByteSize() <= self._max_bytes:
            self._stats.compacted += 1
            return status
        self._stats.oversized += 1
        _log.error(
            "otel-stigmer: the status of execution %r has %d tasks and exceeds %d bytes even "
            "without task metadata; it is not sent",
            execution_id,
            len(status.tasks),
            self._max_bytes,
        )
        return None

    def _finish_if_terminal(self, execution_id: str, held: _Execution) -> None:
        if held.fold.terminal:
            self._forget(execution_id)

    def _forget(self, execution_id: str) -> None:
        """Drop an execution's state for good; its later events are ignored."""
        del self._open[execution_id]
        self._finished[execution_id] = None
        while len(self._finished) > self._max_finished:
            self._finished.popitem(last=False)

    def _evict_settled(self) -> None:
        over = len(self._open) - self._max_open
        if over <= 0:
            return
        for execution_id in list(self._open):
            if over <= 0:
                break
            held = self._open[execution_id]
            if held.acked and held.acked == held.fold.status().SerializeToString(
                deterministic=True
            ):
                del self._open[execution_id]
                self._stats.evicted += 1
                over -= 1
        if self._stats.evicted and over <= 0:
            _log.debug("otel-stigmer: %d open execution statuses evicted", self._stats.evicted)

    def _after_fork(self) -> None:
        # A forked child starts empty, like the pipeline: the parent keeps reporting its own
        # executions, and a lock held by the parent's sender thread at fork time would never
        # be released here. The parent's channel is left to the parent.
        self._lock = threading.Lock()
        self._open = collections.OrderedDict()
        self._finished = collections.OrderedDict()
        self._stats = StatusSinkStats()
        self._client = None
        self._pid = os.getpid()

    def _get_client(self) -> StatusClient:
        if self._client is None:
            self._client = StatusClient(self._config, retry_policy=self._retry_policy)
        return self._client
