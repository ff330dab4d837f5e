"""Report the outcome of runs that ended where no workflow code runs (terminate, timeout).

A terminated or timed-out run never executes workflow code again, so its worker cannot
report how it ended. :class:`ClosedRunWatcher` follows closed runs through Temporal's
visibility API and reports those outcomes under the same deterministic event ids as the
workflow side, so any number of watchers (and restarts) store each outcome once at a
receiver that de-duplicates by event id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from temporalio.api.common.v1 import WorkflowExecution as ExecutionRef
from temporalio.api.enums.v1 import EventType as HistoryEventType
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryReverseRequest
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus

from otel_stigmer.contrib.temporal import _ids
from otel_stigmer.contrib.temporal._closes import CloseReport, terminated_report, timed_out_report
from otel_stigmer.contrib.temporal._identity import ExecutionIdContext
from otel_stigmer.contrib.temporal._interceptor import StigmerInterceptor
from otel_stigmer.contrib.temporal._once import OnceFilter
from otel_stigmer.contrib.temporal._report import REPORTED, MarkerParams

__all__ = ["ClosedRunWatcher"]

_log = logging.getLogger(__name__)
#: Runs whose close is read (history, describe) at the same time.
_CONCURRENT_READS = 16
_QUERY = "(ExecutionStatus = 'Terminated' OR ExecutionStatus = 'TimedOut') AND CloseTime >= '{}'"


class ClosedRunWatcher:
    """Polls for terminated and timed-out runs and reports their outcomes.

    Each poll is one visibility query for runs closed since the last poll (minus an
    overlap for visibility lag), plus one history read per terminated run and one
    describe per timed-out run it has not reported yet. Open runs cost nothing.

    Args:
        client: A connected Temporal client (its namespace is watched).
        interceptor: Supplies the tracer and the execution id resolver; a default
            :class:`StigmerInterceptor` when omitted (use the worker's to share its resolver).
        interval: Seconds between polls; an outcome is reported within about this delay
            plus the server's visibility lag.
        lookback: How far back the first poll looks, so a restarted watcher catches runs
            that closed while it was down.
    """

    def __init__(
        self,
        client: Client,
        interceptor: StigmerInterceptor | None = None,
        *,
        interval: float = 2.0,
        lookback: timedelta = timedelta(minutes=10),
    ) -> None:
        self._client = client
        self._interceptor = interceptor or StigmerInterceptor()
        self._interval = interval
        self._lookback = lookback
        self._overlap = timedelta(seconds=max(10.0, 3 * interval))
        self._since: datetime | None = None
        # Runs already handled (reported, or a reset's replaced run): not read again.
        self._handled = OnceFilter()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Poll until ``stop`` is set (or the task is cancelled); errors are logged."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.poll()
            except Exception:
                _log.warning("watching closed Temporal runs failed; retrying", exc_info=True)
            try:
                await asyncio.wait_for(stop.wait(), self._interval)
            except asyncio.TimeoutError:
                continue

    async def poll(self) -> int:
        """Report the runs closed since the last poll; return how many were reported."""
        now = datetime.now(timezone.utc)
        since = self._since or now - self._lookback
        newest = since
        reported = 0
        query = _QUERY.format(since.isoformat().replace("+00:00", "Z"))
        pending: list[WorkflowExecution] = []
        async for execution in self._client.list_workflows(query):
            if execution.close_time is not None:
                newest = max(newest, execution.close_time)
            if REPORTED.seen(_ids.workflow_outcome_id(execution.run_id)):
                continue
            if self._handled.first(execution.run_id):
                pending.append(execution)
        for start in range(0, len(pending), _CONCURRENT_READS):
            batch = pending[start : start + _CONCURRENT_READS]
            outcomes = await asyncio.gather(
                *(self._report(execution) for execution in batch), return_exceptions=True
            )
            for execution, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    self._handled.forget(execution.run_id)  # try again on the next poll
                    _log.warning("could not report run %s", execution.run_id, exc_info=outcome)
                else:
                    reported += outcome
        # Runs may show up in visibility late: look back over an overlap next time.
        self._since = max(since, min(newest, now) - self._overlap)
        return reported

    async def _report(self, execution: WorkflowExecution) -> bool:
        report = await self._close_report(execution)
        if report is None:
            return False
        context = ExecutionIdContext(
            workflow_id=execution.id,
            run_id=execution.run_id,
            workflow_type=execution.workflow_type,
            memo=await _memo(execution),
            search_attributes={
                pair.key.name: pair.value
                for pair in execution.typed_search_attributes.search_attributes
            },
        )
        closed = execution.close_time or datetime.now(timezone.utc)
        identity = self._interceptor.resolve_identity(context)
        if execution.parent_id:
            identity = dataclasses.replace(
                identity,
                parent_workflow_id=execution.parent_id,
                parent_run_id=execution.parent_run_id or "",
            )
        self._interceptor.emit(
            MarkerParams(
                event_type=report.event_type.value,
                event_id=_ids.workflow_outcome_id(execution.run_id),
                identity=identity,
                workflow_id=execution.id,
                run_id=execution.run_id,
                task_queue=execution.task_queue,
                error_code=report.error_code,
                message=report.message,
                metadata={"close_status": report.close_status},
                time_ns=int(closed.timestamp() * 1_000_000_000),
            )
        )
        return True

    async def _close_report(self, execution: WorkflowExecution) -> CloseReport | None:
        if execution.status == WorkflowExecutionStatus.TERMINATED:
            reason, identity = await self._termination(execution)
            return terminated_report(reason, identity)
        if execution.status == WorkflowExecutionStatus.TIMED_OUT:
            handle = self._client.get_workflow_handle(execution.id, run_id=execution.run_id)
            config = (await handle.describe()).raw_description.execution_config
            return timed_out_report(
                started=execution.start_time,
                closed=execution.close_time or datetime.now(timezone.utc),
                run_timeout=_duration(config.workflow_run_timeout),
                execution_timeout=_duration(config.workflow_execution_timeout),
            )
        return None

    async def _termination(self, execution: WorkflowExecution) -> tuple[str, str]:
        response = await self._client.workflow_service.get_workflow_execution_history_reverse(
            GetWorkflowExecutionHistoryReverseRequest(
                namespace=self._client.namespace,
                execution=ExecutionRef(workflow_id=execution.id, run_id=execution.run_id),
                maximum_page_size=1,
            )
        )
        for event in response.history.events:
            if event.event_type == HistoryEventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
                attributes = event.workflow_execution_terminated_event_attributes
                return attributes.reason, attributes.identity
        return "", ""


async def _memo(execution: WorkflowExecution) -> dict[str, Any]:
    try:
        return dict(await execution.memo())
    except Exception:
        return {}


def _duration(value: Any) -> timedelta | None:
    seconds = value.seconds + value.nanos / 1e9
    return timedelta(seconds=seconds) if seconds > 0 else None
