"""The reference receiver's updateStatus: upstream merge rules, validation, storage."""

from __future__ import annotations

import http.client
import json
import re
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct
from line_process import LineProcess, clean_env

from otel_stigmer import StigmerConfig
from otel_stigmer.server.app import ReceiverServer
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.http import LiveHttpServer
from otel_stigmer.server.status_merge import merge_status
from otel_stigmer.server.status_store import StatusStore
from otel_stigmer.status import StatusClient, UpdateStatusError
from otel_stigmer.status.wire import (
    ExecutionPhase,
    WorkflowExecutionStatus,
    WorkflowTask,
    WorkflowTaskStatus,
)
from otel_stigmer.testing import StigmerTestServer

KEY = "status-server-key-c3d2"
IN_PROGRESS = ExecutionPhase.EXECUTION_IN_PROGRESS
COMPLETED = ExecutionPhase.EXECUTION_COMPLETED


def task(task_id: str, status: int = WorkflowTaskStatus.WORKFLOW_TASK_IN_PROGRESS) -> WorkflowTask:
    return WorkflowTask(task_id=task_id, task_name=task_id, status=status)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[StigmerTestServer]:
    with StigmerTestServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture
def client(server: StigmerTestServer) -> Iterator[StatusClient]:
    with StatusClient(StigmerConfig(server.endpoint, api_key=KEY, use_tls=False)) as status_client:
        yield status_client


def test_merge_replaces_the_task_list_only_when_the_update_has_tasks() -> None:
    """Upstream rule: tasks replaced whenever the update carries any, kept when it has none."""
    stored = WorkflowExecutionStatus(phase=IN_PROGRESS, tasks=[task("a"), task("b")])
    one_task = merge_status(stored, WorkflowExecutionStatus(tasks=[task("c")]))
    assert [t.task_id for t in one_task.tasks] == ["c"]
    no_task = merge_status(stored, WorkflowExecutionStatus(phase=COMPLETED))
    assert [t.task_id for t in no_task.tasks] == ["a", "b"]
    assert no_task.phase == COMPLETED
    assert [t.task_id for t in stored.tasks] == ["a", "b"]  # the input is left alone


def test_merge_takes_only_the_fields_an_update_sets() -> None:
    """Unspecified phase and empty strings keep the stored values; set ones replace them."""
    output = Struct()
    output.update({"parcel": "p-1"})
    stored = WorkflowExecutionStatus(
        phase=COMPLETED,
        error="old",
        started_at="2025-01-11T14:30:22.000Z",
        temporal_workflow_id="wf-1",
    )
    merged = merge_status(
        stored,
        WorkflowExecutionStatus(completed_at="2025-01-11T14:35:47.000Z", output=output),
    )
    assert merged.phase == COMPLETED
    assert merged.error == "old"
    assert merged.started_at == "2025-01-11T14:30:22.000Z"
    assert merged.completed_at == "2025-01-11T14:35:47.000Z"
    assert merged.temporal_workflow_id == "wf-1"
    assert merged.output["parcel"] == "p-1"
    # A later IN_PROGRESS overwrites COMPLETED on the server: clients must never send one.
    assert merge_status(merged, WorkflowExecutionStatus(phase=IN_PROGRESS)).phase == IN_PROGRESS


def test_update_status_answers_the_merged_execution(
    server: StigmerTestServer, client: StatusClient
) -> None:
    """The answer is the stored WorkflowExecution; the first update creates the execution."""
    first = client.update_status(
        "wex-1", WorkflowExecutionStatus(phase=IN_PROGRESS, tasks=[task("a")])
    )
    assert first.metadata.id == "wex-1"
    assert first.api_version == "agentic.stigmer.ai/v1"
    assert first.kind == "WorkflowExecution"
    second = client.update_status("wex-1", WorkflowExecutionStatus(phase=COMPLETED))
    assert second.status.phase == COMPLETED
    assert [t.task_id for t in second.status.tasks] == ["a"]
    assert server.status("wex-1") == second.status
    assert [s.phase for _, s in server.status_store.updates("wex-1")] == [IN_PROGRESS, COMPLETED]
    (summary,) = server.status_store.summaries()
    assert (summary.execution_id, summary.phase, summary.task_count, summary.update_count) == (
        "wex-1",
        "EXECUTION_COMPLETED",
        1,
        2,
    )
    assert server.faults.calls["updateStatus"] == 2


def test_update_status_validates_and_authenticates(
    server: StigmerTestServer, client: StatusClient
) -> None:
    """A missing execution id or status is INVALID_ARGUMENT; a wrong key UNAUTHENTICATED."""
    with pytest.raises(UpdateStatusError) as caught:
        client.update_status("", WorkflowExecutionStatus(phase=IN_PROGRESS))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details == "execution_id is required"
    missing = client.update_status_many([("wex-2", None)])  # type: ignore[list-item]
    assert isinstance(missing[0], UpdateStatusError)
    assert missing[0].details == "status is required"
    bad = StigmerConfig(server.endpoint, api_key="not-the-key", use_tls=False)
    with StatusClient(bad) as stranger, pytest.raises(UpdateStatusError) as refused:
        stranger.update_status("wex-2", WorkflowExecutionStatus(phase=IN_PROGRESS))
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert server.status("wex-2") is None


def test_statuses_survive_a_restart(tmp_path: Path) -> None:
    """The status tables live in the receiver's SQLite file and are read again on restart."""
    db = tmp_path / "events.db"
    with StigmerTestServer(api_key=KEY, db_path=str(db)) as srv:
        config = StigmerConfig(srv.endpoint, api_key=KEY, use_tls=False)
        with StatusClient(config) as status_client:
            status_client.update_status("wex-3", WorkflowExecutionStatus(phase=COMPLETED))
    store = StatusStore(db)
    try:
        stored = store.status("wex-3")
        assert stored is not None
        assert stored.phase == COMPLETED
        assert list(store.statuses()) == ["wex-3"]
    finally:
        store.close()


def test_serve_command_answers_update_status(tmp_path: Path) -> None:
    """`otel-stigmer serve` (python -m otel_stigmer.server) takes updateStatus as well."""
    serve = LineProcess(
        [
            sys.executable,
            "-m",
            "otel_stigmer.server",
            "--port",
            "0",
            "--no-http",
            "--db",
            str(tmp_path / "e.db"),
        ],
        clean_env(STIGMER_SERVER_API_KEYS=KEY),
        read="stderr",
    )
    try:
        endpoint = serve.wait_for(re.compile(r"receiver listening on (\S+) ")).group(1)
        config = StigmerConfig(endpoint, api_key=KEY, use_tls=False)
        with StatusClient(config) as status_client:
            answer = status_client.update_status(
                "wex-cli", WorkflowExecutionStatus(phase=IN_PROGRESS, tasks=[task("a")])
            )
        assert answer.status.tasks[0].task_id == "a"
    finally:
        serve.close()


def test_json_endpoint_lists_and_shows_statuses(tmp_path: Path) -> None:
    """GET /api/status lists every stored status; /api/status/{id} one; both need the key."""
    receiver = ReceiverServer(api_keys=[KEY], db_path=tmp_path / "events.db")
    with receiver, LiveHttpServer(receiver.store, BearerKeyAuth([KEY]), port=0) as live:
        config = StigmerConfig(receiver.endpoint, api_key=KEY, use_tls=False)
        with StatusClient(config) as status_client:
            status_client.update_status(
                "wex/4", WorkflowExecutionStatus(phase=COMPLETED, tasks=[task("a")])
            )

        def get(path: str, key: str = KEY) -> tuple[int, object]:
            conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
            try:
                conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
                response = conn.getresponse()
                return response.status, json.loads(response.read())
            finally:
                conn.close()

        assert get("/api/status") == (
            200,
            [
                {
                    "execution_id": "wex/4",
                    "status": {
                        "phase": "EXECUTION_COMPLETED",
                        "tasks": [
                            {
                                "task_id": "a",
                                "task_name": "a",
                                "status": "WORKFLOW_TASK_IN_PROGRESS",
                            }
                        ],
                    },
                }
            ],
        )
        code, one = get("/api/status/" + urllib.parse.quote("wex/4", safe=""))
        assert code == 200
        assert isinstance(one, dict)
        assert one["execution_id"] == "wex/4"
        assert get("/api/status/nope")[0] == 404
        assert get("/api/status", key="wrong")[0] == 401
