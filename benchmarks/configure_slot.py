"""Cost of ``configure()``'s one-processor-per-provider slot on the hot path.

``python -m benchmarks.configure_slot`` times task spans (start and end inside a workflow
span) on two providers side by side in one process: one with a ``StigmerSpanProcessor``
added directly, one set up by ``configure()`` (the processor behind its swappable slot).
Both deliver to an in-memory sink. Rounds alternate between the two; the ratio of the
medians is printed.
"""

from __future__ import annotations

import statistics
import time

from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerSpanProcessor, configure
from otel_stigmer import conventions as conv
from otel_stigmer.sinks import MemorySink

SPANS = 2_000
ROUNDS = 41


def _round(provider: TracerProvider) -> float:
    tracer = provider.get_tracer("bench")
    with tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "bench"}):
        start = time.perf_counter()
        for _ in range(SPANS):
            with tracer.start_as_current_span("t", attributes={conv.TASK_NAME: "t"}):
                pass
        elapsed = time.perf_counter() - start
    return elapsed / SPANS * 1e6


def main() -> None:
    """Print the per-span cost of both set-ups and their ratio."""
    direct, slotted = TracerProvider(), TracerProvider()
    direct.add_span_processor(StigmerSpanProcessor(MemorySink()))
    configure(sink=MemorySink(), tracer_provider=slotted)
    timings: dict[str, list[float]] = {"direct": [], "configure": []}
    for _ in range(ROUNDS):
        timings["direct"].append(_round(direct))
        timings["configure"].append(_round(slotted))
    medians = {name: statistics.median(values) for name, values in timings.items()}
    for name, value in medians.items():
        print(f"{name:>10}: {value:6.1f} us per task span")
    print(f"     ratio: {medians['configure'] / medians['direct']:.3f}x (configure / direct)")
    direct.shutdown()
    slotted.shutdown()


if __name__ == "__main__":
    main()
