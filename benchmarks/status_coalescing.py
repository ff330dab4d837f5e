"""``python -m benchmarks.status_coalescing``: how many ``updateStatus`` calls coalescing saves.

Concurrent executions report through both protocols at once into one reference receiver
that fails a seeded share of calls with UNAVAILABLE: the progress pipeline gives the event
stream, the status pipeline the calls. The same workload runs with the status sink as
shipped (coalescing) and with a baseline that sends one call per event (a pipeline batch
of one event: what a runner calling ``updateStatus`` on every change does), side by side.
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode, Tracer

from otel_stigmer import StigmerConfig
from otel_stigmer import conventions as conv
from otel_stigmer.delivery import Sender
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.server.faults import Fault, FaultInjector
from otel_stigmer.status import StatusSink
from otel_stigmer.testing import StigmerTestServer

__all__ = [
    "FAST",
    "RandomFaults",
    "WorkloadRun",
    "main",
    "run_workflow",
    "run_workload",
]

#: Short backoff, so that a 30 % failure rate costs tenths of seconds.
FAST = RetryPolicy(initial_backoff=0.05, max_backoff=0.5)
TASKS = 6
KEY = "bench-status-key"


class RandomFaults(FaultInjector):
    """Fails a seeded random share of calls with UNAVAILABLE, on top of the usual faults."""

    def __init__(self, ratio: float, seed: int) -> None:
        super().__init__()
        self._ratio = ratio
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.injected = 0

    def next_fault(self) -> Fault | None:
        """Answer the configured faults first, then fail ``ratio`` of the calls."""
        fault = super().next_fault()
        with self._rng_lock:
            if fault is None and self._rng.random() < self._ratio:
                self.injected += 1
                return Fault(grpc.StatusCode.UNAVAILABLE, "injected random fault")
        return fault


def run_workflow(tracer: Tracer, execution_id: str, tasks: int = TASKS, pace: float = 0.0) -> None:
    """One workflow: each task reports 50 %; task 2 fails once and is retried; task 4 fails.

    Each task attempt works ``pace`` seconds (simulated work).
    """
    attributes = {conv.WORKFLOW_EXECUTION_ID: execution_id, conv.WORKFLOW_NAME: "orders"}
    with tracer.start_as_current_span("orders", attributes=attributes):
        for number in range(tasks):
            name = f"t{number}"
            attempts = 2 if number == 2 else 1
            for attempt in range(1, attempts + 1):
                task_attributes: dict[str, str | int] = {
                    conv.TASK_NAME: name,
                    conv.TASK_ATTEMPT: attempt,
                    conv.TASK_INSTANCE_ID: f"{execution_id}/{name}",
                }
                with tracer.start_as_current_span(name, attributes=task_attributes) as span:
                    span.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: 50})
                    if pace:
                        time.sleep(pace)
                    if attempt < attempts:
                        span.set_attribute(conv.STATUS, conv.RETRYING)
                        span.set_attribute(conv.ERROR_CODE, "TIMEOUT")
                        span.set_status(Status(StatusCode.ERROR, f"{name} timed out"))
                    elif number == 4:
                        span.set_attribute(conv.ERROR_CODE, "QUOTA")
                        span.set_status(Status(StatusCode.ERROR, f"{name} over quota"))


@dataclass
class WorkloadRun:
    """What one run of the workload produced."""

    execution_ids: list[str]
    events: dict[str, int]
    calls: dict[str, int]
    stored_updates: dict[str, int]
    injected_faults: int
    seconds: float
    open_executions: int


def run_workload(
    server: StigmerTestServer,
    *,
    prefix: str,
    executions: int = 20,
    max_batch_size: int = 500,
    pace: float = 0.0,
) -> WorkloadRun:
    """Run ``executions`` workflows concurrently through both protocols; wait for delivery.

    Args:
        server: The receiver (its fault injector decides the failures).
        prefix: Execution id prefix, unique per run on one receiver.
        executions: Workflows run at once, one thread each.
        max_batch_size: Events per send of the status pipeline (1 = one call per event).
        pace: Seconds each task attempt works.
    """
    base = StigmerConfig(server.endpoint, api_key=server.api_key, use_tls=False, timeout=5)
    status_config = replace(base, protocol="status", max_batch_size=max_batch_size)
    provider = TracerProvider()
    progress = StigmerSpanProcessor(config=base, retry_policy=FAST)
    status = StigmerSpanProcessor(config=status_config, retry_policy=FAST)
    provider.add_span_processor(progress)
    provider.add_span_processor(status)
    tracer = provider.get_tracer("bench")
    ids = [f"{prefix}-{n}" for n in range(executions)]
    start = threading.Barrier(executions)

    def one(execution_id: str) -> None:
        start.wait()
        run_workflow(tracer, execution_id, pace=pace)

    began = time.monotonic()
    threads = [threading.Thread(target=one, args=(eid,)) for eid in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    delivered = progress.force_flush(120_000) and status.force_flush(120_000)
    seconds = time.monotonic() - began
    assert isinstance(status.sender, Sender)
    sink = _status_sink(status.sender)
    open_executions = sink.stats().open_executions
    provider.shutdown()
    if not delivered:
        raise RuntimeError("the workload was not delivered within 120 s")
    store = server.status_store
    return WorkloadRun(
        execution_ids=ids,
        events={eid: len(server.events(eid)) for eid in ids},
        calls={eid: server.server.status_calls[eid] for eid in ids},
        stored_updates={eid: len(store.updates(eid)) for eid in ids},
        injected_faults=getattr(server.faults, "injected", 0),
        seconds=seconds,
        open_executions=open_executions,
    )


def _status_sink(sender: Sender) -> StatusSink:
    sink = sender._sink
    if not isinstance(sink, StatusSink):
        raise TypeError(f"expected the status sink, got {sink!r}")
    return sink


def _row(label: str, run: WorkloadRun) -> str:
    events = sum(run.events.values())
    calls = sum(run.calls.values())
    per_execution = [run.calls[eid] / run.events[eid] for eid in run.execution_ids]
    count = len(run.execution_ids)
    stored = sum(run.stored_updates.values())
    return (
        f"| {label} | {events / count:.1f} | {calls / count:.1f}"
        f" | {statistics.median(per_execution):.2f} ({min(per_execution):.2f}-"
        f"{max(per_execution):.2f}) | {stored / count:.1f}"
        f" | {run.injected_faults} | {run.seconds:.2f} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print a Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.status_coalescing")
    parser.add_argument("--executions", type=int, default=20)
    parser.add_argument("--fault-ratio", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--paces", default="0,0.05", help="seconds each task works, comma-separated runs"
    )
    args = parser.parse_args(argv)
    # One warning per injected fault would bury the table.
    library_log = logging.getLogger("otel_stigmer")
    level = library_log.level
    library_log.setLevel(logging.ERROR)
    try:
        _compare(args)
    finally:
        library_log.setLevel(level)
    return 0


def _compare(args: argparse.Namespace) -> None:
    print(
        f"{args.executions} concurrent executions, {TASKS} task calls each (one retried, one"
        f" failing), {args.fault_ratio:.0%} of calls UNAVAILABLE (seed {args.seed})\n"
    )
    print(
        "| status sink | events / execution | calls / execution (failed included) |"
        " calls / events per execution, median (min-max) | stored updates / execution |"
        " injected faults | seconds |"
    )
    print("|---|---|---|---|---|---|---|")
    ratios = []
    for pace in (float(text) for text in args.paces.split(",")):
        runs = []
        for label, batch in (("coalescing (as shipped)", 500), ("baseline: one call per event", 1)):
            server = StigmerTestServer(api_key=KEY)
            server.server.faults = RandomFaults(args.fault_ratio, seed=args.seed)
            with server:
                run = run_workload(
                    server,
                    prefix="bench",
                    executions=args.executions,
                    max_batch_size=batch,
                    pace=pace,
                )
            runs.append(run)
            print(_row(f"{label}, tasks work {pace * 1000:g} ms", run), flush=True)
        shipped, baseline = runs
        ratios.append((pace, sum(shipped.calls.values()) / max(1, sum(baseline.calls.values()))))
    print()
    for pace, ratio in ratios:
        print(f"tasks working {pace * 1000:g} ms: calls with coalescing = {ratio:.2f}x of baseline")


if __name__ == "__main__":
    sys.exit(main())
