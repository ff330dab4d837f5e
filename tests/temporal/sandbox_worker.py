"""Run a sample-shaped workflow module many times in one worker process; print what grew.

Usage: ``python sandbox_worker.py <temporal-address> <runs>``. The workflow module calls
``otel_stigmer.configure()`` at module level, as Temporal's samples place setup code; the
sandbox re-imports it for every run. Prints one JSON line: the runs' results and the
growth of live tracer providers, exit hooks and threads from the first run to the last.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import json
import os
import sys
import threading
import uuid
from pathlib import Path

from temporalio.client import Client
from temporalio.worker import Worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporal.sandbox_workflows import PIPELINE, ModuleLevelConfigureWorkflow


def tracer_providers() -> int:
    """Live SDK tracer providers, including the sandbox's re-imported copies."""
    gc.collect()
    return sum(type(o).__name__ == "TracerProvider" for o in gc.get_objects())


async def main(address: str, runs: int) -> None:
    """Run the workflow ``runs + 1`` times and report the growth after the first."""
    client = await Client.connect(address)
    queue = f"sandbox-{uuid.uuid4().hex[:8]}"

    async def run_once() -> bool:
        return bool(
            await client.execute_workflow(
                ModuleLevelConfigureWorkflow.run,
                id=f"sandbox-{uuid.uuid4().hex}",
                task_queue=queue,
            )
        )

    async with Worker(
        client, task_queue=queue, workflows=[ModuleLevelConfigureWorkflow], max_cached_workflows=0
    ):
        results = [await run_once()]
        before = (tracer_providers(), atexit._ncallbacks(), threading.active_count())
        results += [await run_once() for _ in range(runs)]
        after = (tracer_providers(), atexit._ncallbacks(), threading.active_count())
    PIPELINE.shutdown(5_000)
    names = ("providers", "exit_hooks", "threads")
    growth = {name: a - b for name, a, b in zip(names, after, before, strict=True)}
    print(json.dumps({"results": results, "growth": growth}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    # Events are delivered by now (the pipeline was shut down). Skip interpreter teardown:
    # temporalio's core threads can abort it ("PyGILState_Release", sdk-python issue 300).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
