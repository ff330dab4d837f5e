"""`otel-stigmer serve`: start, serve, stop on signals, and refuse to start without a key."""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from line_process import LineProcess, clean_env

from otel_stigmer._proto.ai.stigmer.workflow.runner.v1 import progress_pb2_grpc
from otel_stigmer.events import ReportProgressBatchRequest, WorkflowProgressEvent
from otel_stigmer.exceptions import ConfigError
from otel_stigmer.server import ReceiverServer
from otel_stigmer.server.cli import resolve_api_keys, serve_main
from otel_stigmer.server.store import EventStore
from otel_stigmer.testing import make_test_certificates

CANARY = "canary-serve-key-91b2c4"
LISTENING = re.compile(r"receiver listening on (\S+) ")


def _serve_process(args: list[str], env: dict[str, str]) -> LineProcess:
    """A ``python -m otel_stigmer.server`` subprocess whose stderr is read line by line."""
    return LineProcess([sys.executable, "-m", "otel_stigmer.server", *args], env, read="stderr")


_env = clean_env


@pytest.fixture
def serve_factory() -> Iterator[list[LineProcess]]:
    started: list[LineProcess] = []
    yield started
    for s in started:
        s.close()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_accepts_events_and_stops_on_signal(
    tmp_path: Path, serve_factory: list[LineProcess], stop_signal: signal.Signals
) -> None:
    """The serve command logs its endpoint, stores an event, and exits 0 on SIGTERM/SIGINT."""
    db = tmp_path / "events.db"
    serve = _serve_process(
        ["--port", "0", "--db", str(db)], _env(STIGMER_SERVER_API_KEYS=f"other,{CANARY}")
    )
    serve_factory.append(serve)
    endpoint = serve.wait_for(LISTENING).group(1)
    assert endpoint.startswith("127.0.0.1:")
    event = WorkflowProgressEvent(
        workflow_execution_id="exec-cli", event_type="workflow_started", event_id="cli-1"
    )
    with grpc.insecure_channel(endpoint) as channel:
        answer = progress_pb2_grpc.WorkflowRunnerCommandControllerStub(channel).report_progress(
            event, metadata=(("authorization", f"Bearer {CANARY}"),), timeout=10
        )
    assert answer.accepted
    serve.proc.send_signal(stop_signal)
    assert serve.proc.wait(timeout=30) == 0
    output = serve.text()
    assert "stopping receiver" in output
    assert CANARY not in output
    store = EventStore(db)
    try:
        assert store.events() == [event]
    finally:
        store.close()


def test_serve_falls_back_to_the_client_key_variable(
    tmp_path: Path, serve_factory: list[LineProcess]
) -> None:
    """With only STIGMER_SERVICE_API_KEY set, the server starts and accepts that key."""
    serve = _serve_process(
        ["--port", "0", "--db", str(tmp_path / "e.db")], _env(STIGMER_SERVICE_API_KEY=CANARY)
    )
    serve_factory.append(serve)
    endpoint = serve.wait_for(LISTENING).group(1)
    event = WorkflowProgressEvent(workflow_execution_id="x", event_type="workflow_started")
    with grpc.insecure_channel(endpoint) as channel:
        stub = progress_pb2_grpc.WorkflowRunnerCommandControllerStub(channel)
        assert stub.report_progress(
            event, metadata=(("authorization", f"Bearer {CANARY}"),), timeout=10
        ).accepted
    serve.proc.terminate()
    assert serve.proc.wait(timeout=30) == 0
    assert CANARY not in serve.text()


def test_serve_with_tls_and_without_batches(
    tmp_path: Path, serve_factory: list[LineProcess]
) -> None:
    """--tls-cert/--tls-key serve TLS to a client trusting the CA; --no-batch disables batches."""
    certs = make_test_certificates(tmp_path / "certs")
    args = ["--port", "0", "--db", str(tmp_path / "e.db"), "--no-batch"]
    args += ["--tls-cert", str(certs.server_cert_path), "--tls-key", str(certs.server_key_path)]
    serve = _serve_process(args, _env(STIGMER_SERVER_API_KEYS=CANARY))
    serve_factory.append(serve)
    endpoint = serve.wait_for(re.compile(r"receiver listening on (\S+) \(tls")).group(1)
    event = WorkflowProgressEvent(workflow_execution_id="x", event_type="workflow_started")
    auth = (("authorization", f"Bearer {CANARY}"),)
    credentials = grpc.ssl_channel_credentials(root_certificates=certs.ca_cert)
    with grpc.secure_channel(endpoint, credentials) as channel:
        stub = progress_pb2_grpc.WorkflowRunnerCommandControllerStub(channel)
        assert stub.report_progress(event, metadata=auth, timeout=10).accepted
        with pytest.raises(grpc.RpcError) as info:
            stub.report_progress_batch(
                ReportProgressBatchRequest(events=[event]), metadata=auth, timeout=10
            )
    assert isinstance(info.value, grpc.Call)
    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    serve.proc.terminate()
    assert serve.proc.wait(timeout=30) == 0


def test_serve_refuses_to_start_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without any key the command exits 2 naming --api-key and the variables."""
    for name in ("STIGMER_SERVER_API_KEYS", "STIGMER_SERVICE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert serve_main(["--port", "0", "--db", str(tmp_path / "e.db")]) == 2
    err = capsys.readouterr().err
    assert "--api-key" in err
    assert "STIGMER_SERVER_API_KEYS" in err
    assert "STIGMER_SERVICE_API_KEY" in err
    assert not (tmp_path / "e.db").exists()


def test_serve_refuses_half_a_tls_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--tls-cert without --tls-key (or an unreadable file) exits 2 with a clear message."""
    argv = ["--port", "0", "--db", str(tmp_path / "e.db"), "--api-key", CANARY]
    assert serve_main([*argv, "--tls-cert", str(tmp_path / "c.pem")]) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err
    missing = ["--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "k.pem")]
    assert serve_main([*argv, *missing]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err
    assert CANARY not in err


def test_serve_reports_a_busy_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A port already in use makes the command exit 1 naming the address."""
    with ReceiverServer(api_keys=["k"], db_path=tmp_path / "a.db") as busy:
        code = serve_main(
            ["--port", str(busy.port), "--db", str(tmp_path / "b.db"), "--api-key", "k"]
        )
    assert code == 1
    assert f"127.0.0.1:{busy.port}" in capsys.readouterr().err


def test_key_resolution_order() -> None:
    """Flags win over STIGMER_SERVER_API_KEYS, which wins over STIGMER_SERVICE_API_KEY."""
    env = {"STIGMER_SERVER_API_KEYS": " a, b ,", "STIGMER_SERVICE_API_KEY": "c"}
    assert resolve_api_keys(["f"], env) == ["f"]
    assert resolve_api_keys([], env) == ["a", "b"]
    assert resolve_api_keys([], {"STIGMER_SERVICE_API_KEY": " c\n"}) == ["c"]
    with pytest.raises(ConfigError, match="--api-key"):
        resolve_api_keys([" "], {"STIGMER_SERVER_API_KEYS": ","})
