"""STIGMER_PROTOCOL=status end to end: real spans, the status sink, the reference receiver.

The stored status of each execution must say what the progress protocol's event stream
says: the phase, every task call with its final status, and the error texts.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from status_oracle import expected_outcome, stored_outcome

from otel_stigmer import StigmerConfig
from otel_stigmer._configure import _global_sdk_provider
from otel_stigmer.delivery import Sender
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.status import StatusSink
from otel_stigmer.status.wire import TERMINAL_PHASES, ExecutionPhase
from otel_stigmer.testing import StigmerTestServer

ROOT = Path(__file__).resolve().parents[1]
KEY = "status-protocol-key-4c1d"


@pytest.fixture
def server() -> Iterator[StigmerTestServer]:
    with StigmerTestServer(api_key=KEY) as srv:
        yield srv


def _run(argv: list[str], server: StigmerTestServer, protocol: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STIGMER_", "OTEL_"))}
    env.update(server.env(), STIGMER_PROTOCOL=protocol, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, *argv],
        check=False,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert KEY not in done.stdout + done.stderr
    return done.stdout


def _finished(server: StigmerTestServer, execution_id: str) -> None:
    server.wait_for_status(lambda s: s.phase in TERMINAL_PHASES, execution_id, timeout=30)


def test_quickstart_same_run_both_protocols_agree(server: StigmerTestServer) -> None:
    """One quickstart run reported through both protocols: the status equals the event stream.

    Both pipelines see the very same spans, so task ids (task instance ids) match exactly.
    """
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        quickstart = importlib.import_module("quickstart")  # the example is not a package
    finally:
        sys.path.remove(str(ROOT / "examples"))
    base = StigmerConfig(server.endpoint, api_key=KEY, use_tls=False)
    progress = StigmerSpanProcessor(config=base)
    status = StigmerSpanProcessor(config=dataclasses.replace(base, protocol="status"))
    assert isinstance(status.sender, Sender)
    assert isinstance(status.sender._sink, StatusSink)
    # The decorators report through the global provider; both processors join it.
    provider = _global_sdk_provider()
    provider.add_span_processor(progress)
    provider.add_span_processor(status)
    try:
        quickstart.run("qs-both")
        assert progress.force_flush(30_000)
        assert status.force_flush(30_000)
    finally:
        progress.shutdown()
        status.shutdown()
    events = server.events("qs-both")
    stored = server.status("qs-both")
    assert stored is not None
    assert stored_outcome(stored) == expected_outcome(events)
    assert ExecutionPhase.Name(stored.phase) == "EXECUTION_COMPLETED"
    charge = next(task for task in stored.tasks if task.task_name == "charge-card")
    assert charge.metadata["retries"] == 1
    assert charge.metadata["attempt"] == 2
    assert "GatewayTimeoutError: payment gateway timed out" in str(
        charge.metadata["last_retry_error"]
    )


def test_quickstart_selected_by_environment(server: StigmerTestServer) -> None:
    """examples/quickstart.py with STIGMER_PROTOCOL=status stores what a progress run says."""
    _run(["examples/quickstart.py"], server, "progress")
    (progress_id,) = {e.workflow_execution_id for e in server.events()}
    _run(["examples/quickstart.py"], server, "status")
    statuses = server.status_store.statuses()
    assert progress_id not in statuses  # the progress run sent no status
    ((status_id, stored),) = statuses.items()
    assert {e.workflow_execution_id for e in server.events()} == {progress_id}
    assert stored_outcome(stored, ids=False) == expected_outcome(
        server.events(progress_id), ids=False
    )
    assert server.faults.calls["updateStatus"] >= 1
    assert stored.started_at.endswith("Z")
    assert stored.completed_at >= stored.started_at
    assert status_id.startswith("wfexec-")


def test_demo_workflow_status_matches_progress(server: StigmerTestServer) -> None:
    """The demo workflow (retry, progress, a handled failure) stores the same story as status."""
    module = ["-m", "otel_stigmer.demo.workflow", "--pace", "0"]
    _run([*module, "--execution-id", "demo-progress"], server, "progress")
    _run([*module, "--execution-id", "demo-status"], server, "status")
    _finished(server, "demo-status")
    stored = server.status("demo-status")
    assert stored is not None
    expected = expected_outcome(server.events("demo-progress"), ids=False)
    assert stored_outcome(stored, ids=False) == expected
    assert [name for _, name, _, _ in expected[2]] == [
        "fetch-orders",
        "check-inventory",
        "enrich-orders",
        "send-notifications",
        "publish-report",
    ]
    enrich = next(task for task in stored.tasks if task.task_name == "enrich-orders")
    assert enrich.metadata["progress"] == 50
    assert server.events("demo-status") == []
