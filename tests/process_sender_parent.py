"""Application process of the process-sender tests: ``configure()`` from the environment.

Modes:

* ``exit``: report workflow ``exit-run`` (three tasks, progress) and end normally, with no
  flush of its own: the exit hook must deliver through the sender process.
* ``killed``: report workflows ``killed-0`` .. ``killed-9``, wait until the sender process
  has taken every event in (its counters say so), print ``ready <child pid>`` and wait on
  standard input; the test then SIGKILLs this process.
"""

from __future__ import annotations

import sys
import time

import otel_stigmer
from otel_stigmer import conventions as conv
from otel_stigmer.process_sender import ProcessSender

_WAIT_SECONDS = 60.0


def _report(tracer: object, execution_id: str) -> None:
    from opentelemetry.trace import Tracer  # noqa: PLC0415

    assert isinstance(tracer, Tracer)
    with tracer.start_as_current_span("run", attributes={conv.WORKFLOW_EXECUTION_ID: execution_id}):
        for name in ("fetch", "parse", "store"):
            with tracer.start_as_current_span(name, attributes={conv.TASK_NAME: name}) as span:
                span.add_event("progress", {conv.PROGRESS: 50})


def main(mode: str) -> None:
    """Run ``mode`` (see the module docstring)."""
    pipeline = otel_stigmer.configure()
    assert pipeline.tracer_provider is not None
    tracer = pipeline.tracer_provider.get_tracer("parent")
    if mode == "exit":
        _report(tracer, "exit-run")
        return
    for number in range(10):
        _report(tracer, f"killed-{number}")
    sender = pipeline.processor.sender
    assert isinstance(sender, ProcessSender)
    expected = 10 * 11  # per workflow: 2 + 3 tasks x 3 events
    deadline = time.monotonic() + _WAIT_SECONDS
    while sender.stats().enqueued < expected and time.monotonic() < deadline:
        time.sleep(0.01)  # polling interval of the wait, not a synchronisation
    print(f"ready {sender.child_pid} {sender.stats().enqueued}", flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main(sys.argv[1])
