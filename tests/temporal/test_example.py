"""The Temporal example runs against a dev server and the reference receiver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CANARY_KEY, Harness

pytestmark = pytest.mark.temporal

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "temporal_worker.py"


def test_example_reports_its_run_with_the_retried_task(harness: Harness) -> None:
    """``temporal_worker.py`` reports three tasks, a retry of ``transform``, and the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "run", "--address", harness.address],
        env={**env, **harness.receiver.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    workflow_id = done.stdout.split(":", 1)[0].strip()

    events = harness.receiver.wait_for_events(
        lambda events: any(e.event_type == "workflow_completed" for e in events),
        execution_id=workflow_id,
    )
    assert [(e.event_type, e.task_name, e.attempt) for e in events] == [
        ("workflow_started", "", 0),
        ("task_started", "fetch", 1),
        ("task_completed", "fetch", 1),
        ("task_started", "transform", 1),
        ("task_retry", "transform", 1),
        ("task_started", "transform", 2),
        ("task_completed", "transform", 2),
        ("task_started", "store", 1),
        ("task_completed", "store", 1),
        ("workflow_completed", "", 0),
    ]
    assert events[4].error.code == "ConnectionError"
    assert CANARY_KEY not in done.stdout + done.stderr
