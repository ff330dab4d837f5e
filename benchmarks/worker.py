"""One measurement in a fresh process: ``python -m benchmarks.worker '<json>'``.

A fresh process per measurement gives every pipeline its own global tracer provider,
threads, heap and garbage collector. The last line printed is the JSON result.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from benchmarks import workload
from benchmarks.pipelines import STIGMER_PIPELINES, install
from benchmarks.receivers import API_KEY
from otel_stigmer import (
    CallbackClient,
    CallbackError,
    EventType,
    Status,
    StigmerConfig,
    new_task_progress_event,
)

__all__ = ["main", "run"]

Params = dict[str, Any]
Result = dict[str, Any]

_WARMUP_CALLS = 2_000
# The standard pipeline's default schedule delay, plus room for a loaded machine.
_OTLP_NATURAL_DELIVERY_S = 5.0 + 15.0
_SETTLE_TIMEOUT_S = 60.0


def _hotpath(p: Params) -> Result:
    calls = int(p["calls"])
    attrs = bool(p["attrs"])
    if p["pipeline"] == "bare":
        fn = workload.bare_attrs if attrs else workload.bare
        workload.timed_loop(fn, _WARMUP_CALLS)
        wall, cpu = workload.timed_loop(fn, calls)
        return {"wall_ns": wall, "cpu_ns": cpu, "calls": calls, "dropped": 0, "produced": 0}
    installed = install(p["pipeline"], p.get("endpoint", ""), API_KEY)
    fn = workload.step_attrs if attrs else workload.step
    workload.timed_workflow(fn, _WARMUP_CALLS, execution_id="warmup")
    installed.flush()
    child_cpu = installed.child_cpu_ns()
    start_ns = time.monotonic_ns()
    wall, cpu = workload.timed_workflow(fn, calls, execution_id="hotpath")
    flushed = installed.flush()
    flushed_ns = time.monotonic_ns()
    child_cpu = installed.child_cpu_ns() - child_cpu
    produced = _WARMUP_CALLS + calls + 2  # spans, with the two workflow spans
    result = {
        "wall_ns": wall,
        "cpu_ns": cpu,
        # The loop plus the drain: until flush returned (the receiver notes the last store).
        "start_ns": start_ns,
        "flushed_ns": flushed_ns,
        "calls": calls,
        "flushed": flushed,
        "produced": produced,
        "dropped": installed.dropped(produced),
        # The sender process's CPU over the loop and the drain, and its memory.
        "child_cpu_ns": child_cpu,
        "child_rss": installed.child_rss_bytes(),
    }
    installed.shutdown()
    return result


def _produced(pipeline: str, calls: int, executions: int) -> int:
    """Items a run sends: Stigmer events (start + end of each span) or OTLP spans."""
    spans = calls + executions
    return 2 * spans if pipeline in STIGMER_PIPELINES else spans


def _burst(p: Params) -> Result:
    calls = int(p["calls"])
    threads = int(p.get("threads", 1))
    executions = max(threads, min(int(p.get("executions", 1)), calls))
    if p["pipeline"] == "naive":
        return _naive_burst(p["endpoint"], calls)
    if p["pipeline"] == "raw":
        return _raw_burst(p["endpoint"], calls)
    installed = install(p["pipeline"], p["endpoint"], API_KEY)
    installed.start_sender()  # the sender process, if any, is up before the clock starts
    child_cpu = installed.child_cpu_ns()
    cpu = time.process_time_ns()
    start = time.monotonic_ns()
    workload.drive_threads(threads, executions, calls, prefix="burst")
    produced_end = time.monotonic_ns()
    flushed = installed.flush()
    flush_end = time.monotonic_ns()
    child_cpu = installed.child_cpu_ns() - child_cpu
    produced = _produced(p["pipeline"], calls, executions)
    result = {
        "process_cpu_ns": time.process_time_ns() - cpu,
        "start_ns": start,
        "produce_end_ns": produced_end,
        "flush_end_ns": flush_end,
        "flushed": flushed,
        "produced": produced,
        "dropped": installed.dropped(produced),
        "child_cpu_ns": child_cpu,
        "child_rss": installed.child_rss_bytes(),
    }
    installed.shutdown()
    return result


def _naive_burst(endpoint: str, calls: int) -> Result:
    """The seed's pattern: the business thread reports each event with a blocking call."""
    client = CallbackClient(StigmerConfig(endpoint=endpoint, api_key=API_KEY, use_tls=False))
    failed = 0
    sequence = 0

    def report(event_type: EventType, status: Status) -> None:
        nonlocal failed, sequence
        sequence += 1
        event = new_task_progress_event("naive", event_type, "bench", "step", status, "", sequence)
        try:
            client.report_progress_with_retry(event, 3)
        except CallbackError:
            failed += 1  # logged by the client; the workflow goes on

    result = _sequential_burst(calls, report)
    client.close()
    result["dropped"] = failed
    return result


def _raw_burst(endpoint: str, calls: int) -> Result:
    """The floor of a unary client: sequential raw stub calls, no retry or error handling."""
    import grpc  # noqa: PLC0415

    from otel_stigmer._proto.ai.stigmer.workflow.runner.v1 import (  # noqa: PLC0415
        progress_pb2_grpc,
    )

    channel = grpc.insecure_channel(endpoint)
    stub = progress_pb2_grpc.WorkflowRunnerCommandControllerStub(channel)
    metadata = (("authorization", f"Bearer {API_KEY}"),)
    sequence = 0

    def report(event_type: EventType, status: Status) -> None:
        nonlocal sequence
        sequence += 1
        event = new_task_progress_event("raw", event_type, "bench", "step", status, "", sequence)
        stub.report_progress(event, metadata=metadata, timeout=10.0)

    result = _sequential_burst(calls, report)
    channel.close()
    return result


def _sequential_burst(calls: int, report: Callable[[EventType, Status], None]) -> Result:
    """Time ``calls`` task calls reported one event at a time by ``report``, in this thread."""
    cpu = time.process_time_ns()
    start = time.monotonic_ns()
    for i in range(calls):
        report(EventType.TASK_STARTED, Status.RUNNING)
        workload.bare(i)
        report(EventType.TASK_COMPLETED, Status.COMPLETED)
    end = time.monotonic_ns()
    return {
        "process_cpu_ns": time.process_time_ns() - cpu,
        "start_ns": start,
        "produce_end_ns": end,
        "flush_end_ns": end,
        "flushed": True,
        "produced": 2 * calls,
        "dropped": 0,
    }


def _liveness(p: Params) -> Result:
    pipeline = p["pipeline"]
    threads = int(p.get("threads", 1))
    rate = float(p["events_per_s"])
    calls = max(threads, int(rate / 2 * float(p["duration_s"])))
    executions = max(threads, min(int(p.get("executions", 1)), calls))
    installed = install(pipeline, p["endpoint"], API_KEY)
    installed.start_sender()  # a sender process starts before the clock, as a thread does
    start = time.monotonic_ns()
    workload.drive_threads(
        threads, executions, calls, prefix="live", events_per_s=rate, record=True
    )
    end = time.monotonic_ns()
    produced = _produced(pipeline, calls, executions)
    if installed.exporter is not None:
        # No force_flush: it would cut the schedule delay short and hide the latency.
        installed.exporter.wait_for(produced, _OTLP_NATURAL_DELIVERY_S)
    else:
        installed.flush()
    result = {
        "starts": workload.starts,
        "calls": calls,
        "achieved_events_per_s": 2 * calls / ((end - start) / 1e9),
        "produced": produced,
        "dropped": installed.dropped(produced),
    }
    installed.shutdown()
    return result


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.25)
    return True


def _closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _default_queue_bound() -> int:
    """The default ``max_queue_size`` of the configuration."""
    found = [f.default for f in dataclasses.fields(StigmerConfig) if f.name == "max_queue_size"]
    return int(cast(int, found[0])) if found else 0


def _memory(p: Params) -> Result:
    """RSS while the receiver is down: per queued event, and at the default bound."""
    chunk_calls = int(p["chunk_events"]) // 2
    chunks = int(p["chunks"])
    installed = install("stigmer", f"127.0.0.1:{_closed_port()}", API_KEY)
    stigmer = installed.stigmer
    assert stigmer is not None

    def settled(events: int) -> Callable[[], bool]:
        # Settled: every event is queued (input or outbox) or counted as dropped, and the
        # queue did not move for a while, so the sender thread is not mapping any more.
        last: list[int] = []

        def check() -> bool:
            stats = stigmer.stats()
            state = [stats.queue_depth, sum(stats.dropped.values())]
            stable = state == last and sum(state) >= events
            last[:] = state
            return stable

        return check

    produced = _produced("stigmer", 100, 1)
    workload.drive(1, 100, prefix="mem-warmup")
    _wait_until(settled(produced), _SETTLE_TIMEOUT_S)
    gc.collect()
    rss_start = _rss_bytes()
    depth_start = stigmer.stats().queue_depth
    samples = []
    for chunk in range(chunks):
        began = time.monotonic()
        workload.drive(1, chunk_calls, prefix=f"mem-{chunk}")
        produced_s = time.monotonic() - began
        produced += _produced("stigmer", chunk_calls, 1)
        ok = _wait_until(settled(produced), _SETTLE_TIMEOUT_S)
        gc.collect()
        stats = stigmer.stats()
        samples.append(
            {
                "produced": produced,
                "queue_depth": stats.queue_depth,
                "dropped": sum(stats.dropped.values()),
                "rss": _rss_bytes(),
                "produce_s": produced_s,
                "settle_s": time.monotonic() - began - produced_s,
                "settled": ok,
            }
        )
    result = {
        "rss_start": rss_start,
        "depth_start": depth_start,
        "samples": samples,
        "peak_rss": _peak_rss_bytes(),
        "max_queue_size": _default_queue_bound(),
    }
    # The events are undeliverable: do not wait for them at exit.
    stigmer.shutdown(0)
    return result


class _StuckSink:
    """A sink whose first send blocks until closed: later records wait in the input queue."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def send(self, events: Any) -> None:
        self.release.wait(600)

    def close(self) -> None:
        self.release.set()


def _span_memory(p: Params) -> Result:
    """RSS per record waiting in the Stigmer pipeline's input queue while its sender lags."""
    from otel_stigmer.processor import StigmerSpanProcessor  # noqa: PLC0415

    calls = int(p["calls"])
    provider = TracerProvider()
    sink = _StuckSink()
    processor = StigmerSpanProcessor(sink)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    fn = workload.step_attrs if p.get("attrs") else workload.step
    workload.timed_workflow(fn, 100, execution_id="warmup")  # the sender blocks on these
    gc.collect()
    before_rss, before_depth = _rss_bytes(), processor.stats().queue_depth
    workload.timed_workflow(fn, calls, execution_id="held")
    gc.collect()
    stats = processor.stats()
    result = {
        "spans": calls,
        "events": stats.queue_depth - before_depth,
        "dropped": sum(stats.dropped.values()),
        "rss_growth": _rss_bytes() - before_rss,
    }
    processor.shutdown(0)
    return result


def _pending_memory(p: Params) -> Result:
    """RSS per record waiting in the process sender's pending list (no child can start)."""
    calls = int(p["calls"])
    installed = install("process", f"127.0.0.1:{_closed_port()}", API_KEY)
    stigmer = installed.stigmer
    assert stigmer is not None
    real = sys.executable
    sys.executable = "/nonexistent/python"  # every start of the child fails: records wait
    fn = workload.step_attrs if p.get("attrs") else workload.step
    workload.timed_workflow(fn, 100, execution_id="warmup")
    gc.collect()
    before_rss, before_depth = _rss_bytes(), stigmer.stats().queue_depth
    workload.timed_workflow(fn, calls, execution_id="held")
    gc.collect()
    stats = stigmer.stats()
    result = {
        "spans": calls,
        "records": stats.queue_depth - before_depth,
        "events": calls * (3 if p.get("attrs") else 2),
        "dropped": sum(stats.dropped.values()),
        "rss_growth": _rss_bytes() - before_rss,
    }
    sys.executable = real
    stigmer.shutdown(0)
    return result


_SCENARIOS: dict[str, Callable[[Params], Result]] = {
    "hotpath": _hotpath,
    "burst": _burst,
    "liveness": _liveness,
    "memory": _memory,
    "span_memory": _span_memory,
    "pending_memory": _pending_memory,
}


def run(params: Params) -> Result:
    """Run the scenario named by ``params["scenario"]``."""
    return _SCENARIOS[params["scenario"]](params)


def main(argv: list[str] | None = None) -> int:
    """Run the scenario given as JSON in ``argv[0]``; print the JSON result last."""
    args = sys.argv[1:] if argv is None else argv
    result = run(json.loads(args[0]))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
