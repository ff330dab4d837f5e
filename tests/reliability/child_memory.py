"""Child process of the bounded-memory test: 200k events while the receiver is down.

Prints one JSON line after producing (RSS and counters), waits for a line on stdin (the
receiver is back), flushes and prints a second JSON line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerConfig, configure
from otel_stigmer import conventions as conv
from otel_stigmer.retry import RetryPolicy

WORKFLOWS = 1000
TASKS = 6
PROGRESS_PER_TASK = 31
BOUND = int(os.environ["STIGMER_MAX_QUEUE_SIZE"])
TOTAL = WORKFLOWS * (2 + TASKS * (2 + PROGRESS_PER_TASK))  # 200 000, 7 000 of them outcomes


def rss_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    """Produce, report, wait for the receiver, flush, report."""
    logging.basicConfig(level=logging.DEBUG)  # every line is checked for the key
    provider = TracerProvider()
    pipeline = configure(
        StigmerConfig.from_env(),
        tracer_provider=provider,
        retry_policy=RetryPolicy(initial_backoff=0.05, max_backoff=0.5),
    )
    tracer = provider.get_tracer("memory")
    baseline = rss_bytes()
    peak = baseline
    for index in range(WORKFLOWS):
        attributes = {conv.WORKFLOW_EXECUTION_ID: f"mem-{index}", conv.WORKFLOW_NAME: "mem"}
        with tracer.start_as_current_span("mem", attributes=attributes):
            for number in range(TASKS):
                name = f"t{number}"
                with tracer.start_as_current_span(name, attributes={conv.TASK_NAME: name}) as span:
                    for step in range(PROGRESS_PER_TASK):
                        span.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: step})
        if index % 50 == 0:
            peak = max(peak, rss_bytes())
    # Wait until the sender has mapped every queued record: then each event is either in
    # the outbox (at most the bound) or counted as dropped.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = pipeline.stats()
        if sum(now.dropped.values()) + now.queue_depth == TOTAL and now.queue_depth <= BOUND:
            break
        time.sleep(0.02)  # polling a condition with a deadline
    peak = max(peak, rss_bytes())
    stats = pipeline.stats().as_dict()
    print(json.dumps({"baseline": baseline, "peak": peak, "stats": stats}), flush=True)
    sys.stdin.readline()
    flushed = pipeline.force_flush(120_000)
    print(json.dumps({"flushed": flushed, "stats": pipeline.stats().as_dict()}), flush=True)
    pipeline.shutdown(5_000)


if __name__ == "__main__":
    main()
