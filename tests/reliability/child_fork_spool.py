"""Child process of the fork test: forks children while a thread writes the shared spool.

The pipeline is built from the environment's config with a :class:`SqliteSpool` on
``STIGMER_SPOOL_PATH`` and delivers to a file per process (``<directory>/<pid>.events``,
one ``execution_id event_type`` line per event), so that the spool is the only part the
forked children share with the parent. A parent thread keeps writing to that spool, so a
fork lands in the middle of a spool write. Each forked child reports one workflow,
flushes, shuts its pipeline down and exits 0 (3 when its flush failed). The parent waits
for every child up to a deadline, kills those still running, and prints
``{"exited": [...], "hung": n}`` as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerConfig
from otel_stigmer import conventions as conv
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.spool import SqliteSpool

_CHILD_DEADLINE_SECONDS = 60.0


class PerProcessFileSink:
    """Appends each event as a line to a file named after the sending process."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def send(self, events: Sequence[WorkflowProgressEvent]) -> None:
        """Write ``events``; none is refused."""
        with open(os.path.join(self.directory, f"{os.getpid()}.events"), "a") as out:
            out.writelines(f"{e.workflow_execution_id} {e.event_type}\n" for e in events)

    def close(self) -> None:
        """Nothing to release."""


def main(children: int, directory: str) -> None:
    """Fork ``children`` children while a parent thread keeps the spool busy."""
    config = StigmerConfig.from_env()
    assert config.spool_path is not None
    spool = SqliteSpool(config.spool_path)
    processor = StigmerSpanProcessor(
        PerProcessFileSink(directory),
        config=dataclasses.replace(config, spool_path=None),
        spool=spool,
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("fork")
    stop = threading.Event()

    def keep_the_spool_busy() -> None:
        number = 0
        while not stop.is_set():
            event = WorkflowProgressEvent(
                workflow_execution_id="parent", event_type="task_progress", event_id=f"p{number}"
            )
            spool.store([event])
            spool.remove([event.event_id])
            number += 1

    writer = threading.Thread(target=keep_the_spool_busy)
    writer.start()
    pids = []
    for index in range(children):
        pid = os.fork()
        if pid == 0:
            attributes = {conv.WORKFLOW_EXECUTION_ID: f"child-{index}"}
            with tracer.start_as_current_span("child", attributes=attributes):
                pass
            flushed = processor.force_flush(20_000)
            processor.shutdown(5_000)
            os._exit(0 if flushed else 3)
        pids.append(pid)
    stop.set()
    writer.join()

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
    print(json.dumps({"exited": exited, "hung": len(waiting)}), flush=True)
    processor.shutdown(5_000)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
