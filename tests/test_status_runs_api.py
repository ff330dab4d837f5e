"""``/api/status-runs`` and ``/api/status-stream``: status-protocol runs for the live page."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_runs import repeated_calls_run

from otel_stigmer import StigmerConfig
from otel_stigmer.server.app import ReceiverServer
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.http import LiveHttpServer
from otel_stigmer.server.status_runs import iso_ms
from otel_stigmer.status import StatusClient
from otel_stigmer.status.wire import ExecutionPhase, WorkflowExecutionStatus, WorkflowTask

KEY = "status-runs-key-41aa"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[ReceiverServer, LiveHttpServer, StatusClient]]:
    receiver = ReceiverServer(api_keys=[KEY], db_path=tmp_path / "events.db")
    with (
        receiver,
        LiveHttpServer(
            receiver.store,
            BearerKeyAuth([KEY]),
            port=0,
            status_store=receiver.status_store,
            keepalive=0.5,
        ) as page,
        StatusClient(StigmerConfig(receiver.endpoint, api_key=KEY, use_tls=False)) as client,
    ):
        yield receiver, page, client


def _get(page: LiveHttpServer, path: str) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", page.port, timeout=10)
    try:
        conn.request("GET", path, headers=AUTH)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["execution_id"] for item in items]


def test_each_phase_maps_to_the_page_status_word(
    live: tuple[ReceiverServer, LiveHttpServer, StatusClient],
) -> None:
    """Every ExecutionPhase is listed with the page's status word; started_at gives the start."""
    _, page, client = live
    phases = {
        "p": ExecutionPhase.EXECUTION_PENDING,
        "r": ExecutionPhase.EXECUTION_IN_PROGRESS,
        "c": ExecutionPhase.EXECUTION_COMPLETED,
        "f": ExecutionPhase.EXECUTION_FAILED,
        "x": ExecutionPhase.EXECUTION_CANCELLED,
    }
    for execution_id, phase in phases.items():
        client.update_status(
            execution_id,
            WorkflowExecutionStatus(
                phase=phase,
                started_at="2026-01-11T14:30:22.250Z",
                completed_at="2026-01-11T14:30:25.000Z",
                tasks=[WorkflowTask(task_id="t1"), WorkflowTask(task_id="t2")],
            ),
        )
    code, headers, runs = _get(page, "/api/status-runs")
    assert code == 200
    assert headers["X-Last-Status-Id"] == "5"
    assert {r["execution_id"]: r["status"] for r in runs} == {
        "p": "pending",
        "r": "running",
        "c": "completed",
        "f": "failed",
        "x": "cancelled",
    }
    assert _ids(runs) == ["x", "f", "c", "r", "p"]  # newest first
    assert {r["started_ms"] for r in runs} == {iso_ms("2026-01-11T14:30:22.250Z")}
    assert {r["ended_ms"] - r["started_ms"] for r in runs} == {2750}
    assert {(r["protocol"], r["task_count"], r["update_count"]) for r in runs} == {("status", 2, 1)}


def test_filters_paging_and_runs_with_events_left_to_the_progress_list(
    live: tuple[ReceiverServer, LiveHttpServer, StatusClient],
) -> None:
    """status, q, limit and before narrow the list; an id with progress events is not listed."""
    receiver, page, client = live
    receiver.store.add(repeated_calls_run("both"))
    for n in range(5):
        phase = ExecutionPhase.EXECUTION_FAILED if n % 2 else ExecutionPhase.EXECUTION_COMPLETED
        client.update_status(f"run-{n}", WorkflowExecutionStatus(phase=phase))
    client.update_status("both", WorkflowExecutionStatus(phase=ExecutionPhase.EXECUTION_FAILED))
    assert _ids(_get(page, "/api/status-runs")[2]) == [f"run-{n}" for n in (4, 3, 2, 1, 0)]
    assert _ids(_get(page, "/api/status-runs?status=failed")[2]) == ["run-3", "run-1"]
    assert _ids(_get(page, "/api/status-runs?status=paused")[2]) == []
    assert _ids(_get(page, "/api/status-runs?q=N-2")[2]) == ["run-2"]
    first = _ids(_get(page, "/api/status-runs?limit=2")[2])
    second = _ids(_get(page, f"/api/status-runs?limit=2&before={first[-1]}")[2])
    assert first + second == ["run-4", "run-3", "run-2", "run-1"]
    assert _get(page, "/api/status-runs?status=bogus")[0] == 400
    assert _ids(_get(page, "/api/executions")[2]) == ["both"]


def test_the_stream_sends_each_changed_run_once_and_resumes_after_an_update_id(
    live: tuple[ReceiverServer, LiveHttpServer, StatusClient],
) -> None:
    """A stream from update N sends each execution changed after N, as its latest state."""
    _, page, client = live
    client.update_status("a", WorkflowExecutionStatus(phase=ExecutionPhase.EXECUTION_PENDING))
    client.update_status("b", WorkflowExecutionStatus(phase=ExecutionPhase.EXECUTION_IN_PROGRESS))
    client.update_status("b", WorkflowExecutionStatus(phase=ExecutionPhase.EXECUTION_COMPLETED))
    conn = http.client.HTTPConnection("127.0.0.1", page.port, timeout=10)
    try:
        conn.request("GET", "/api/status-stream", headers={**AUTH, "Last-Event-ID": "1"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
        messages: list[tuple[str, dict[str, Any]]] = []
        event_id = ""
        while len(messages) < 2:
            line = response.fp.readline().decode().rstrip("\n")
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                messages.append((event_id, json.loads(line[6:])))
                if len(messages) == 1:
                    client.update_status(
                        "c", WorkflowExecutionStatus(phase=ExecutionPhase.EXECUTION_FAILED)
                    )
    finally:
        conn.close()
    assert [(i, m["execution_id"], m["status"], m["update_count"]) for i, m in messages] == [
        ("3", "b", "completed", 2),
        ("4", "c", "failed", 1),
    ]
