"""CallbackClient against the real reference receiver over loopback gRPC."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from otel_stigmer._proto.ai.stigmer.workflow.runner.v1 import progress_pb2_grpc
from otel_stigmer.client import CallbackClient, suppress_instrumentation
from otel_stigmer.config import StigmerConfig
from otel_stigmer.events import WorkflowProgressEvent, new_progress_event, new_task_progress_event
from otel_stigmer.exceptions import CallbackError, ConfigError
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.server.app import ReceiverServer
from otel_stigmer.testing import StigmerTestServer

KEY = "client-test-key-3f9a"
FAST = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, jitter=0.0)


def _event(seq: int = 1, execution_id: str = "wfexec-123") -> WorkflowProgressEvent:
    return new_progress_event(
        execution_id, "workflow_started", "my-workflow", "running", "started", seq
    )


@pytest.fixture(scope="module")
def server() -> Iterator[StigmerTestServer]:
    """One plaintext receiver for the module; tests use distinct execution ids."""
    with StigmerTestServer(api_key=KEY) as srv:
        yield srv


@pytest.fixture
def fresh(server: StigmerTestServer) -> StigmerTestServer:
    """The shared receiver with no pending faults or latency and zeroed call counters."""
    server.faults.clear()
    server.faults.reset_calls()
    server.faults.batch_enabled = True
    return server


def _client(server: StigmerTestServer, key: str = KEY, **kwargs: object) -> CallbackClient:
    config = StigmerConfig(server.endpoint, key, use_tls=False, timeout=5.0)
    return CallbackClient(config, retry_policy=FAST, **kwargs)  # type: ignore[arg-type]


def test_plaintext_round_trip(fresh: StigmerTestServer) -> None:
    """An event sent in plaintext is acknowledged and stored field for field."""
    event = _event(execution_id="plain-1")
    with _client(fresh) as client:
        ack = client.report_progress(event)
    assert ack.accepted
    assert not ack.duplicate
    assert fresh.wait_for_events(1, execution_id="plain-1") == [event]


def test_config_from_server_env_round_trip(fresh: StigmerTestServer) -> None:
    """The receiver's env() is enough for StigmerConfig.from_env to reach it."""
    config = StigmerConfig.from_env(fresh.env())
    with CallbackClient(config) as client:
        assert client.report_progress(_event(execution_id="env-1")).accepted
    assert len(fresh.events("env-1")) == 1


def test_tls_round_trip_with_configured_ca() -> None:
    """Over TLS the client trusts the configured CA and the event is stored."""
    with StigmerTestServer(api_key=KEY, tls=True) as srv:
        config = StigmerConfig.from_env(srv.env())
        assert config.use_tls
        assert config.ca_file == srv.ca_file
        event = new_task_progress_event(
            "tls-1", "task_started", "my-workflow", "process-data", "running", "go", 2
        )
        with CallbackClient(config) as client:
            assert client.report_progress(event).accepted
        assert srv.wait_for_events(1, execution_id="tls-1") == [event]


def test_tls_without_the_ca_fails_unavailable() -> None:
    """Against a private CA, system roots reject the server: UNAVAILABLE, nothing stored."""
    with StigmerTestServer(api_key=KEY, tls=True) as srv:
        config = StigmerConfig(srv.endpoint, KEY, timeout=5.0)
        with CallbackClient(config) as client, pytest.raises(CallbackError) as info:
            client.report_progress(_event(execution_id="tls-2"))
        assert info.value.code is grpc.StatusCode.UNAVAILABLE
        assert srv.events() == []


def test_plaintext_client_to_tls_server_fails(tmp_path: Path) -> None:
    """A plaintext client cannot talk to a TLS receiver; the failure is a CallbackError."""
    with StigmerTestServer(api_key=KEY, tls=True) as srv:
        config = StigmerConfig(srv.endpoint, KEY, use_tls=False, timeout=2.0)
        with CallbackClient(config) as client, pytest.raises(CallbackError) as info:
            client.report_progress(_event())
        assert info.value.code is grpc.StatusCode.UNAVAILABLE


def test_wrong_key_is_rejected_and_not_retried(fresh: StigmerTestServer) -> None:
    """A wrong key gives UNAUTHENTICATED after exactly one call, even with retries allowed."""
    with _client(fresh, key="wrong-key") as client, pytest.raises(CallbackError) as info:
        client.report_progress_with_retry(_event(execution_id="auth-1"), max_attempts=5)
    assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
    assert "wrong-key" not in str(info.value)
    assert fresh.faults.calls.get("report_progress") == 1
    assert fresh.events("auth-1") == []


def test_missing_key_is_rejected(fresh: StigmerTestServer) -> None:
    """A call without authorization metadata is UNAUTHENTICATED; the config refuses no key."""
    with grpc.insecure_channel(fresh.endpoint) as channel:
        stub = progress_pb2_grpc.WorkflowRunnerCommandControllerStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.report_progress(_event(execution_id="auth-2"), timeout=5.0)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(ConfigError, match="STIGMER_SERVICE_API_KEY"):
        StigmerConfig(fresh.endpoint, "", use_tls=False)
    assert fresh.events("auth-2") == []


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT]
)
def test_non_retryable_codes_fail_at_once(fresh: StigmerTestServer, code: grpc.StatusCode) -> None:
    """PERMISSION_DENIED and INVALID_ARGUMENT are raised after one call."""
    fresh.fail_next(3, code)
    with _client(fresh) as client, pytest.raises(CallbackError) as info:
        client.report_progress_with_retry(_event(), max_attempts=3)
    assert info.value.code is code
    assert fresh.faults.calls.get("report_progress") == 1


def test_retry_recovers_from_two_unavailable(fresh: StigmerTestServer) -> None:
    """Two UNAVAILABLE answers, then success: the event is stored exactly once."""
    fresh.fail_next(2, grpc.StatusCode.UNAVAILABLE)
    event = _event(execution_id="retry-1")
    with _client(fresh) as client:
        ack = client.report_progress_with_retry(event, max_attempts=3)
    assert ack.accepted
    assert fresh.faults.calls.get("report_progress") == 3
    assert fresh.wait_for_events(1, execution_id="retry-1") == [event]


def test_retry_gives_up_after_max_attempts(fresh: StigmerTestServer) -> None:
    """When every attempt fails, the last CallbackError is raised after max_attempts calls."""
    fresh.fail_next(5, grpc.StatusCode.ABORTED)
    with _client(fresh) as client, pytest.raises(CallbackError) as info:
        client.report_progress_with_retry(_event(execution_id="retry-2"), max_attempts=3)
    assert info.value.code is grpc.StatusCode.ABORTED
    assert fresh.faults.calls.get("report_progress") == 3
    assert fresh.events("retry-2") == []


def test_server_retry_delay_is_read_and_honoured(fresh: StigmerTestServer) -> None:
    """RetryInfo in the trailer reaches CallbackError.retry_delay and lengthens the backoff."""
    fresh.fail_next(1, grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=0.4)
    with _client(fresh) as client:
        with pytest.raises(CallbackError) as info:
            client.report_progress(_event(execution_id="delay-1"))
        assert info.value.retry_delay == pytest.approx(0.4)
        fresh.fail_next(1, grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=0.4)
        started = time.monotonic()
        client.report_progress_with_retry(_event(execution_id="delay-1"), max_attempts=2)
        assert time.monotonic() - started >= 0.4
    assert len(fresh.events("delay-1")) == 1


def test_stop_event_cuts_the_backoff_short(fresh: StigmerTestServer) -> None:
    """A set stop event ends a long server-requested backoff at once and re-raises."""
    fresh.fail_next(1, grpc.StatusCode.UNAVAILABLE, retry_delay=30.0)
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    with _client(fresh) as client, pytest.raises(CallbackError) as info:
        client.report_progress_with_retry(_event(), max_attempts=3, stop=stop)
    assert info.value.code is grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 10.0
    assert fresh.faults.calls.get("report_progress") == 1


def test_close_cuts_a_running_backoff_short(fresh: StigmerTestServer) -> None:
    """close() from another thread ends a 30 s backoff of report_progress_with_retry."""
    fresh.fail_next(1, grpc.StatusCode.UNAVAILABLE, retry_delay=30.0)
    client = _client(fresh)
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            client.report_progress_with_retry(_event(), max_attempts=3)
        except CallbackError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=send)
    started = time.monotonic()
    worker.start()
    deadline = time.monotonic() + 10.0
    while fresh.faults.calls.get("report_progress", 0) < 1 and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    client.close()
    worker.join(timeout=10.0)
    assert not worker.is_alive()
    assert time.monotonic() - started < 10.0
    assert len(outcome) == 1


def test_duplicate_event_id_is_stored_once(fresh: StigmerTestServer) -> None:
    """Sending the same event twice stores it once and acknowledges the repeat as duplicate."""
    event = _event(execution_id="dup-1")
    with _client(fresh) as client:
        assert not client.report_progress(event).duplicate
        assert client.report_progress(event).duplicate
    assert fresh.events("dup-1") == [event]


def test_deadline_exceeded_on_slow_receiver() -> None:
    """A per-call timeout shorter than the receiver's latency gives DEADLINE_EXCEEDED."""
    # A receiver of its own: the delayed call would otherwise take a fault meant for a later test.
    with StigmerTestServer(api_key=KEY) as slow:
        slow.set_latency(2.0)
        with _client(slow) as client, pytest.raises(CallbackError) as info:
            client.report_progress(_event(execution_id="slow-1"), timeout=0.2)
    assert info.value.code is grpc.StatusCode.DEADLINE_EXCEEDED


def test_batch_is_stored_in_order(fresh: StigmerTestServer) -> None:
    """report_progress_batch stores every event of the batch, in order."""
    events = [_event(seq, execution_id="batch-1") for seq in range(1, 6)]
    with _client(fresh) as client:
        response = client.report_progress_batch(events)
    assert (response.accepted, response.duplicates) == (5, 0)
    assert fresh.events("batch-1") == events


def test_batch_unimplemented_is_reported(fresh: StigmerTestServer) -> None:
    """An older receiver without the batch RPC yields CallbackError(UNIMPLEMENTED)."""
    fresh.faults.batch_enabled = False
    with _client(fresh) as client, pytest.raises(CallbackError) as info:
        client.report_progress_batch([_event(execution_id="batch-2")])
    assert info.value.code is grpc.StatusCode.UNIMPLEMENTED
    assert fresh.events("batch-2") == []


def test_many_delivers_all_in_input_order(fresh: StigmerTestServer) -> None:
    """Pipelined unary calls deliver every event; results line up with the input."""
    events = [_event(seq, execution_id="many-1") for seq in range(1, 41)]
    with _client(fresh) as client:
        results = client.report_progress_many(events, max_in_flight=8)
    assert results == [None] * 40
    assert fresh.wait_for_events(40, execution_id="many-1") == events


def test_many_reports_failures_per_event(fresh: StigmerTestServer) -> None:
    """With one call in flight, the two injected failures hit the first two events only."""
    fresh.fail_next(2, grpc.StatusCode.UNAVAILABLE)
    events = [_event(seq, execution_id="many-2") for seq in range(1, 6)]
    with _client(fresh) as client:
        results = client.report_progress_many(events, max_in_flight=1)
    codes = [None if r is None else r.code for r in results]
    assert codes == [grpc.StatusCode.UNAVAILABLE] * 2 + [None] * 3
    assert fresh.events("many-2") == events[2:]


def test_rotated_key_file_is_picked_up(fresh: StigmerTestServer, tmp_path: Path) -> None:
    """After UNAUTHENTICATED the key file is re-read, so the next call uses the rotated key."""
    key_file = tmp_path / "api-key"
    key_file.write_text("old-key\n")
    config = StigmerConfig(fresh.endpoint, "", use_tls=False, api_key_file=str(key_file))
    with CallbackClient(config, retry_policy=FAST) as client:
        key_file.write_text(KEY + "\n")
        with pytest.raises(CallbackError) as info:
            client.report_progress(_event(execution_id="rotate-1"))
        assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
        assert client.report_progress(_event(execution_id="rotate-1")).accepted
    assert len(fresh.events("rotate-1")) == 1


def test_concurrent_calls_share_one_client(fresh: StigmerTestServer) -> None:
    """Eight threads sending through one client deliver every event."""
    with _client(fresh) as client:

        def send(worker: int) -> None:
            for seq in range(1, 16):
                client.report_progress(_event(seq, execution_id=f"conc-{worker}"))

        threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60.0)
    assert all(len(fresh.events(f"conc-{w}")) == 15 for w in range(8))


def test_closed_client_raises_cancelled(fresh: StigmerTestServer) -> None:
    """After close() (idempotent) calls fail with CANCELLED instead of hanging."""
    client = _client(fresh)
    client.close()
    client.close()
    with pytest.raises(CallbackError) as info:
        client.report_progress(_event())
    assert info.value.code is grpc.StatusCode.CANCELLED
    results = client.report_progress_many([_event(), _event()])
    assert [r.code if r else None for r in results] == [grpc.StatusCode.CANCELLED] * 2
    assert not client.retry_policy.is_retryable(info.value.code)


def test_unreachable_receiver_is_unavailable(fresh: StigmerTestServer) -> None:
    """A stopped receiver yields UNAVAILABLE, and the client works again after a restart."""
    # gRPC's reconnect backoff follows the retry policy, so retries reach the receiver again.
    patient = RetryPolicy(initial_backoff=0.1, max_backoff=0.5)
    config = StigmerConfig(fresh.endpoint, KEY, use_tls=False, timeout=5.0)
    with CallbackClient(config, retry_policy=patient) as client:
        fresh.stop(grace=0)
        try:
            with pytest.raises(CallbackError) as info:
                client.report_progress(_event(execution_id="down-1"))
            assert info.value.code is grpc.StatusCode.UNAVAILABLE
        finally:
            fresh.restart()
        ack = client.report_progress_with_retry(_event(execution_id="down-1"), max_attempts=30)
    assert ack.accepted


def test_instrumentation_is_suppressed_inside_our_calls() -> None:
    """suppress_instrumentation() switches OTel instrumentation off only within the block."""
    assert is_instrumentation_enabled()
    with suppress_instrumentation():
        assert not is_instrumentation_enabled()
    assert is_instrumentation_enabled()


def test_ipv6_loopback_endpoint(tmp_path: Path) -> None:
    """A bracketed IPv6 endpoint from the environment reaches a receiver bound to ::1."""
    receiver = ReceiverServer(api_keys=[KEY], db_path=tmp_path / "events.db", host="::1")
    with receiver:
        assert receiver.endpoint.startswith("[::1]:")
        config = StigmerConfig.from_env(
            {
                "STIGMER_SERVICE_ENDPOINT": receiver.endpoint,
                "STIGMER_SERVICE_API_KEY": KEY,
                "STIGMER_SERVICE_USE_TLS": "false",
            }
        )
        assert config.host == "::1"
        event = _event(execution_id="v6-1")
        with CallbackClient(config) as client:
            assert client.report_progress(event).accepted
        assert receiver.store.events("v6-1") == [event]
