"""The reference receiver over real loopback gRPC: storage, auth, validation, faults, restart."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from otel_stigmer._proto.ai.stigmer.workflow.runner.v1 import progress_pb2, progress_pb2_grpc
from otel_stigmer.events import ReportProgressBatchRequest, WorkflowProgressEvent
from otel_stigmer.exceptions import ConfigError
from otel_stigmer.server import ReceiverServer
from otel_stigmer.server.faults import RETRY_INFO_TRAILER

CANARY = "canary-key-7f3a9c1e5d"
AUTH = (("authorization", f"Bearer {CANARY}"),)
Stub = progress_pb2_grpc.WorkflowRunnerCommandControllerStub


def _event(execution_id: str = "exec-1", seq: int = 1, **fields: object) -> WorkflowProgressEvent:
    values: dict[str, object] = {
        "workflow_execution_id": execution_id,
        "event_type": "task_started",
        "workflow_name": "wf",
        "task_name": "t",
        "status": "running",
        "sequence_number": seq,
        "event_id": f"{execution_id}-{seq}",
    }
    values.update(fields)
    return WorkflowProgressEvent(**values)  # type: ignore[arg-type]


def _batch(*events: WorkflowProgressEvent) -> ReportProgressBatchRequest:
    return ReportProgressBatchRequest(events=list(events))


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverServer]:
    with ReceiverServer(api_keys=[CANARY, "second-key"], db_path=tmp_path / "events.db") as server:
        yield server


@pytest.fixture
def stub(receiver: ReceiverServer) -> Iterator[Stub]:
    with grpc.insecure_channel(receiver.endpoint) as channel:
        yield Stub(channel)


def _trailers(error: grpc.RpcError) -> dict[str, str | bytes]:
    assert isinstance(error, grpc.Call)
    return {item.key: item.value for item in error.trailing_metadata() or ()}


def _rpc_error(call: object) -> grpc.RpcError:
    assert isinstance(call, grpc.RpcError)
    return call


def test_unary_stores_and_flags_duplicates(receiver: ReceiverServer, stub: Stub) -> None:
    """report_progress accepts an event once and answers duplicate=True for a resend."""
    first = stub.report_progress(_event(), metadata=AUTH, timeout=10)
    again = stub.report_progress(_event(), metadata=AUTH, timeout=10)
    assert (first.accepted, first.duplicate) == (True, False)
    assert (again.accepted, again.duplicate) == (True, True)
    assert receiver.store.events() == [_event()]


def test_batch_stores_in_order_and_counts_duplicates(receiver: ReceiverServer, stub: Stub) -> None:
    """report_progress_batch answers accepted/duplicates and events read back in sequence order."""
    answer = stub.report_progress_batch(
        _batch(_event(seq=3), _event(seq=1), _event("exec-2", 1)), metadata=AUTH, timeout=10
    )
    assert (answer.accepted, answer.duplicates) == (3, 0)
    answer = stub.report_progress_batch(
        _batch(_event(seq=1), _event(seq=2)), metadata=AUTH, timeout=10
    )
    assert (answer.accepted, answer.duplicates) == (1, 1)
    assert [e.sequence_number for e in receiver.store.events("exec-1")] == [1, 2, 3]


def test_any_configured_key_is_accepted(receiver: ReceiverServer, stub: Stub) -> None:
    """Every key given to the server authenticates."""
    answer = stub.report_progress(
        _event(), metadata=(("authorization", "Bearer second-key"),), timeout=10
    )
    assert answer.accepted


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ((), "missing authorization"),
        ((("authorization", f"Bearer {CANARY}x"),), "invalid API key"),
        ((("authorization", f"Basic {CANARY}"),), "malformed authorization"),
        ((("authorization", CANARY),), "malformed authorization"),
        ((("authorization", "Bearer "),), "malformed authorization"),
    ],
)
def test_bad_credentials_are_unauthenticated_without_echo(
    receiver: ReceiverServer,
    stub: Stub,
    caplog: pytest.LogCaptureFixture,
    metadata: tuple[tuple[str, str], ...],
    reason: str,
) -> None:
    """Missing, malformed or wrong keys get UNAUTHENTICATED; the key shows in no detail or log."""
    caplog.set_level(logging.DEBUG)
    for call in (
        lambda: stub.report_progress(_event(), metadata=metadata, timeout=10),
        lambda: stub.report_progress_batch(_batch(_event()), metadata=metadata, timeout=10),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        error = _rpc_error(info.value)
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert reason in (error.details() or "")
        assert CANARY not in (error.details() or "")
    assert receiver.store.count() == 0
    assert CANARY not in caplog.text
    assert CANARY not in repr(receiver)


def test_server_refuses_to_run_without_a_key(tmp_path: Path) -> None:
    """No key, or an empty one, is a ConfigError naming the fix."""
    for keys in ([], [""], ["  "]):
        with pytest.raises(ConfigError, match="api_keys"):
            ReceiverServer(api_keys=keys, db_path=tmp_path / "x.db")


def test_unary_event_without_required_fields_is_invalid(
    receiver: ReceiverServer, stub: Stub
) -> None:
    """An event without execution id or event type gets INVALID_ARGUMENT naming the field."""
    for missing in ("workflow_execution_id", "event_type"):
        event = _event()
        event.ClearField(missing)
        with pytest.raises(grpc.RpcError) as info:
            stub.report_progress(event, metadata=AUTH, timeout=10)
        error = _rpc_error(info.value)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == f"{missing} is required"
    assert receiver.store.count() == 0


def test_one_invalid_event_rejects_the_whole_batch(receiver: ReceiverServer, stub: Stub) -> None:
    """A batch with an invalid event is refused whole, naming the event's index and field."""
    with pytest.raises(grpc.RpcError) as info:
        stub.report_progress_batch(
            _batch(_event(seq=1), _event(seq=2), _event(seq=3, event_type="")),
            metadata=AUTH,
            timeout=10,
        )
    error = _rpc_error(info.value)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "events[2].event_type is required" in (error.details() or "")
    assert receiver.store.count() == 0


def test_empty_batch_is_accepted(stub: Stub) -> None:
    """An empty batch stores nothing and succeeds."""
    answer = stub.report_progress_batch(_batch(), metadata=AUTH, timeout=10)
    assert (answer.accepted, answer.duplicates) == (0, 0)


def test_fail_next_fails_exactly_n_calls_with_retry_info(
    receiver: ReceiverServer, stub: Stub
) -> None:
    """Injected failures answer the code and a decodable RetryInfo trailer, then calls succeed."""
    receiver.faults.fail_next(2, grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=1.25)
    for _ in range(2):
        with pytest.raises(grpc.RpcError) as info:
            stub.report_progress(_event(), metadata=AUTH, timeout=10)
        error = _rpc_error(info.value)
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details() == "injected fault"
        trailers = _trailers(error)
        raw = trailers[RETRY_INFO_TRAILER]
        assert isinstance(raw, bytes)
        retry = progress_pb2.RetryInfo.FromString(raw)
        assert retry.retry_delay.ToNanoseconds() == 1_250_000_000
    assert stub.report_progress(_event(), metadata=AUTH, timeout=10).accepted
    assert receiver.store.count() == 1
    assert receiver.faults.calls == {"report_progress": 3}
    assert receiver.faults.pending == 0


def test_fail_next_without_delay_sends_no_trailer(receiver: ReceiverServer, stub: Stub) -> None:
    """Without retry_delay there is no RetryInfo trailer, and batches fail too."""
    receiver.faults.fail_next(1, grpc.StatusCode.UNAVAILABLE, details="down for a moment")
    with pytest.raises(grpc.RpcError) as info:
        stub.report_progress_batch(_batch(_event()), metadata=AUTH, timeout=10)
    error = _rpc_error(info.value)
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, "down for a moment")
    trailers = _trailers(error)
    assert RETRY_INFO_TRAILER not in trailers
    assert receiver.store.count() == 0


def test_faults_apply_only_after_authentication(receiver: ReceiverServer, stub: Stub) -> None:
    """An unauthenticated call is refused before it can use up an injected failure."""
    receiver.faults.fail_next(1, grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(grpc.RpcError) as info:
        stub.report_progress(_event(), metadata=(), timeout=10)
    assert _rpc_error(info.value).code() is grpc.StatusCode.UNAUTHENTICATED
    assert receiver.faults.pending == 1


def test_latency_delays_answers(receiver: ReceiverServer, stub: Stub) -> None:
    """set_latency holds each answer; a short client deadline then expires."""
    receiver.faults.set_latency(0.3)
    begin = time.monotonic()
    assert stub.report_progress(_event(seq=1), metadata=AUTH, timeout=10).accepted
    assert time.monotonic() - begin >= 0.3
    with pytest.raises(grpc.RpcError) as info:
        stub.report_progress(_event(seq=2), metadata=AUTH, timeout=0.05)
    assert _rpc_error(info.value).code() is grpc.StatusCode.DEADLINE_EXCEEDED
    receiver.faults.set_latency(0)


def test_batch_switch_emulates_an_older_receiver(receiver: ReceiverServer, stub: Stub) -> None:
    """With batches disabled, report_progress_batch is UNIMPLEMENTED and unary still works."""
    receiver.faults.batch_enabled = False
    with pytest.raises(grpc.RpcError) as info:
        stub.report_progress_batch(_batch(_event()), metadata=AUTH, timeout=10)
    assert _rpc_error(info.value).code() is grpc.StatusCode.UNIMPLEMENTED
    assert stub.report_progress(_event(), metadata=AUTH, timeout=10).accepted
    assert receiver.faults.calls == {"report_progress_batch": 1, "report_progress": 1}
    receiver.faults.batch_enabled = True
    answer = stub.report_progress_batch(_batch(_event(seq=2)), metadata=AUTH, timeout=10)
    assert answer.accepted == 1


def test_batch_disabled_at_construction(tmp_path: Path) -> None:
    """ReceiverServer(batch_enabled=False) answers UNIMPLEMENTED from the start."""
    with (
        ReceiverServer(api_keys=[CANARY], db_path=tmp_path / "e.db", batch_enabled=False) as rs,
        grpc.insecure_channel(rs.endpoint) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        Stub(channel).report_progress_batch(_batch(_event()), metadata=AUTH, timeout=10)
    assert _rpc_error(info.value).code() is grpc.StatusCode.UNIMPLEMENTED


def test_restart_on_the_same_port_keeps_data(tmp_path: Path) -> None:
    """After stop and start the server answers on the same port with the stored events."""
    server = ReceiverServer(api_keys=[CANARY], db_path=tmp_path / "e.db")
    server.start()
    try:
        port = server.port
        with grpc.insecure_channel(server.endpoint) as channel:
            Stub(channel).report_progress(_event(seq=1), metadata=AUTH, timeout=10)
        server.stop()
        assert not server.running
        server.start()
        assert server.port == port
        with grpc.insecure_channel(server.endpoint) as channel:
            answer = Stub(channel).report_progress(_event(seq=1), metadata=AUTH, timeout=10)
        assert answer.duplicate
        assert [e.sequence_number for e in server.store.events()] == [1]
    finally:
        server.stop()


def test_a_new_server_on_an_explicit_port_reopens_the_database(tmp_path: Path) -> None:
    """A second server on the first one's explicit port and file sees the old events."""
    with ReceiverServer(api_keys=[CANARY], db_path=tmp_path / "e.db") as first:
        port = first.port
        first.store.add([_event()])
    with ReceiverServer(api_keys=[CANARY], db_path=tmp_path / "e.db", port=port) as second:
        assert second.port == port
        with grpc.insecure_channel(second.endpoint) as channel:
            assert Stub(channel).report_progress(_event(), metadata=AUTH, timeout=10).duplicate


def test_a_busy_port_is_an_error(receiver: ReceiverServer, tmp_path: Path) -> None:
    """Binding a port another server holds raises OSError naming the address."""
    other = ReceiverServer(api_keys=[CANARY], db_path=tmp_path / "o.db", port=receiver.port)
    with pytest.raises(OSError, match=str(receiver.port)):
        other.start()
    other.stop()


def test_ipv6_loopback_endpoint_is_bracketed(tmp_path: Path) -> None:
    """On ::1 the endpoint is [::1]:PORT and clients can use it."""
    probe = socket.socket(socket.AF_INET6)
    try:
        probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    finally:
        probe.close()
    with ReceiverServer(api_keys=[CANARY], db_path=tmp_path / "e.db", host="::1") as server:
        assert server.endpoint == f"[::1]:{server.port}"
        with grpc.insecure_channel(server.endpoint) as channel:
            assert Stub(channel).report_progress(_event(), metadata=AUTH, timeout=10).accepted


def test_wildcard_host_gives_a_loopback_endpoint(tmp_path: Path) -> None:
    """A server bound to 0.0.0.0 reports a dialable 127.0.0.1 endpoint."""
    server = ReceiverServer(api_keys=[CANARY], db_path=tmp_path / "e.db", host="0.0.0.0")
    assert server.endpoint == "127.0.0.1:0"
    assert CANARY not in repr(server)
