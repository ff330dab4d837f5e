"""``python -m benchmarks.ordering [--quick]``: the price of order on a unary-only receiver.

Side by side in one process, against a receiver shaped like the real Stigmer Service
(``report_progress`` only, fields 1-11; :mod:`benchmarks.upstream`):

1. **Unary throughput**: the pipeline as shipped (one call in flight per execution,
   pipelined across executions) against the earlier unary path (up to 32 calls in flight
   whatever their execution), on a healthy receiver and on one answering 30 % of calls
   UNAVAILABLE and losing 5 % of answers. Reported: events/s stored, inversions (an event
   stored after a later one of its execution) and re-sends.
2. **Live progress**: tasks that add progress at 10 %, 50 % and 90 % over 3 s; the time
   from ``add_event`` to the event being stored, through the ordered unary path.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import TracerProvider

from benchmarks.upstream import Arrival, UpstreamReceiver
from otel_stigmer import StigmerConfig, StigmerSpanProcessor
from otel_stigmer import conventions as conv
from otel_stigmer.client import CallbackClient
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.sinks import EventSink, GrpcSink, PartialDeliveryError, Refused

KEY = "benchmark-ordering-key"
FAST = RetryPolicy(initial_backoff=0.01, max_backoff=0.1)


class PipelinedUnarySink:
    """The earlier unary path: up to 32 calls in flight, whatever their execution."""

    def __init__(self, config: StigmerConfig) -> None:
        self._client = CallbackClient(config)

    def send(self, events: Sequence[WorkflowProgressEvent]) -> list[Refused]:
        """Send pipelined unary calls; raise with the delivered ids if any failed."""
        failures = self._client.report_progress_many(events, max_in_flight=32)
        failed = next((f for f in failures if f is not None), None)
        if failed is not None:
            delivered = frozenset(
                e.event_id for e, f in zip(events, failures, strict=True) if f is None
            )
            raise PartialDeliveryError(failed, delivered)
        return []

    def close(self) -> None:
        """Close the channel."""
        self._client.close()


def _execution(provider: TracerProvider, execution_id: str, tasks: int) -> None:
    tracer = provider.get_tracer("bench")
    with tracer.start_as_current_span(
        "wf", attributes={conv.WORKFLOW_EXECUTION_ID: execution_id}
    ) as workflow:
        for number in range(tasks):
            name = f"t{number}"
            with tracer.start_as_current_span(name, attributes={conv.TASK_NAME: name}) as span:
                span.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: 50})
            workflow.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: number % 100})


def _inversions(arrivals: Sequence[Arrival]) -> tuple[int, int, int]:
    """Inversions, distinct events and re-sends, over all executions."""
    highest: dict[str, int] = {}
    inversions = 0
    distinct: set[tuple[str, int]] = set()
    for arrival in arrivals:
        top = highest.get(arrival.execution_id, 0)
        if arrival.sequence_number < top:
            inversions += 1
        highest[arrival.execution_id] = max(top, arrival.sequence_number)
        distinct.add((arrival.execution_id, arrival.sequence_number))
    return inversions, len(distinct), len(arrivals) - len(distinct)


def throughput_run(
    make_sink: Callable[[StigmerConfig], EventSink],
    executions: int,
    tasks: int,
    *,
    unavailable: float,
    lost: float,
) -> dict[str, float]:
    """Run ``executions`` concurrent executions through one pipeline; measure the receiver."""
    with UpstreamReceiver(KEY, unavailable=unavailable, lost=lost) as receiver:
        config = StigmerConfig.from_env(receiver.env)
        processor = StigmerSpanProcessor(make_sink(config), retry_policy=FAST)
        provider = TracerProvider()
        provider.add_span_processor(processor)
        started = time.perf_counter()
        threads = [
            threading.Thread(target=_execution, args=(provider, f"bench-{n}", tasks))
            for n in range(executions)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        flushed = processor.force_flush(300_000)
        elapsed = time.perf_counter() - started
        inversions, distinct, resent = _inversions(list(receiver.arrivals))
        provider.shutdown()
    expected = executions * (2 + 4 * tasks)
    return {
        "events_per_s": distinct / elapsed,
        "inversions": inversions,
        "lost": expected - distinct if flushed else expected,
        "resent": resent,
    }


def liveness_run(tasks: int, seconds: float) -> list[float]:
    """Milliseconds from ``add_event`` to stored, for progress spread over ``seconds``."""
    with UpstreamReceiver(KEY) as receiver:
        processor = StigmerSpanProcessor(config=StigmerConfig.from_env(receiver.env))
        provider = TracerProvider()
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("bench")
        added: dict[tuple[str, int], int] = {}
        with tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "live"}):
            for number in range(tasks):
                name = f"t{number}"
                with tracer.start_as_current_span(name, attributes={conv.TASK_NAME: name}) as span:
                    for percent in (10, 50, 90):
                        time.sleep(seconds / 3)  # the task's own work between reports
                        added[(name, percent)] = time.time_ns()
                        span.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: percent})
        processor.force_flush(30_000)
        arrivals = list(receiver.arrivals)
        provider.shutdown()
    return [
        (a.received_ns - added[(a.task_name, a.task_progress)]) / 1e6
        for a in arrivals
        if a.event_type == "task_progress"
    ]


def main(argv: list[str] | None = None) -> int:
    """Run both sections and print one table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ordering")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    args = parser.parse_args(argv)
    reps, executions, tasks = (1, 20, 5) if args.quick else (3, 20, 50)
    live_tasks, live_seconds = (1, 0.3) if args.quick else (5, 3.0)
    print("| unary receiver | path | events/s stored | ratio | inversions | lost | re-sends |")
    print("|---|---|---|---|---|---|---|")
    for label, unavailable, lost in (
        ("healthy", 0.0, 0.0),
        ("30% UNAVAILABLE, 5% lost", 0.3, 0.05),
    ):
        results: dict[str, list[dict[str, float]]] = {"ordered": [], "pipelined": []}
        for _ in range(reps):
            for name, make in (("ordered", GrpcSink), ("pipelined", PipelinedUnarySink)):
                results[name].append(
                    throughput_run(make, executions, tasks, unavailable=unavailable, lost=lost)
                )
        base = statistics.median(r["events_per_s"] for r in results["pipelined"])
        for name in ("pipelined", "ordered"):
            runs = results[name]
            rate = statistics.median(r["events_per_s"] for r in runs)
            print(
                f"| {label} | {name} | {rate:,.0f} | {rate / base:.2f}x "
                f"| {sum(r['inversions'] for r in runs):,.0f} "
                f"| {sum(r['lost'] for r in runs):,.0f} "
                f"| {sum(r['resent'] for r in runs):,.0f} |"
            )
    latencies = sorted(liveness_run(live_tasks, live_seconds))
    print()
    print(
        f"live progress ({len(latencies)} events, {live_tasks} tasks at 10/50/90 % over "
        f"{live_seconds:g} s): add_event -> stored p50 {statistics.median(latencies):.1f} ms, "
        f"max {latencies[-1]:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
