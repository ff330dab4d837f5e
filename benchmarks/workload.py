"""What producers run: decorated tasks inside workflows, flat out or paced.

Every configuration runs the same code; only the span processor behind the global tracer
provider differs. The "attrs" variant sets five attributes and adds one ``progress`` span
event per task (the bare baseline builds the same dictionaries).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Generator

from opentelemetry import trace
from opentelemetry.util.types import AttributeValue

from otel_stigmer import conventions as conv
from otel_stigmer import task, workflow

__all__ = [
    "bare",
    "bare_attrs",
    "drive",
    "drive_threads",
    "execution",
    "probe",
    "starts",
    "step",
    "step_attrs",
    "timed_loop",
    "timed_workflow",
]

#: Span start times (monotonic ns) of probed tasks, by span id (16 hex digits).
starts: dict[str, int] = {}


def _attributes(i: int) -> dict[str, AttributeValue]:
    return {
        "app.item": i,
        "app.kind": "bench",
        "app.bytes": 1024,
        "app.cached": False,
        "app.ratio": 0.5,
    }


def bare(i: int) -> None:
    """The undecorated task body."""


def bare_attrs(i: int) -> None:
    """The undecorated task body building the dictionaries ``step_attrs`` sends."""
    _attributes(i)
    _ = {conv.PROGRESS: i % 100}


@task(name="step")
def step(i: int) -> None:
    """A task that does nothing."""


@task(name="step-attrs")
def step_attrs(i: int) -> None:
    """A task that sets five attributes and reports progress with one span event."""
    span = trace.get_current_span()
    span.set_attributes(_attributes(i))
    span.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: i % 100})


def timed_loop(fn: Callable[[int], None], calls: int) -> tuple[int, int]:
    """Call ``fn`` ``calls`` times; return (wall ns, calling-thread CPU ns)."""
    wall = time.perf_counter_ns()
    cpu = time.thread_time_ns()
    for i in range(calls):
        fn(i)
    return time.perf_counter_ns() - wall, time.thread_time_ns() - cpu


@workflow(name="bench-hotpath")
def timed_workflow(fn: Callable[[int], None], calls: int, execution_id: str) -> tuple[int, int]:
    """:func:`timed_loop` inside one workflow span (excluded from the timing)."""
    return timed_loop(fn, calls)


@task(name="probe")
def probe(t0: int) -> None:
    """A task that notes its span id with the time the caller was about to start it."""
    if t0:
        span_id = trace.get_current_span().get_span_context().span_id
        starts[format(span_id, "016x")] = t0


@workflow(name="bench-execution")
def execution(execution_id: str, calls: int) -> Generator[None, int, None]:
    """One workflow run: each value sent in runs one :func:`probe` task with it."""
    for _ in range(calls):
        t0 = yield
        probe(t0)


def drive(
    executions: int, calls: int, *, prefix: str, calls_per_s: float = 0.0, record: bool = False
) -> None:
    """Run ``calls`` tasks spread round-robin over ``executions`` concurrent workflow runs.

    Args:
        executions: Workflow runs open at the same time (each a generator workflow).
        calls: Tasks in total.
        prefix: Execution id prefix (ids are ``prefix-k``).
        calls_per_s: Pace; 0 runs flat out.
        record: Note each task's start time in :data:`starts`.
    """
    executions = max(1, min(executions, calls))
    runs = []
    for k in range(executions):
        share = calls // executions + (1 if k < calls % executions else 0)
        run = execution(execution_id=f"{prefix}-{k}", calls=share)
        next(run)
        runs.append(run)
    period_ns = int(1e9 / calls_per_s) if calls_per_s else 0
    begin = time.monotonic_ns()
    for i in range(calls):
        if period_ns:
            # Sleeping releases the GIL to the pipeline's thread; a late call goes at once.
            wait = begin + i * period_ns - time.monotonic_ns()
            if wait > 0:
                time.sleep(wait / 1e9)
        t0 = time.monotonic_ns() if record else 0
        with contextlib.suppress(StopIteration):
            runs[i % executions].send(t0)


def drive_threads(
    threads: int,
    executions: int,
    calls: int,
    *,
    prefix: str,
    events_per_s: float = 0.0,
    record: bool = False,
) -> None:
    """:func:`drive` split over ``threads`` producer threads, started together."""
    if threads <= 1:
        drive(executions, calls, prefix=prefix, calls_per_s=events_per_s / 2, record=record)
        return
    barrier = threading.Barrier(threads)

    def produce(index: int) -> None:
        barrier.wait()
        drive(
            max(1, executions // threads),
            calls // threads + (1 if index < calls % threads else 0),
            prefix=f"{prefix}-t{index}",
            calls_per_s=events_per_s / 2 / threads,
            record=record,
        )

    workers = [threading.Thread(target=produce, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
