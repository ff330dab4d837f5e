"""StigmerTestServer: the receiver in-process for integration tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from otel_stigmer._proto.ai.stigmer.workflow.runner.v1 import progress_pb2_grpc
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.testing import StigmerTestServer

Stub = progress_pb2_grpc.WorkflowRunnerCommandControllerStub


def _event(
    seq: int, execution_id: str = "exec-1", event_type: str = "task_started"
) -> WorkflowProgressEvent:
    return WorkflowProgressEvent(
        workflow_execution_id=execution_id,
        event_type=event_type,
        sequence_number=seq,
        event_id=f"{execution_id}-{seq}",
    )


@pytest.fixture
def server() -> Iterator[StigmerTestServer]:
    with StigmerTestServer() as s:
        yield s


def _send(server: StigmerTestServer, *events: WorkflowProgressEvent) -> None:
    with grpc.insecure_channel(server.endpoint) as channel:
        for event in events:
            Stub(channel).report_progress(
                event,
                metadata=(("authorization", f"Bearer {server.api_key}"),),
                timeout=10,
                wait_for_ready=True,
            )


def test_env_names_a_plaintext_loopback_endpoint(server: StigmerTestServer) -> None:
    """env() gives the endpoint, key and TLS switch a client process needs."""
    assert server.env() == {
        "STIGMER_SERVICE_ENDPOINT": f"127.0.0.1:{server.port}",
        "STIGMER_SERVICE_API_KEY": "test-key",
        "STIGMER_SERVICE_USE_TLS": "false",
    }
    assert server.ca_file is None
    assert server.port > 0
    assert "test-key" not in repr(server)


def test_wait_for_events_returns_once_enough_arrived(server: StigmerTestServer) -> None:
    """A waiter blocked on a count returns the events sent from another thread."""
    sender = threading.Thread(target=_send, args=(server, _event(2), _event(1)))
    sender.start()
    events = server.wait_for_events(2, timeout=30)
    sender.join(30)
    assert [e.sequence_number for e in events] == [1, 2]
    assert server.events("exec-1") == events


def test_wait_for_events_takes_a_predicate_and_execution(server: StigmerTestServer) -> None:
    """A predicate scoped to one execution sees only that execution's events."""
    _send(server, _event(1, "other"), _event(1), _event(2, event_type="workflow_completed"))
    events = server.wait_for_events(
        lambda evs: evs[-1].event_type == "workflow_completed" if evs else False,
        execution_id="exec-1",
        timeout=30,
    )
    assert [e.sequence_number for e in events] == [1, 2]


def test_wait_for_events_timeout_lists_what_was_seen(server: StigmerTestServer) -> None:
    """On timeout an AssertionError shows the expected count and the events received."""
    _send(server, _event(1))
    with pytest.raises(AssertionError, match=r"waiting for 3 event\(s\); 1 seen:\n  exec-1 #1"):
        server.wait_for_events(3, timeout=0.2)


def test_restart_keeps_port_and_events(server: StigmerTestServer) -> None:
    """stop() then restart() serves again on the same port with the same events."""
    _send(server, _event(1))
    port = server.port
    server.stop()
    server.restart()
    assert server.port == port
    _send(server, _event(2))
    assert [e.sequence_number for e in server.wait_for_events(2, timeout=30)] == [1, 2]


def test_receiver_down_then_back(server: StigmerTestServer) -> None:
    """A client waiting for readiness delivers once the stopped server comes back."""
    server.stop()
    sender = threading.Thread(target=_send, args=(server, _event(1)))
    sender.start()
    server.restart()
    assert len(server.wait_for_events(1, timeout=30)) == 1
    sender.join(30)
    assert not sender.is_alive()


def test_fail_next_and_call_counters(server: StigmerTestServer) -> None:
    """fail_next on the test server fails the next call and the counters show each call."""
    server.fail_next(1, grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(grpc.RpcError):
        _send(server, _event(1))
    _send(server, _event(1))
    assert server.faults.calls == {"report_progress": 2}
    assert len(server.events()) == 1


def test_explicit_database_survives_the_server(tmp_path: Path) -> None:
    """With db_path, a later test server on the same file sees the earlier events."""
    db = str(tmp_path / "events.db")
    with StigmerTestServer(db_path=db) as first:
        _send(first, _event(1))
    with StigmerTestServer(db_path=db) as second:
        assert [e.sequence_number for e in second.events()] == [1]


def test_batch_disabled_test_server() -> None:
    """StigmerTestServer(batch_enabled=False) emulates an older receiver."""
    with StigmerTestServer(batch_enabled=False) as server:
        assert server.faults.batch_enabled is False


def test_temporary_directory_is_removed_on_exit() -> None:
    """Leaving the context removes the temporary database."""
    with StigmerTestServer() as server:
        db = Path(server.server.store.path)
        assert db.exists()
    assert not db.parent.exists()
