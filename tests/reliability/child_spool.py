"""Child process of the spool test, run twice on one spool file.

``first``: one execution delivered in full, a second one half delivered; then (after a
line on stdin, once the receiver is down) the rest of the second one, which can only go
to the spool; prints ``spooled`` and waits to be killed. ``second``: one more execution,
then a flush that also delivers what the first run left; prints the outcome as JSON.
"""

from __future__ import annotations

import json
import logging
import sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from otel_stigmer import StigmerConfig, configure
from otel_stigmer import conventions as conv
from otel_stigmer.retry import RetryPolicy

FAST = RetryPolicy(initial_backoff=0.05, max_backoff=0.5)


def main(mode: str) -> None:
    """Run one of the two phases."""
    logging.basicConfig(level=logging.DEBUG)  # every line is checked for the key
    provider = TracerProvider()
    pipeline = configure(StigmerConfig.from_env(), tracer_provider=provider, retry_policy=FAST)
    tracer = provider.get_tracer("spool")
    if mode == "first":
        _workflow(tracer, "spool-a", range(3))
        attributes = {conv.WORKFLOW_EXECUTION_ID: "spool-b", conv.WORKFLOW_NAME: "load"}
        with tracer.start_as_current_span("load", attributes=attributes):
            _tasks(tracer, range(2))
            print("delivered" if pipeline.force_flush(30_000) else "stuck", flush=True)
            sys.stdin.readline()  # the receiver goes down now
            _tasks(tracer, range(2, 5))
        print("produced", flush=True)
        sys.stdin.readline()  # never answered: this process ends with SIGKILL
    else:
        _workflow(tracer, "spool-c", range(2))
        flushed = pipeline.force_flush(60_000)
        print(json.dumps({"flushed": flushed, "stats": pipeline.stats().as_dict()}), flush=True)
        pipeline.shutdown(5_000)


def _workflow(tracer: Tracer, execution_id: str, numbers: range) -> None:
    attributes = {conv.WORKFLOW_EXECUTION_ID: execution_id, conv.WORKFLOW_NAME: "load"}
    with tracer.start_as_current_span("load", attributes=attributes):
        _tasks(tracer, numbers)


def _tasks(tracer: Tracer, numbers: range) -> None:
    for number in numbers:
        name = f"t{number}"
        with tracer.start_as_current_span(name, attributes={conv.TASK_NAME: name}) as span:
            span.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: 50})


if __name__ == "__main__":
    main(sys.argv[1])
