"""The reference receiver under attack: idle calls, slow clients, key guessing.

Calls that never send a message cannot starve authenticated ones, ``serve`` stops within
seconds of SIGTERM whatever its clients do, and key guesses are throttled per address
with one summarised log line.
"""

from __future__ import annotations

import http.client
import logging
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from otel_stigmer import CallbackClient, StigmerConfig, new_progress_event
from otel_stigmer._proto.ai.stigmer.workflow.runner.v1 import progress_pb2_grpc
from otel_stigmer.events import ProgressAckResponse, WorkflowProgressEvent
from otel_stigmer.server import ReceiverServer
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.http import LiveHttpServer
from otel_stigmer.server.throttle import FailureThrottle

from .support import CANARY, CANARY_FRAGMENT, ROOT, wait_until

sys.path.insert(0, str(ROOT / "tests"))
from line_process import LineProcess, clean_env

WRONG = "wrong-guess-0123456789"
_REPORT_PROGRESS = "/ai.stigmer.workflow.runner.v1.WorkflowRunnerCommandController/report_progress"


def _event(execution_id: str) -> WorkflowProgressEvent:
    return new_progress_event(execution_id, "workflow_started", "wf", "running", "started", 1)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverServer]:
    """The reference receiver with its default 16 workers, on loopback."""
    server = ReceiverServer(api_keys=[CANARY], db_path=tmp_path / "events.db")
    with server:
        yield server


def test_calls_that_never_send_a_message_cannot_starve_authenticated_calls(
    receiver: ReceiverServer,
) -> None:
    """40 keyless or wrong-key calls that send headers and then nothing, on a receiver with
    16 workers: each is refused at once, and an authenticated call is served meanwhile."""
    never = threading.Event()

    def silence() -> Iterator[WorkflowProgressEvent]:
        never.wait()
        return
        yield  # pragma: no cover - a generator that never yields

    channel = grpc.insecure_channel(receiver.endpoint)
    try:
        idle = channel.stream_unary(
            _REPORT_PROGRESS,
            request_serializer=WorkflowProgressEvent.SerializeToString,
            response_deserializer=ProgressAckResponse.FromString,
        )
        calls = [idle.future(silence()) for _ in range(32)]
        wrong = (("authorization", f"Bearer {WRONG}"),)
        calls += [idle.future(silence(), metadata=wrong) for _ in range(8)]
        config = StigmerConfig(receiver.endpoint, CANARY, use_tls=False, timeout=5)
        with CallbackClient(config) as client:
            assert client.report_progress(_event("served")).accepted
        assert [e.workflow_execution_id for e in receiver.store.events()] == ["served"]
        for call in calls:
            with pytest.raises(grpc.RpcError):
                call.result(timeout=10)
            assert call.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        never.set()
        channel.close()


def test_grpc_key_guesses_are_throttled_with_one_summarised_log_line(
    receiver: ReceiverServer, caplog: pytest.LogCaptureFixture
) -> None:
    """300 wrong keys from one address: at most the burst (plus the refill) are compared,
    the rest are refused with RESOURCE_EXHAUSTED; rejections make at most two log lines;
    the right key gets through once the guessing stops (the client honours RetryInfo)."""
    started = time.monotonic()
    codes: list[grpc.StatusCode] = []
    with grpc.insecure_channel(receiver.endpoint) as channel:
        stub = progress_pb2_grpc.WorkflowRunnerCommandControllerStub(channel)
        for number in range(300):
            try:
                stub.report_progress(
                    _event(f"guess-{number}"),
                    metadata=(("authorization", f"Bearer {WRONG}{number}"),),
                    timeout=10,
                )
            except grpc.RpcError as error:
                codes.append(error.code())
    elapsed = time.monotonic() - started
    compared = codes.count(grpc.StatusCode.UNAUTHENTICATED)
    assert compared <= 20 + 2 * elapsed + 1, (compared, elapsed)
    assert compared + codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 300
    lines = [r for r in caplog.records if r.name == "otel_stigmer.server.auth"]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]

    config = StigmerConfig(receiver.endpoint, CANARY, use_tls=False, timeout=5)
    with CallbackClient(config) as client:
        client.report_progress_with_retry(_event("after-guessing"), max_attempts=10)
    assert [e.workflow_execution_id for e in receiver.store.events()] == ["after-guessing"]


def _login(page: LiveHttpServer, key: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", page.port, timeout=10)
    try:
        conn.request(
            "POST",
            "/login",
            body=urllib.parse.urlencode({"key": key}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        return conn.getresponse().status
    finally:
        conn.close()


def _api(page: LiveHttpServer, key: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", page.port, timeout=10)
    try:
        conn.request("GET", "/api/executions", headers={"Authorization": f"Bearer {key}"})
        return conn.getresponse().status
    finally:
        conn.close()


def test_http_key_guesses_are_throttled_with_one_summarised_log_line(
    receiver: ReceiverServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Login and bearer guesses share the address's budget: past it even the right key is
    refused unread, until the address has waited; the guesses make one log line."""
    throttle = FailureThrottle(burst=20, per_second=2.0)
    auth = BearerKeyAuth([CANARY], throttle=throttle)
    with LiveHttpServer(receiver.store, auth, port=0) as page:
        statuses = [_login(page, f"{WRONG}{n}") for n in range(60)]
        statuses += [_api(page, f"{WRONG}{n}") for n in range(60)]
        assert set(statuses) == {401}
        # The right key is not even compared now: the address spent its budget.
        assert _login(page, CANARY) == 401
        assert _api(page, CANARY) == 401
        assert wait_until(lambda: throttle.wait_time("127.0.0.1") == 0, timeout=10)
        assert _api(page, CANARY) == 200
        assert _login(page, CANARY) == 303
    lines = [r for r in caplog.records if r.name == "otel_stigmer.server.auth"]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]


def test_failure_throttle_budget_refill_and_log_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Unit: a burst per address, refilled over time; other addresses unaffected; keyless
    calls spend nothing; one line per interval, summing up what it held."""
    now = [100.0]
    throttle = FailureThrottle(burst=3, per_second=1.0, log_interval=10.0, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.wait_time("10.0.0.1") == 0
        throttle.record_failure("10.0.0.1", "invalid API key")
    assert throttle.wait_time("10.0.0.1") == pytest.approx(1.0)
    assert throttle.wait_time("10.0.0.2") == 0
    for _ in range(50):
        throttle.record_failure("10.0.0.3", "missing authorization", guess=False)
    assert throttle.wait_time("10.0.0.3") == 0
    now[0] += 1.0
    assert throttle.wait_time("10.0.0.1") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["rejected a call from 10.0.0.1: invalid API key"]
    now[0] += 10.0
    throttle.flush_log()
    assert len(caplog.records) == 2
    assert "rejected 52 calls" in caplog.records[1].getMessage()
    assert "refused 1 more" in caplog.records[1].getMessage()
    assert "from 2 address(es)" in caplog.records[1].getMessage()
    assert all(r.levelno == logging.WARNING for r in caplog.records)


LISTENING = re.compile(r"receiver listening on (\S+) ")
LIVE_PAGE = re.compile(r"live page on http://[^:]+:(\d+)/")


def _trickle(port: int, stop: threading.Event, payload: bytes, sent: list[int]) -> None:
    """Send ``payload`` one byte at a time, slowly, until ``stop``: a slow-loris client."""
    index = len(sent)
    sent.append(0)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for byte in payload:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
            sent[index] += 1
            if stop.wait(0.2):  # the pace of the attack, not a synchronisation
                return
        stop.wait()


@pytest.mark.slow
def test_sigterm_stops_serve_whatever_the_clients_do(tmp_path: Path) -> None:
    """Clients trickling headers to both ports and idle connections: SIGTERM still ends
    `serve` in about a second (the test allows 10 s; before, it never ended)."""
    serve = LineProcess(
        [
            sys.executable,
            "-m",
            "otel_stigmer.server",
            "--port",
            "0",
            "--http-port",
            "0",
            "--db",
            str(tmp_path / "events.db"),
        ],
        clean_env(STIGMER_SERVER_API_KEYS=CANARY),
        read="stderr",
    )
    stop = threading.Event()
    clients: list[threading.Thread] = []
    idle: list[socket.socket] = []
    try:
        grpc_port = int(serve.wait_for(LISTENING).group(1).rsplit(":", 1)[1])
        page = LIVE_PAGE.search(serve.text())
        assert page is not None, serve.text()
        http_port = int(page.group(1))
        header = b"GET /api/executions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
        preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 10_000
        sent: list[int] = []
        for port, payload in [(http_port, header)] * 3 + [(grpc_port, preface)] * 3:
            thread = threading.Thread(
                target=_trickle, args=(port, stop, payload, sent), daemon=True
            )
            thread.start()
            clients.append(thread)
        idle = [socket.create_connection(("127.0.0.1", p)) for p in (http_port, grpc_port)]
        # Every attacker is connected and has been trickling for a while before the signal.
        assert wait_until(lambda: len(sent) == 6 and min(sent) >= 5, timeout=30), sent
        serve.proc.send_signal(signal.SIGTERM)
        try:
            code = serve.proc.wait(timeout=10)
        except Exception:  # still running: the failure this test guards against
            code = None
        assert code == 0, "serve did not stop within 10 s of SIGTERM"
    finally:
        stop.set()
        for sock in idle:
            sock.close()
        serve.close()
    assert CANARY_FRAGMENT not in serve.text()
