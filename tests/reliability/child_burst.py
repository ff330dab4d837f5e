"""Child process of the burst-durability checks (the test and the chaos benchmark).

``burst <first> <workflows>``: ``configure()`` from the environment (a spool is set),
then ends workflows ``burst-<first>`` … as fast as one thread can, each a workflow span
with four task spans (ten events); after each workflow's span ended, prints its number
on stdout (so every number printed is an execution that ended before the process was
killed). Prints ``done`` at the end and waits for a line on stdin (unless killed first),
then flushes and prints whether the flush completed.
``drain``: ``configure()`` with the same spool, flushes what it restored, prints the
delivery stats as JSON.
"""

from __future__ import annotations

import json
import sys

from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerConfig, configure
from otel_stigmer import conventions as conv
from otel_stigmer.retry import RetryPolicy

FAST = RetryPolicy(initial_backoff=0.05, max_backoff=0.5)
TASKS = 4
#: Events of one workflow: its start and outcome, a start and an outcome per task.
EVENTS_PER_WORKFLOW = 2 + 2 * TASKS


def main(mode: str, first: int = 0, workflows: int = 0) -> None:
    """Run one phase."""
    provider = TracerProvider()
    pipeline = configure(StigmerConfig.from_env(), tracer_provider=provider, retry_policy=FAST)
    if mode == "drain":
        flushed = pipeline.force_flush(120_000)
        stats = pipeline.stats()
        print(json.dumps({"flushed": flushed, "dropped": dict(stats.dropped)}), flush=True)
        pipeline.shutdown(5_000)
        return
    tracer = provider.get_tracer("burst")
    out = sys.stdout
    for number in range(first, first + workflows):
        attributes = {conv.WORKFLOW_EXECUTION_ID: f"burst-{number}", conv.WORKFLOW_NAME: "burst"}
        with tracer.start_as_current_span("burst", attributes=attributes):
            for task in range(TASKS):
                with tracer.start_as_current_span("t", attributes={conv.TASK_NAME: f"t{task}"}):
                    pass
        out.write(f"{number}\n")
        out.flush()
    print("done", flush=True)
    sys.stdin.readline()
    print(json.dumps({"flushed": pipeline.force_flush(120_000)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], *(int(arg) for arg in sys.argv[2:]))
