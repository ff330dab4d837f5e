"""Forks from a busy parent: children never hang on an inherited lock and deliver at exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from otel_stigmer.testing import StigmerTestServer

from .support import CANARY, CANARY_FRAGMENT, ROOT

MIDCALL_CHILD = str(Path(__file__).with_name("child_fork_midcall.py"))


def _run_forking_parent(
    server: StigmerTestServer, children: int, mode: str = "fork"
) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **server.env(), "STIGMER_SERVICE_TIMEOUT": "10"}
    done = subprocess.run(
        [sys.executable, MIDCALL_CHILD, str(children), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert CANARY_FRAGMENT not in done.stdout + done.stderr
    assert done.returncode == 0, done.stderr[-3000:]
    outcome: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return outcome


def _children_delivered(server: StigmerTestServer, children: int) -> set[str]:
    completed = {
        event.workflow_execution_id
        for event in server.events()
        if event.event_type == "workflow_completed"
    }
    return {f"child-{i}" for i in range(children)} & completed


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fork", "multiprocessing"])
def test_children_forked_mid_call_that_exit_at_once_all_deliver(mode: str) -> None:
    """40 children forked while the parent's sender waits on a slow call each deliver at exit.

    Plain ``os.fork`` children exit through the interpreter's exit; ``multiprocessing``
    children end with ``os._exit`` and deliver through their own exit flush.
    """
    children = 40
    with StigmerTestServer(api_key=CANARY) as server:
        server.set_latency(0.05)  # every call of the parent is in flight for a while
        outcome = _run_forking_parent(server, children, mode)
        assert outcome == {"exited": [0] * children, "hung": 0}
        delivered = _children_delivered(server, children)
    assert len(delivered) == children, sorted({f"child-{i}" for i in range(children)} - delivered)


@pytest.mark.slow
def test_children_forked_from_a_busy_parent_with_the_grpc_sink_never_hang() -> None:
    """30 children forked while the gRPC sink, client and sequencer are busy all exit."""
    children = 30
    with StigmerTestServer(api_key=CANARY) as server:
        outcome = _run_forking_parent(server, children)
        assert outcome["hung"] == 0
        assert outcome["exited"] == [0] * children
        assert len(_children_delivered(server, children)) == children


def test_every_lock_held_by_another_thread_at_fork_is_free_in_the_child() -> None:
    """Locks a parent thread holds at fork (sink, client, sequencer, modules) free in a child."""
    import threading  # noqa: PLC0415 - only this test holds locks across a fork

    from otel_stigmer import _mute, decorators, span_events  # noqa: PLC0415
    from otel_stigmer.client import CallbackClient  # noqa: PLC0415
    from otel_stigmer.config import StigmerConfig  # noqa: PLC0415
    from otel_stigmer.sequencing import Sequencer  # noqa: PLC0415
    from otel_stigmer.sinks import GrpcSink, MemorySink  # noqa: PLC0415

    config = StigmerConfig("127.0.0.1:9", CANARY, use_tls=False)
    client = CallbackClient(config)
    owners: list[Any] = [Sequencer(), GrpcSink(config), MemorySink(), client]
    modules = [(span_events, "_lock"), (decorators, "_id_lock"), (_mute, "_lock")]

    def locks() -> list[threading.Lock]:
        held = [owner._lock for owner in owners]
        return held + [getattr(module, name) for module, name in modules]

    taken = threading.Event()
    release = threading.Event()

    def hold() -> None:
        for lock in locks():
            lock.acquire()
        taken.set()
        release.wait(30)
        for lock in locks():
            lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(10)
        with warnings.catch_warnings():  # Python 3.12+ warns about forking with threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            free = all(lock.acquire(timeout=5) for lock in locks())
            os._exit(0 if free else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        holder.join()
        client.close()
    assert os.waitstatus_to_exitcode(status) == 0
