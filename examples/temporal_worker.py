"""A Temporal worker and starter that report Stigmer progress with one interceptor.

Run a dev server, the reference receiver and this example (three terminals)::

    temporal server start-dev
    STIGMER_SERVICE_API_KEY=dev-key otel-stigmer serve --port 9090
    export STIGMER_SERVICE_ENDPOINT=localhost:9090 STIGMER_SERVICE_API_KEY=dev-key \\
        STIGMER_SERVICE_USE_TLS=false
    python examples/temporal_worker.py            # worker + one run, then exit

or ``python examples/temporal_worker.py worker`` in one terminal and
``python examples/temporal_worker.py start`` in another. The ``transform`` activity
fails its first attempt, so the run reports a ``task_retry`` before it completes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

import otel_stigmer
from otel_stigmer.contrib.temporal import ClosedRunWatcher, StigmerInterceptor

TASK_QUEUE = "stigmer-example"


@activity.defn
async def fetch(source: str) -> str:
    """Pretend to download ``source``."""
    return f"rows from {source}"


@activity.defn
async def transform(rows: str) -> str:
    """Fail the first attempt (Temporal retries it), then succeed."""
    if activity.info().attempt == 1:
        raise ConnectionError("upstream busy, try again")
    return rows.upper()


@activity.defn
async def store(rows: str) -> int:
    """Pretend to write the rows."""
    return len(rows)


@workflow.defn
class IngestWorkflow:
    """Fetch, transform and store one source."""

    @workflow.run
    async def run(self, source: str) -> int:
        """Run the three steps; each activity is one Stigmer task."""
        timeout = timedelta(seconds=30)
        retry = RetryPolicy(initial_interval=timedelta(milliseconds=200))
        rows = await workflow.execute_activity(
            fetch, source, start_to_close_timeout=timeout, retry_policy=retry
        )
        rows = await workflow.execute_activity(
            transform, rows, start_to_close_timeout=timeout, retry_policy=retry
        )
        return await workflow.execute_activity(
            store, rows, start_to_close_timeout=timeout, retry_policy=retry
        )


async def start(client: Client) -> None:
    """Start one run and wait for it."""
    workflow_id = f"ingest-{uuid.uuid4().hex[:8]}"
    result = await client.execute_workflow(
        IngestWorkflow.run, "s3://bucket/orders.csv", id=workflow_id, task_queue=TASK_QUEUE
    )
    print(f"{workflow_id}: stored {result} characters; see its events on the receiver")


async def main(argv: list[str] | None = None) -> None:
    """Parse the mode, connect, and run the worker, the starter or both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("mode", nargs="?", choices=["run", "worker", "start"], default="run")
    parser.add_argument("--address", default="localhost:7233", help="Temporal frontend")
    args = parser.parse_args(argv)

    # Reads STIGMER_SERVICE_*; a misconfiguration stops here with a message naming the fix.
    pipeline = otel_stigmer.configure()
    # One interceptor on the client; workers built from this client inherit it.
    interceptor = StigmerInterceptor()
    client = await Client.connect(args.address, interceptors=[interceptor])
    try:
        if args.mode == "start":
            await start(client)
            return
        worker = Worker(
            client,
            task_queue=TASK_QUEUE,
            workflows=[IngestWorkflow],
            activities=[fetch, transform, store],
        )
        async with worker:
            if args.mode == "run":
                await start(client)
            else:
                print(f"worker polling {TASK_QUEUE!r} on {args.address}; Ctrl-C to stop")
                # Reports runs that are terminated or time out (no workflow code runs then).
                await ClosedRunWatcher(client, interceptor).run()
    finally:
        pipeline.shutdown(10_000)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    # Events are delivered by now (the pipeline was shut down). Skip interpreter teardown:
    # temporalio's core threads can abort it ("PyGILState_Release", sdk-python issue 300).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
