"""Workflows and activities the Temporal integration tests run (imported by the sandbox)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import timedelta
from typing import NoReturn

from opentelemetry import trace
from temporalio import activity, workflow
from temporalio.client import AsyncActivityCancelledError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from temporalio.exceptions import CancelledError

#: Task queue served only by the activity worker in a separate process.
REMOTE_TASK_QUEUE = "stigmer-remote-activities"

# Short intervals keep retries cheap; the dev server still adds about a second per retry.
_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=3)


@activity.defn
async def ok_step(step: int) -> int:
    """Succeed at once."""
    return os.getpid()


@activity.defn
async def flaky_step(step: int) -> int:
    """Fail the first attempt, succeed the second."""
    if activity.info().attempt == 1:
        raise RuntimeError("flaky failure")
    return os.getpid()


@activity.defn
async def fatal_step(step: int) -> int:
    """Fail with an error Temporal does not retry."""
    raise ApplicationError("bad input", type="InvalidInput", non_retryable=True)


@activity.defn
async def progress_step(step: int) -> int:
    """Report progress on the attempt's span, as a user's activity does."""
    for percent in (25, 75):
        trace.get_current_span().add_event("progress", {"stigmer.progress": percent})
        await asyncio.sleep(0.05)
    return os.getpid()


@activity.defn
async def hang_step(step: int) -> int:
    """Heartbeat until cancelled."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.1)


class Finished:
    """Attempts that returned (to wait for late ones); lives outside the sandbox."""

    lock = threading.Lock()
    attempts: dict[str, list[int]] = {}  # noqa: RUF012 - shared on purpose

    @classmethod
    def add(cls, key: str, attempt: int) -> None:
        """Record that an attempt of ``key`` returned."""
        with cls.lock:
            cls.attempts.setdefault(key, []).append(attempt)

    @classmethod
    def of(cls, key: str) -> list[int]:
        """The attempts of ``key`` that returned so far."""
        with cls.lock:
            return list(cls.attempts.get(key, []))


@activity.defn
async def compose_greeting(mode: str) -> str:
    """Complete asynchronously, like the async-completion sample: a client finishes it."""
    handle = activity.client().get_async_activity_handle(task_token=activity.info().task_token)

    async def finish() -> None:
        await asyncio.sleep(0.3)
        await handle.heartbeat()
        if mode == "cancel":
            # Heartbeat until the workflow asks to cancel, then confirm it, like a client.
            while True:
                try:
                    await handle.heartbeat()
                except AsyncActivityCancelledError:
                    await handle.report_cancellation()
                    return
                await asyncio.sleep(0.1)
        if mode == "fail":
            await handle.fail(ApplicationError("greeting refused", type="Refused"))
        else:
            await handle.complete("Hello, World!")

    _PENDING.add(asyncio.get_running_loop().create_task(finish()))
    activity.raise_complete_async()


_PENDING: set[asyncio.Task[None]] = set()


@activity.defn
async def late_step(beat: bool) -> str:
    """Outlive the start-to-close timeout (heartbeating if ``beat``); record the return."""
    key = activity.info().workflow_id or ""
    try:
        for _ in range(16):
            if beat:
                activity.heartbeat()
            await asyncio.sleep(0.1)
        return "late"
    finally:
        Finished.add(key, activity.info().attempt)


@activity.defn
def never_complete_activity() -> NoReturn:
    """Heartbeat until cancelled, like the cancellation sample (runs in a thread)."""
    try:
        while True:
            activity.heartbeat()
            time.sleep(0.1)
    except CancelledError:
        raise
    finally:
        Finished.add(activity.info().workflow_id or "", activity.info().attempt)


@activity.defn
def cleanup_activity() -> None:
    """The sample's cleanup step."""


LOCAL_ACTIVITIES = [
    ok_step,
    flaky_step,
    fatal_step,
    progress_step,
    hang_step,
    compose_greeting,
    late_step,
]


@workflow.defn
class StepsWorkflow:
    """Run one activity per plan entry, in order."""

    @workflow.run
    async def run(self, plan: list[str]) -> None:
        """Run the plan: entries name activities; ``remote_step`` runs on the remote queue.

        ``continue_as_new`` continues the rest of the plan in a new run;
        ``fail_first_task`` fails the first workflow task once, as a bug would.
        """
        # The first attempt of the first workflow task sees three history events.
        if "fail_first_task" in plan and workflow.info().get_current_history_length() <= 3:
            # Not a workflow failure: Temporal fails the task and retries it, without replay.
            raise RuntimeError("bug in the first workflow task")
        plan = [name for name in plan if name != "fail_first_task"]
        for index, name in enumerate(plan):
            if name == "continue_as_new":
                workflow.continue_as_new(plan[index + 1 :])
            if name == "wait_forever":
                await workflow.wait_condition(lambda: False)
            if name.startswith("local:"):
                await workflow.execute_local_activity(
                    name.removeprefix("local:"),
                    index,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=_RETRY,
                )
                continue
            await workflow.execute_activity(
                name,
                index,
                task_queue=REMOTE_TASK_QUEUE if name == "remote_step" else None,
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=timedelta(seconds=1) if name == "hang_step" else None,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                retry_policy=_RETRY,
            )


@workflow.defn
class GreetingWorkflow:
    """One activity completed asynchronously by a client (complete, fail or cancel)."""

    @workflow.run
    async def run(self, mode: str) -> str:
        """Return the greeting the client completed the activity with ("cancel": cancel it)."""
        handle = workflow.start_activity(
            compose_greeting,
            mode,
            start_to_close_timeout=timedelta(seconds=10),
            heartbeat_timeout=timedelta(seconds=5),
            retry_policy=RetryPolicy(maximum_attempts=1),
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        if mode == "cancel":
            await workflow.sleep(0.6)
            handle.cancel()
            try:
                await handle
            except ActivityError:
                return "cancelled"
        return await handle


@workflow.defn
class TimeoutWorkflow:
    """One activity that outlives its start-to-close timeout on both of its attempts."""

    @workflow.run
    async def run(self, beat: bool) -> str:
        """Fail with the activity's timeout."""
        return await workflow.execute_activity(
            late_step,
            beat,
            start_to_close_timeout=timedelta(seconds=1),
            heartbeat_timeout=timedelta(seconds=5) if beat else None,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=100), maximum_attempts=2
            ),
        )


@workflow.defn
class CancellationWorkflow:
    """The cancellation sample: a heartbeating activity, then a cleanup activity."""

    @workflow.run
    async def run(self) -> None:
        """Run until cancelled, then clean up."""
        try:
            await workflow.execute_activity(
                never_complete_activity,
                start_to_close_timeout=timedelta(seconds=1000),
                heartbeat_timeout=timedelta(seconds=2),
            )
        finally:
            await workflow.execute_activity(
                cleanup_activity, start_to_close_timeout=timedelta(seconds=5)
            )


@workflow.defn
class ParentWorkflow:
    """Run :class:`StepsWorkflow` as a child, like the child-workflow sample."""

    @workflow.run
    async def run(self, plan: list[str]) -> None:
        """Run the child to its end."""
        await workflow.execute_child_workflow(
            StepsWorkflow.run, plan, id=f"{workflow.info().workflow_id}-child"
        )


@workflow.defn
class FanOutWorkflow:
    """Run activities in parallel, like the parallel-activity sample."""

    @workflow.run
    async def run(self, plan: list[str]) -> None:
        """Run every plan entry at once."""
        await asyncio.gather(
            *(
                workflow.execute_activity(
                    name, index, start_to_close_timeout=timedelta(seconds=30), retry_policy=_RETRY
                )
                for index, name in enumerate(plan)
            )
        )


WORKFLOWS = [StepsWorkflow, GreetingWorkflow, TimeoutWorkflow, ParentWorkflow, FanOutWorkflow]
