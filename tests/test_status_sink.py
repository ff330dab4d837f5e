"""StatusSink against the reference receiver: auth, TLS, coalescing, refusals, bounded memory."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest

from otel_stigmer import StigmerConfig
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.exceptions import CallbackError, ConfigError
from otel_stigmer.protocol import sink_for
from otel_stigmer.sinks import EventSink, GrpcSink, PartialDeliveryError
from otel_stigmer.status import StatusSink
from otel_stigmer.status.wire import ExecutionPhase, WorkflowTaskStatus
from otel_stigmer.testing import StigmerTestServer

KEY = "status-sink-key-0b7e1f"


@pytest.fixture
def server() -> Iterator[StigmerTestServer]:
    with StigmerTestServer(api_key=KEY) as srv:
        yield srv


def _sink(server: StigmerTestServer, max_open_executions: int = 10_000) -> StatusSink:
    config = StigmerConfig(server.endpoint, api_key=KEY, use_tls=False, protocol="status")
    return StatusSink(config, max_open_executions=max_open_executions)


def run(
    execution_id: str, tasks: int = 2, *, end: str = "workflow_completed"
) -> list[WorkflowProgressEvent]:
    """The events of one small execution, numbered in order."""
    kinds = [("workflow_started", "")]
    for number in range(tasks):
        kinds += [("task_started", f"t{number}"), ("task_completed", f"t{number}")]
    kinds.append((end, ""))
    return [
        WorkflowProgressEvent(
            workflow_execution_id=execution_id,
            event_type=kind,
            task_name=task,
            task_instance_id=task and f"{execution_id}/{task}",
            sequence_number=index + 1,
            timestamp_ms=1_700_000_000_000 + index,
            event_id=f"{execution_id}-{index}",
        )
        for index, (kind, task) in enumerate(kinds)
    ]


def test_one_call_per_execution_per_send_with_the_whole_status(server: StigmerTestServer) -> None:
    """A batch of 6 events of one execution is one updateStatus carrying every task."""
    sink = _sink(server)
    assert isinstance(sink, EventSink)
    assert sink.send(run("one")) == []
    assert server.server.status_calls["one"] == 1
    stored = server.status("one")
    assert stored is not None
    assert stored.phase == ExecutionPhase.EXECUTION_COMPLETED
    assert [(t.task_name, t.status) for t in stored.tasks] == [
        ("t0", WorkflowTaskStatus.WORKFLOW_TASK_COMPLETED),
        ("t1", WorkflowTaskStatus.WORKFLOW_TASK_COMPLETED),
    ]
    sink.close()


def test_live_updates_keep_the_full_task_list(server: StigmerTestServer) -> None:
    """Event by event, each call carries all tasks so far: the receiver never loses one."""
    sink = _sink(server)
    for event in run("live", tasks=3):
        sink.send([event])
    stored = server.status("live")
    assert stored is not None
    assert len(stored.tasks) == 3
    # task_started and task_completed of a task change the status; each was one call.
    assert server.server.status_calls["live"] == 8
    sink.close()


def test_unchanged_status_is_not_sent_again(server: StigmerTestServer) -> None:
    """A resend of events already folded in (a retry) makes no call."""
    sink = _sink(server)
    events = run("same", end="workflow_progress")
    sink.send(events)
    sink.send(events[2:4])
    assert server.server.status_calls["same"] == 1
    assert sink.stats().unchanged == 1
    sink.close()


def test_terminal_status_acknowledged_drops_the_execution(server: StigmerTestServer) -> None:
    """Memory is released once the end is acknowledged; later events cannot undo the end."""
    sink = _sink(server)
    sink.send(run("done"))
    assert sink.stats().open_executions == 0
    late = WorkflowProgressEvent(
        workflow_execution_id="done", event_type="task_started", task_name="late", event_id="x"
    )
    assert sink.send([late]) == []
    assert sink.stats().late_events == 1
    assert server.server.status_calls["done"] == 1
    stored = server.status("done")
    assert stored is not None
    assert len(stored.tasks) == 2
    sink.close()


def test_open_executions_are_bounded(server: StigmerTestServer) -> None:
    """Past ``max_open_executions``, settled executions are forgotten, oldest first."""
    sink = _sink(server, max_open_executions=3)
    for number in range(10):
        sink.send(run(f"open-{number}", end="workflow_progress"))
    stats = sink.stats()
    assert stats.open_executions == 3
    assert stats.evicted == 7
    assert sink.status("open-9") is not None
    assert sink.status("open-0") is None
    sink.close()


def test_a_failed_call_fails_only_its_execution(server: StigmerTestServer) -> None:
    """With two executions in a batch and one call failing, the other one is delivered."""
    sink = _sink(server)
    first, second = run("a"), run("b")
    server.fail_next(1, grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(PartialDeliveryError) as caught:
        sink.send(first + second)
    delivered = caught.value.delivered_ids
    assert delivered in ({e.event_id for e in first}, {e.event_id for e in second})
    left = [e for e in first + second if e.event_id not in delivered]
    assert sink.send(left) == []
    for execution_id in ("a", "b"):
        stored = server.status(execution_id)
        assert stored is not None
        assert stored.phase == ExecutionPhase.EXECUTION_COMPLETED
    sink.close()


def test_retryable_failure_raises_with_the_code(server: StigmerTestServer) -> None:
    """A single execution whose call fails raises CallbackError for the pipeline to retry."""
    sink = _sink(server)
    server.fail_next(1, grpc.StatusCode.UNAVAILABLE, retry_delay=0.25)
    with pytest.raises(CallbackError) as caught:
        sink.send(run("r"))
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert caught.value.retry_delay == pytest.approx(0.25)
    assert "updateStatus failed" in str(caught.value)
    assert server.status("r") is None
    sink.send(run("r"))
    assert server.status("r") is not None
    sink.close()


def test_refused_status_returns_its_events(
    server: StigmerTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    """INVALID_ARGUMENT or NOT_FOUND cannot succeed later: the events come back as refused."""
    sink = _sink(server)
    nameless = run("")
    # The receiver requires an execution id.
    refused_nameless = sink.send(nameless)
    assert [r.event for r in refused_nameless] == nameless
    assert {r.reason for r in refused_nameless} == {"rejected"}
    server.fail_next(1, grpc.StatusCode.NOT_FOUND, details="WorkflowExecution not found")
    with caplog.at_level(logging.WARNING):
        events = run("unknown")
        refused = sink.send(events)
        assert [r.event for r in refused] == events
        assert {(r.reason, r.message) for r in refused} == {
            ("refused", "WorkflowExecution not found")
        }
    assert KEY not in caplog.text
    sink.close()


def test_wrong_key_is_refused_and_never_shown(server: StigmerTestServer) -> None:
    """A wrong key raises UNAUTHENTICATED; neither the error nor the sink's repr shows it."""
    wrong = "wrong-key-5e6f7a8b"
    config = StigmerConfig(server.endpoint, api_key=wrong, use_tls=False, protocol="status")
    sink = StatusSink(config)
    with pytest.raises(CallbackError) as caught:
        sink.send(run("k"))
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert wrong not in str(caught.value) + repr(sink)
    sink.close()


def test_tls_with_a_private_ca() -> None:
    """TLS is used like the progress sink: the receiver's CA from STIGMER_SERVICE_CA_FILE."""
    with StigmerTestServer(api_key=KEY, tls=True, protocol="status") as tls_server:
        config = StigmerConfig.from_env(tls_server.env())
        assert config.use_tls
        sink = sink_for(config)
        assert isinstance(sink, StatusSink)
        sink.send(run("tls"))
        assert tls_server.status("tls") is not None
        sink.close()


def test_protocol_is_chosen_by_configuration() -> None:
    """STIGMER_PROTOCOL picks the sink; progress is the default; a typo fails at start-up."""
    env = {"STIGMER_SERVICE_ENDPOINT": "localhost:9", "STIGMER_SERVICE_API_KEY": "k"}
    assert StigmerConfig.from_env(env).protocol == "progress"
    assert isinstance(sink_for(StigmerConfig.from_env(env)), GrpcSink)
    status = StigmerConfig.from_env({**env, "STIGMER_PROTOCOL": " Status "})
    assert status.protocol == "status"
    assert isinstance(sink_for(status), StatusSink)
    with pytest.raises(ConfigError) as caught:
        StigmerConfig.from_env({**env, "STIGMER_PROTOCOL": "grpc"})
    message = str(caught.value)
    assert message.startswith("STIGMER_PROTOCOL='grpc': unknown protocol")
    assert "progress" in message
    assert "status" in message


def test_oversized_status_goes_without_metadata_or_not_at_all(server: StigmerTestServer) -> None:
    """Past ``max_status_bytes`` task metadata is left out; still too large, it is refused."""
    config = StigmerConfig(server.endpoint, api_key=KEY, use_tls=False, protocol="status")
    sink = StatusSink(config, max_status_bytes=600)
    events = run("big", tasks=4, end="workflow_progress")
    for event in events:
        event.message = "m" * 100  # metadata.message of each task: too much for 600 bytes
    sink.send(events)
    stored = server.status("big")
    assert stored is not None
    assert len(stored.tasks) == 4
    assert not any(task.HasField("metadata") for task in stored.tasks)
    assert sink.stats().compacted == 1
    more = run("big", tasks=12, end="workflow_completed")[9:]  # eight more task events
    for event in more:
        event.task_name = "n" * 60
    assert [r.event for r in sink.send(more)] == more
    assert sink.stats().oversized == 1
    assert sink.stats().open_executions == 0
    assert server.server.status_calls["big"] == 1
    sink.close()
