"""The spool's bound under a burst: SIGKILL at any moment loses at most a window of events."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from otel_stigmer.delivery import DEFAULT_UNSPOOLED_WINDOW
from otel_stigmer.testing import StigmerTestServer

from .child_burst import EVENTS_PER_WORKFLOW
from .support import CANARY, CANARY_FRAGMENT, ROOT, assert_canary_absent_from_files, wait_until

BURST_CHILD = str(Path(__file__).with_name("child_burst.py"))
#: The stated bound: events of ended spans a SIGKILL may cost (two windows, see docs).
BOUND_EVENTS = 2 * DEFAULT_UNSPOOLED_WINDOW


def _burst_then_kill(env: dict[str, str], workflows: int, kill_after: int) -> set[int]:
    """Run a burst of ``workflows``; SIGKILL once ``kill_after`` have ended; return those ended."""
    child = subprocess.Popen(
        [sys.executable, BURST_CHILD, "burst", "0", str(workflows)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    ended: list[str] = []

    def read() -> None:
        assert child.stdout is not None
        ended.extend(line.strip() for line in child.stdout)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert wait_until(lambda: len(ended) >= kill_after, timeout=120), len(ended)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        reader.join()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    return {int(line) for line in ended if line.isdigit()}


@pytest.mark.slow
def test_sigkill_in_a_burst_loses_at_most_the_unspooled_window(tmp_path: Path) -> None:
    """SIGKILL mid-burst (receiver up): the next start delivers all but ≤ 2 windows of events.

    10 000 workflows of ten events (100 000 events) ended as fast as one thread can; the
    runner is killed once 1 500 of them have ended. Every event of an ended workflow is
    either delivered before the kill or spooled and delivered by the next start, except
    at most the stated bound; no event arrives twice.
    """
    spool = tmp_path / "spool.db"
    with StigmerTestServer(api_key=CANARY) as server:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            **server.env(),
            "STIGMER_SPOOL_PATH": str(spool),
        }
        ended = _burst_then_kill(env, workflows=10_000, kill_after=1_500)
        drain = subprocess.run(
            [sys.executable, BURST_CHILD, "drain"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert drain.returncode == 0, drain.stderr[-3000:]
        assert CANARY_FRAGMENT not in drain.stdout + drain.stderr
        assert json.loads(drain.stdout)["flushed"] is True
        events = server.events()
    per_execution = collections.Counter(event.workflow_execution_id for event in events)
    assert len({event.event_id for event in events}) == len(events), "duplicates stored"
    lost = sum(
        EVENTS_PER_WORKFLOW - min(EVENTS_PER_WORKFLOW, per_execution[f"burst-{number}"])
        for number in ended
    )
    assert len(ended) >= 1_500
    assert lost <= BOUND_EVENTS, f"{lost} events of {len(ended)} ended workflows lost"
    assert_canary_absent_from_files(spool)
