"""Tasks inherit the workflow's execution id across asyncio tasks, threads and processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from opentelemetry import baggage, trace

from otel_stigmer import conventions as conv
from otel_stigmer.decorators import task, workflow
from otel_stigmer.propagation import (
    ContextExecutor,
    attach_environ,
    attach_headers,
    inject_environ,
    inject_headers,
    run_in_context,
)
from otel_stigmer.testing._capture import EventList, capture_progress

ROOT = Path(__file__).resolve().parents[1]


@task
def square(n: int) -> int:
    return n * n


@task
async def async_square(n: int) -> int:
    await asyncio.sleep(0)
    return n * n


def task_events(events: EventList, execution_id: str) -> list[tuple[str, str]]:
    return sorted(
        (e.event_type, e.task_name) for e in events.for_execution(execution_id) if e.task_name
    )


def test_gather_and_create_task_inherit() -> None:
    """Tasks run through asyncio.gather and create_task belong to the workflow."""

    @workflow(execution_id="wf-async")
    async def fan_out() -> list[int]:
        extra = asyncio.create_task(async_square(4))
        results = await asyncio.gather(async_square(2), async_square(3))
        return [*results, await extra]

    with capture_progress() as events:
        assert asyncio.run(fan_out()) == [4, 9, 16]
    assert task_events(events, "wf-async") == sorted(
        [("task_started", "async_square"), ("task_completed", "async_square")] * 3
    )
    assert events.executions() == ["wf-async"]


def test_to_thread_inherits() -> None:
    """asyncio.to_thread copies the context, so its task belongs to the workflow."""

    @workflow(execution_id="wf-to-thread")
    async def wf() -> int:
        return await asyncio.to_thread(square, 5)

    with capture_progress() as events:
        assert asyncio.run(wf()) == 25
    assert task_events(events, "wf-to-thread") == [
        ("task_completed", "square"),
        ("task_started", "square"),
    ]


def test_context_executor_inherits_where_a_plain_pool_does_not() -> None:
    """ContextExecutor carries the workflow into pool threads; a plain pool loses it."""

    @workflow(execution_id="wf-pool")
    def wf() -> tuple[list[int], list[int]]:
        with ContextExecutor(max_workers=2) as pool:
            carried = list(pool.map(square, [1, 2, 3]))
            carried.append(pool.submit(square, 4).result())
        with ThreadPoolExecutor(max_workers=1) as plain:
            lost = [plain.submit(square, 5).result()]
        return carried, lost

    with capture_progress() as events:
        assert wf() == ([1, 4, 9, 16], [25])
    assert task_events(events, "wf-pool") == sorted(
        [("task_started", "square"), ("task_completed", "square")] * 4
    )
    assert events.executions() == ["wf-pool"]


def test_run_in_context_binds_a_thread_target() -> None:
    """run_in_context binds a callable to the workflow's context for a plain thread."""
    results: list[int] = []

    @workflow(execution_id="wf-thread")
    def wf() -> None:
        bound = run_in_context(lambda: results.append(square(6)))
        threads = [threading.Thread(target=bound) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

    with capture_progress() as events:
        wf()
    assert results == [36, 36]
    assert task_events(events, "wf-thread") == sorted(
        [("task_started", "square"), ("task_completed", "square")] * 2
    )


def test_headers_carry_trace_and_workflow_identity() -> None:
    """inject_headers carries traceparent and baggage; attach_headers makes tasks join."""

    @workflow(name="remote", execution_id="wf-remote")
    def wf() -> dict[str, str]:
        return inject_headers()

    with capture_progress() as events:
        headers = wf()
        assert "traceparent" in headers
        assert "wf-remote" in headers["baggage"]
        # The worker side: a fresh context, as in another process.
        with attach_headers(headers):
            assert baggage.get_baggage(conv.BAGGAGE_EXECUTION_ID) == "wf-remote"
            square(7)
        assert trace.get_current_span() is trace.INVALID_SPAN
    task_started = events.for_task("square")[0]
    workflow_started = events[0]
    assert (task_started.workflow_execution_id, task_started.workflow_name) == (
        "wf-remote",
        "remote",
    )
    assert task_started.trace_id == workflow_started.trace_id
    assert task_started.parent_span_id == workflow_started.span_id


CHILD = textwrap.dedent(
    """
    import json
    from otel_stigmer.decorators import task
    from otel_stigmer.propagation import attach_environ
    from otel_stigmer.testing._capture import capture_progress

    @task
    def child_step():
        return None

    with capture_progress() as events, attach_environ():
        child_step()
    print(json.dumps([[e.event_type, e.workflow_execution_id, e.workflow_name, e.trace_id]
                      for e in events]))
    """
)


def test_subprocess_inherits_through_the_environment() -> None:
    """A task in a subprocess started with inject_environ() joins the parent's execution."""

    @workflow(name="parent", execution_id="wf-subprocess")
    def wf() -> str:
        env = inject_environ()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        done = subprocess.run(
            [sys.executable, "-c", CHILD],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout

    with capture_progress() as events:
        output = wf()
    trace_id = events[0].trace_id
    assert json.loads(output) == [
        ["task_started", "wf-subprocess", "parent", trace_id],
        ["task_completed", "wf-subprocess", "parent", trace_id],
    ]


def test_inject_environ_uses_upper_case_keys() -> None:
    """inject_environ adds TRACEPARENT / BAGGAGE; attach_environ reads them back."""

    @workflow(execution_id="wf-env")
    def wf() -> dict[str, str]:
        return inject_environ({"KEEP": "1"})

    env = wf()
    assert env["KEEP"] == "1"
    assert {"TRACEPARENT", "BAGGAGE"} <= set(env)
    with attach_environ(env):
        assert baggage.get_baggage(conv.BAGGAGE_EXECUTION_ID) == "wf-env"
    assert baggage.get_baggage(conv.BAGGAGE_EXECUTION_ID) is None
