"""Child process of the mid-call fork tests: forks children while its sender is busy.

``configure()`` from the environment (the reference receiver given by the test). A parent
thread keeps ending workflows, so the sender is mid-call (the receiver answers slowly)
and holds its locks when a fork lands. Each forked child reports one workflow
``child-<i>`` and exits at once, with no flush of its own: through the interpreter's
normal exit (mode ``fork``), or as a ``multiprocessing`` process started by fork, which
ends with ``os._exit`` (mode ``multiprocessing``). The parent waits for every child up
to a deadline, kills those still running and prints ``{"exited": [...], "hung": n}`` as JSON.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import time

from opentelemetry.sdk.trace import TracerProvider

import otel_stigmer
from otel_stigmer import conventions as conv

_CHILD_DEADLINE_SECONDS = 60.0


_tracer = TracerProvider().get_tracer("unset")


def _report_one(index: int) -> None:
    with _tracer.start_as_current_span(
        "child", attributes={conv.WORKFLOW_EXECUTION_ID: f"child-{index}"}
    ):
        pass


def main(children: int, mode: str) -> None:
    """Fork ``children`` children while a parent thread keeps the sender busy."""
    global _tracer  # noqa: PLW0603 - the children's tracer, set once
    provider = TracerProvider()
    otel_stigmer.configure(tracer_provider=provider)
    tracer = _tracer = provider.get_tracer("fork")
    stop = threading.Event()

    def keep_the_sender_busy() -> None:
        number = 0
        while not stop.is_set():
            with tracer.start_as_current_span(
                "parent", attributes={conv.WORKFLOW_EXECUTION_ID: f"parent-{number}"}
            ):
                pass
            number += 1
            time.sleep(0.001)  # pace the parent's stream; not a synchronisation

    busy = threading.Thread(target=keep_the_sender_busy)
    busy.start()
    pids = []
    processes = []
    for index in range(children):
        time.sleep(0.01)  # spread the forks over the sender's calls; not a synchronisation
        if mode == "multiprocessing":
            process = multiprocessing.get_context("fork").Process(target=_report_one, args=(index,))
            process.start()
            processes.append(process)
            continue
        pid = os.fork()
        if pid == 0:
            _report_one(index)
            sys.exit(0)
        pids.append(pid)
    stop.set()
    busy.join()
    if processes:
        for process in processes:
            process.join(_CHILD_DEADLINE_SECONDS)
        hung = [p for p in processes if p.is_alive()]
        for process in hung:
            process.kill()
            process.join()
        codes = [p.exitcode for p in processes if p not in hung]
        print(json.dumps({"exited": codes, "hung": len(hung)}), flush=True)
        return

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


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
