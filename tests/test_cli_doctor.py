"""`otel-stigmer doctor` in a subprocess against real receivers: each failure names its step."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc

import otel_stigmer
from otel_stigmer.testing import StigmerTestServer

CANARY = "canary-doctor-key-7a41d2"
REPO_ROOT = str(Path(otel_stigmer.__file__).resolve().parent.parent)


def _doctor(env: dict[str, str]) -> tuple[int, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")}
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, full.get("PYTHONPATH")]))
    full.update(env)
    done = subprocess.run(
        [sys.executable, "-m", "otel_stigmer.cli", "doctor", "--timeout", "5"],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert CANARY not in output
    return done.returncode, done.stdout


def _outcomes(output: str) -> dict[str, str]:
    return {
        step: outcome
        for outcome, step in re.findall(r"^  (PASS|FAIL|SKIP)  (\w+)", output, re.MULTILINE)
    }


def test_healthy_plaintext_receiver_passes() -> None:
    """Against a running receiver with the right key every step passes and the exit is 0."""
    with StigmerTestServer(api_key=CANARY) as server:
        code, out = _doctor(server.env())
        assert server.events() == []
    assert code == 0, out
    assert _outcomes(out) == {
        "configuration": "PASS",
        "dns": "PASS",
        "tcp": "PASS",
        "tls": "SKIP",
        "auth": "PASS",
    }
    assert "API key set (from STIGMER_SERVICE_API_KEY)" in out
    assert "empty report_progress_batch was accepted" in out


def test_receiver_without_batches_is_probed_with_an_invalid_event() -> None:
    """An older receiver (no batch RPC) is probed with an invalid event; nothing is stored."""
    with StigmerTestServer(api_key=CANARY, batch_enabled=False) as server:
        code, out = _doctor(server.env())
        wrong_code, wrong_out = _doctor({**server.env(), "STIGMER_SERVICE_API_KEY": "nope"})
        assert server.events() == []
    assert code == 0, out
    assert "refused an empty probe event as invalid" in out
    assert wrong_code == 1
    assert _outcomes(wrong_out)["auth"] == "FAIL"


def test_wrong_key_fails_the_auth_step() -> None:
    """A key the receiver rejects fails `auth` with the variable to check."""
    with StigmerTestServer(api_key=CANARY) as server:
        code, out = _doctor({**server.env(), "STIGMER_SERVICE_API_KEY": "not-the-key"})
    assert code == 1
    assert _outcomes(out)["auth"] == "FAIL"
    assert "authentication failed: check STIGMER_SERVICE_API_KEY" in out
    assert "auth failed" in out


def test_stopped_receiver_fails_the_tcp_step() -> None:
    """A stopped receiver fails `tcp` with the fix, and the later steps are skipped."""
    with StigmerTestServer(api_key=CANARY) as server:
        env = server.env()
        server.stop()
        code, out = _doctor(env)
    assert code == 1
    assert _outcomes(out) == {
        "configuration": "PASS",
        "dns": "PASS",
        "tcp": "FAIL",
        "tls": "SKIP",
        "auth": "SKIP",
    }
    assert "fix: start the receiver" in out


def test_untrusted_certificate_fails_the_tls_step() -> None:
    """A TLS receiver whose CA is not trusted fails `tls`, naming STIGMER_SERVICE_CA_FILE."""
    with StigmerTestServer(api_key=CANARY, tls=True) as server:
        env = server.env()
        trusted_code, trusted_out = _doctor(env)
        del env["STIGMER_SERVICE_CA_FILE"]
        code, out = _doctor(env)
    assert trusted_code == 0, trusted_out
    assert re.search(r"PASS  tls\s+TLSv1\.[23], subject commonName=localhost, expires", trusted_out)
    assert code == 1
    assert _outcomes(out)["tls"] == "FAIL"
    assert "certificate not trusted" in out
    assert "set STIGMER_SERVICE_CA_FILE" in out


def test_missing_configuration_fails_first() -> None:
    """Without an endpoint the configuration step fails with the variable to set."""
    code, out = _doctor({})
    assert code == 1
    assert _outcomes(out)["configuration"] == "FAIL"
    assert "STIGMER_SERVICE_ENDPOINT is not set" in out


def test_status_protocol_is_probed_with_update_status_and_nothing_is_stored() -> None:
    """Under STIGMER_PROTOCOL=status the probe is updateStatus with an empty id: nothing stored."""
    with StigmerTestServer(api_key=CANARY, protocol="status") as server:
        code, out = _doctor(server.env())
        assert server.status_store.statuses() == {}
        assert server.status_store.updates() == []
        assert server.events() == []
        assert server.faults.calls["updateStatus"] == 1
        assert server.faults.calls.get("report_progress_batch", 0) == 0
    assert code == 0, out
    assert _outcomes(out)["auth"] == "PASS"
    assert "protocol status (updateStatus)" in out
    assert "updateStatus refused a probe with an empty execution id (INVALID_ARGUMENT)" in out


def test_status_protocol_with_a_wrong_key_fails_the_auth_step() -> None:
    """A key the receiver rejects fails `auth` under the status protocol too, naming the key."""
    with StigmerTestServer(api_key=CANARY, protocol="status") as server:
        code, out = _doctor({**server.env(), "STIGMER_SERVICE_API_KEY": "not-the-key"})
        assert server.status_store.updates() == []
    assert code == 1
    assert _outcomes(out)["auth"] == "FAIL"
    assert "authentication failed: check STIGMER_SERVICE_API_KEY (UNAUTHENTICATED" in out


def test_status_protocol_against_a_stopped_receiver_fails_the_tcp_step() -> None:
    """A stopped receiver fails `tcp` under the status protocol; `auth` is skipped."""
    with StigmerTestServer(api_key=CANARY, protocol="status") as server:
        env = server.env()
        server.stop()
        code, out = _doctor(env)
    assert code == 1
    assert _outcomes(out)["tcp"] == "FAIL"
    assert _outcomes(out)["auth"] == "SKIP"
    assert "fix: start the receiver" in out


def test_an_endpoint_without_the_protocols_rpc_names_stigmer_protocol_in_the_fix() -> None:
    """A gRPC server lacking the configured protocol's RPC fails `auth` with STIGMER_PROTOCOL."""
    bare = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = bare.add_insecure_port("127.0.0.1:0")
    bare.start()
    try:
        env = {
            "STIGMER_SERVICE_ENDPOINT": f"127.0.0.1:{port}",
            "STIGMER_SERVICE_API_KEY": CANARY,
            "STIGMER_SERVICE_USE_TLS": "false",
        }
        progress_code, progress_out = _doctor(env)
        status_code, status_out = _doctor({**env, "STIGMER_PROTOCOL": "status"})
    finally:
        bare.stop(None)
    assert (progress_code, status_code) == (1, 1)
    assert _outcomes(progress_out)["auth"] == "FAIL"
    assert "does not implement report_progress (UNIMPLEMENTED)" in progress_out
    assert "set STIGMER_PROTOCOL=status" in progress_out
    assert _outcomes(status_out)["auth"] == "FAIL"
    assert "does not implement updateStatus (UNIMPLEMENTED)" in status_out
    assert "unset STIGMER_PROTOCOL" in status_out
