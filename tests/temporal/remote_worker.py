"""An activity worker in its own process, configured from the environment like a runner.

Usage: ``python remote_worker.py <temporal-address>``; serves ``remote_step`` on
:data:`workflows.REMOTE_TASK_QUEUE` until its standard input closes.
"""

from __future__ import annotations

import asyncio
import os
import sys

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

import otel_stigmer
from otel_stigmer.contrib.temporal import StigmerInterceptor

REMOTE_TASK_QUEUE = "stigmer-remote-activities"


@activity.defn
async def remote_step(step: int) -> int:
    """Succeed at once, in this process."""
    return os.getpid()


async def main(address: str) -> None:
    """Serve the remote activity until standard input closes."""
    pipeline = otel_stigmer.configure()
    client = await Client.connect(address, interceptors=[StigmerInterceptor()])
    async with Worker(client, task_queue=REMOTE_TASK_QUEUE, activities=[remote_step]):
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    pipeline.shutdown(10_000)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
    # Events are delivered by now (the pipeline was shut down). Skip interpreter teardown:
    # temporalio's core threads can abort it ("PyGILState_Release", sdk-python issue 300).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
