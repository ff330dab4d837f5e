"""examples/quickstart.py runs with no environment set and prints a retry and a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_prints_timeline_with_retry_and_failure() -> None:
    """With no STIGMER_* variables the example reports to its embedded receiver and prints it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STIGMER_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "embedded receiver" in lines[0]
    timeline = [line.split("ms", 1)[1].split()[:2] for line in lines if line.startswith("+")]
    assert timeline == [
        ["workflow_started", "order-fulfilment"],
        ["task_started", "reserve_stock"],
        ["task_completed", "reserve_stock"],
        ["task_started", "charge-card"],
        ["task_retry", "charge-card"],
        ["task_started", "charge-card"],
        ["task_completed", "charge-card"],
        ["task_started", "send-receipt"],
        ["task_failed", "send-receipt"],
        ["task_started", "ship"],
        ["task_completed", "ship"],
        ["workflow_completed", "order-fulfilment"],
    ]
    assert "GatewayTimeoutError: payment gateway timed out" in done.stdout
    assert "MailboxFullError: mailbox of ada@example.com is full" in done.stdout
    assert "quickstart-key" not in done.stdout + done.stderr


def test_quickstart_reports_to_the_configured_endpoint() -> None:
    """With STIGMER_SERVICE_* set the example reports there (a real receiver on loopback)."""
    from otel_stigmer.testing import StigmerTestServer  # noqa: PLC0415

    canary = "canary-key-7f3a9"
    with StigmerTestServer(api_key=canary) as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("STIGMER_", "OTEL_"))}
        env.update(server.env())
        done = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "quickstart.py")],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        events = server.wait_for_events(
            lambda evs: any(e.event_type == "workflow_completed" for e in evs), timeout=30
        )
    assert [e.event_type for e in events].count("task_retry") == 1
    assert [e.event_type for e in events].count("task_failed") == 1
    assert "all delivered: True" in done.stdout
    assert canary not in done.stdout + done.stderr
