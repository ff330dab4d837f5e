"""Child process of the fork test: forks children while its own sender writes the spool.

Configured from the environment (with ``STIGMER_SPOOL_PATH``), delivering to a file per
process (``<directory>/<pid>.events``, one ``execution_id event_type`` line per event), so
that only the spool is shared with the forked children. A thread keeps producing
workflows, so the parent's sender is writing to the spool whenever a fork happens. Each
forked child reports one workflow, flushes, shuts its pipeline down and exits 0 (3 when
its flush failed). The parent waits for every child up to a deadline, kills those still
running, and prints ``{"exited": [...], "hung": n}`` as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerConfig, configure
from otel_stigmer import conventions as conv
from otel_stigmer.events import WorkflowProgressEvent

_CHILD_DEADLINE_SECONDS = 60.0


class PerProcessFileSink:
    """Appends each event as a line to a file named after the sending process."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def send(self, events: Sequence[WorkflowProgressEvent]) -> list[WorkflowProgressEvent]:
        """Write ``events``; none is refused."""
        with open(os.path.join(self.directory, f"{os.getpid()}.events"), "a") as out:
            out.writelines(f"{e.workflow_execution_id} {e.event_type}\n" for e in events)
        return []

    def close(self) -> None:
        """Nothing to release."""


def main(children: int, directory: str) -> None:
    """Fork ``children`` children while the parent keeps its spool busy."""
    provider = TracerProvider()
    pipeline = configure(
        StigmerConfig.from_env(), tracer_provider=provider, sink=PerProcessFileSink(directory)
    )
    tracer = provider.get_tracer("fork")
    stop = threading.Event()

    def keep_the_spool_busy() -> None:
        number = 0
        while not stop.is_set() and number < 20_000:
            attributes = {conv.WORKFLOW_EXECUTION_ID: f"parent-{number}"}
            with tracer.start_as_current_span("parent", attributes=attributes):
                pass
            number += 1

    producer = threading.Thread(target=keep_the_spool_busy)
    producer.start()
    pids = []
    for index in range(children):
        pid = os.fork()
        if pid == 0:
            attributes = {conv.WORKFLOW_EXECUTION_ID: f"child-{index}"}
            with tracer.start_as_current_span("child", attributes=attributes):
                pass
            flushed = pipeline.force_flush(20_000)
            pipeline.shutdown(5_000)
            os._exit(0 if flushed else 3)
        pids.append(pid)
    stop.set()
    producer.join()

    exited: list[int] = []
    deadline = time.monotonic() + _CHILD_DEADLINE_SECONDS
    waiting = set(pids)
    while waiting and time.monotonic() < deadline:
        for pid in list(waiting):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                waiting.discard(pid)
                exited.append(os.waitstatus_to_exitcode(status))
        time.sleep(0.05)  # polling interval of the wait, not a synchronisation
    for pid in waiting:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    pipeline.force_flush(30_000)
    print(json.dumps({"exited": exited, "hung": len(waiting)}), flush=True)
    pipeline.shutdown(5_000)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
