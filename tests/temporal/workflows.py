"""Workflows and activities the Temporal integration tests run (imported by the sandbox)."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.workflow import ActivityCancellationType

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
async def hang_step(step: int) -> int:
    """Heartbeat until cancelled."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(0.1)


LOCAL_ACTIVITIES = [ok_step, flaky_step, fatal_step, hang_step]


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
            await workflow.execute_activity(
                name,
                index,
                task_queue=REMOTE_TASK_QUEUE if name == "remote_step" else None,
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=timedelta(seconds=1) if name == "hang_step" else None,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                retry_policy=_RETRY,
            )
