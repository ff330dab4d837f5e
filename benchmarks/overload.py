"""The business thread's cost per span against a silent receiver, at full rate.

``python -m benchmarks.overload [--seconds 60] [--freeze]``

A receiver that accepts connections and never answers (a listening socket nobody reads);
one business thread ends task spans inside workflow spans as fast as it can for
``--seconds``; the pipeline runs with its defaults (queue bound 100 000 events and
64 MiB). Printed: spans ended, the per-span cost as the business thread sees it (p50,
p99, p99.9, max), the same maximum in the thread's CPU time (what the span itself cost,
without the time the process waited for a CPU on a busy machine), the process's RSS at
the end and its peak, the longest full garbage collection in wall and CPU time, how many
full collections ran, the objects the collector tracks at the end (thousands), and the
goal (p99 ≤ 1 ms, max ≤ 50 ms). Side by side, a no-op span processor on the same thread
is the baseline. With ``--freeze``, ``gc.freeze()`` runs after the pipeline is configured
(what an application can do after its imports): the objects of the interpreter, the SDK and
gRPC alive then are left out of every later collection, so what remains of a full
collection is what the run itself keeps tracked.
"""

from __future__ import annotations

import argparse
import gc
import resource
import socket
import time
from array import array

from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from otel_stigmer import StigmerConfig
from otel_stigmer import conventions as conv
from otel_stigmer.processor import StigmerSpanProcessor


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


class _GcPauses:
    """The longest garbage-collection pause of each generation while installed."""

    def __init__(self) -> None:
        self.longest = [0.0, 0.0, 0.0]
        self.longest_cpu = [0.0, 0.0, 0.0]
        self.runs = [0, 0, 0]
        self._started = 0.0
        self._started_cpu = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            self._started_cpu = time.thread_time()
        else:
            generation = info["generation"]
            self.runs[generation] += 1
            pause = time.perf_counter() - self._started
            pause_cpu = time.thread_time() - self._started_cpu
            self.longest[generation] = max(self.longest[generation], pause)
            self.longest_cpu[generation] = max(self.longest_cpu[generation], pause_cpu)


def _run(processor: SpanProcessor, seconds: float) -> dict[str, float]:
    pauses = _GcPauses()
    gc.callbacks.append(pauses)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("overload")
    # An array, not a list: a list of a million floats is a million objects that every full
    # collection visits, which would charge the benchmark's own bookkeeping to the pipeline.
    costs = array("d")
    worst_cpu = 0.0
    deadline = time.monotonic() + seconds
    number = 0
    clock = time.perf_counter
    cpu_clock = time.thread_time
    while time.monotonic() < deadline:
        attributes = {conv.WORKFLOW_EXECUTION_ID: f"overload-{number}"}
        begin, begin_cpu = clock(), cpu_clock()
        with tracer.start_as_current_span("w", attributes=attributes):
            costs.append(clock() - begin)
            worst_cpu = max(worst_cpu, cpu_clock() - begin_cpu)
            for task in range(9):
                begin, begin_cpu = clock(), cpu_clock()
                with tracer.start_as_current_span("t", attributes={conv.TASK_NAME: f"t{task}"}):
                    pass
                costs.append(clock() - begin)
                worst_cpu = max(worst_cpu, cpu_clock() - begin_cpu)
        number += 1
    rss = _rss_mb()
    tracked = len(gc.get_objects())
    gc.callbacks.remove(pauses)
    costs = array("d", sorted(costs))
    count = len(costs)
    return {
        "spans": count,
        "p50_us": costs[count // 2] * 1e6,
        "p99_us": costs[int(count * 0.99)] * 1e6,
        "p99.9_us": costs[int(count * 0.999)] * 1e6,
        "max_ms": costs[-1] * 1e3,
        "max_cpu_ms": worst_cpu * 1e3,
        "rss_end_mb": rss,
        "rss_peak_mb": _peak_rss_mb(),
        "gc_gen2_max_ms": pauses.longest[2] * 1e3,
        "gc_gen2_cpu_ms": pauses.longest_cpu[2] * 1e3,
        "gc_gen2_runs": pauses.runs[2],
        "tracked_k": tracked / 1e3,
    }


def main() -> None:
    """Run the baseline, then the pipeline against the silent receiver; print both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() before each run")
    args = parser.parse_args()
    if args.freeze:
        gc.freeze()
    baseline = _run(SpanProcessor(), min(args.seconds, 10.0))
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1024)
        config = StigmerConfig.from_env(
            {
                "STIGMER_SERVICE_ENDPOINT": f"127.0.0.1:{silent.getsockname()[1]}",
                "STIGMER_SERVICE_API_KEY": "overload-benchmark-key-0123",
                "STIGMER_SERVICE_USE_TLS": "false",
            }
        )
        processor = StigmerSpanProcessor(config=config)
        if args.freeze:
            gc.collect()
            gc.freeze()
        measured = _run(processor, args.seconds)
        stats = processor.stats()
        processor.shutdown(1_000)
    print(f"{'':14}{'no-op processor':>18}{'silent receiver':>18}")
    for key, value in measured.items():
        print(f"{key:14}{baseline[key]:>18.1f}{value:>18.1f}")
    print(f"dropped: {dict(stats.dropped)}")
    met = measured["p99_us"] <= 1000 and measured["max_ms"] <= 50
    print(f"goal p99 <= 1 ms, max <= 50 ms: {'met' if met else 'NOT met'}")
    met_cpu = measured["max_cpu_ms"] <= 50
    print(f"max <= 50 ms in the thread's CPU time: {'met' if met_cpu else 'NOT met'}")


if __name__ == "__main__":
    main()
