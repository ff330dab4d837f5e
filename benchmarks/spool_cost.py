"""What the spool's bounded window costs a burst: side by side in one process.

``python -m benchmarks.spool_cost [--workflows 10000]``

Three pipelines against the reference receiver on loopback end the same burst (workflows
of one workflow span and four task spans, ten events each) from one thread: no spool;
a spool without the window (the calling thread never spools: the behaviour before the
window, kept as the baseline); a spool with the default window. Printed: the business
thread's time for the burst and per workflow (p50, p99, max), the time until every event
is stored, and the most events that ever waited unspooled (sampled).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerConfig
from otel_stigmer import conventions as conv
from otel_stigmer.delivery import Sender
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.testing import StigmerTestServer

_KEY = "spool-cost-benchmark-key-0123"
_TASKS = 4


def _burst(variant: str, workflows: int) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="stigmer-spool-cost-"))
    with StigmerTestServer(api_key=_KEY) as server:
        env = dict(server.env())
        if variant != "no spool":
            env["STIGMER_SPOOL_PATH"] = str(directory / "spool.db")
        processor = StigmerSpanProcessor(config=StigmerConfig.from_env(env))
        sender = processor.sender
        assert isinstance(sender, Sender)
        if variant == "spool, no window":
            sender._unspooled_window = 1 << 60  # the baseline: the calling thread never spools
        provider = TracerProvider()
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("cost")
        peak = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.wait(0.005):
                peak = max(peak, sender._intake.weight)  # a sampled gauge

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        costs = []
        started = time.perf_counter()
        for number in range(workflows):
            begin = time.perf_counter()
            attributes = {conv.WORKFLOW_EXECUTION_ID: f"cost-{number}"}
            with tracer.start_as_current_span("w", attributes=attributes):
                for task in range(_TASKS):
                    with tracer.start_as_current_span("t", attributes={conv.TASK_NAME: f"{task}"}):
                        pass
            costs.append(time.perf_counter() - begin)
        produced = time.perf_counter() - started
        flushed = processor.force_flush(300_000)
        stored = time.perf_counter() - started
        stop.set()
        sampler.join()
        processor.shutdown(5_000)
        costs.sort()
        return {
            "burst_s": produced,
            "per_workflow_p50_ms": statistics.median(costs) * 1000,
            "per_workflow_p99_ms": costs[int(len(costs) * 0.99)] * 1000,
            "per_workflow_max_ms": costs[-1] * 1000,
            "all_stored_s": stored if flushed else float("nan"),
            "peak_unspooled_events": peak,
        }


def main() -> None:
    """Print the three variants side by side, with ratios to the baseline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=10_000)
    args = parser.parse_args()
    variants = ["no spool", "spool, no window", "spool, window"]
    results = {variant: _burst(variant, args.workflows) for variant in variants}
    base = results["spool, no window"]
    print(f"{'':24}" + "".join(f"{v:>20}" for v in variants) + f"{'window/baseline':>18}")
    for key in base:
        row = "".join(f"{results[v][key]:>20.2f}" for v in variants)
        ratio = results["spool, window"][key] / base[key] if base[key] else float("nan")
        print(f"{key:24}{row}{ratio:>17.2f}x")


if __name__ == "__main__":
    main()
