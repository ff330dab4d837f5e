"""Forks from a busy parent: children never hang on an inherited lock and deliver at exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
