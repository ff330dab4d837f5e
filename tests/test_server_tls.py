"""TLS on the reference receiver with certificates made by make_test_certificates."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from cryptography import x509

from otel_stigmer._proto.ai.stigmer.workflow.runner.v1 import progress_pb2_grpc
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.exceptions import ConfigError
from otel_stigmer.server import ReceiverServer
from otel_stigmer.testing import StigmerTestServer, make_test_certificates

AUTH = (("authorization", "Bearer tls-key"),)
EVENT = WorkflowProgressEvent(
    workflow_execution_id="e", event_type="workflow_started", event_id="1"
)


def test_certificates_are_written_and_valid_for_the_hosts(tmp_path: Path) -> None:
    """The files hold a CA and a server certificate for the hosts, valid about a day."""
    certs = make_test_certificates(tmp_path / "certs", hosts=("localhost", "127.0.0.1"))
    assert certs.ca_cert_path.read_bytes() == certs.ca_cert
    assert certs.server_key_path.read_bytes() == certs.server_key
    server = x509.load_pem_x509_certificate(certs.server_cert_path.read_bytes())
    ca = x509.load_pem_x509_certificate(certs.ca_cert)
    assert server.issuer == ca.subject
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(n.value) for n in names] == ["localhost", "127.0.0.1"]
    lifetime = server.not_valid_after_utc - server.not_valid_before_utc
    assert 23 * 3600 < lifetime.total_seconds() <= 25 * 3600
    assert "PRIVATE KEY" not in repr(certs)


def test_tls_client_trusting_the_ca_reaches_the_server(tmp_path: Path) -> None:
    """A client that trusts the generated CA completes the handshake and is served."""
    certs = make_test_certificates(tmp_path)
    with (
        ReceiverServer(
            api_keys=["tls-key"],
            db_path=tmp_path / "e.db",
            tls_cert=certs.server_cert,
            tls_key=certs.server_key,
        ) as server,
        grpc.secure_channel(
            server.endpoint, grpc.ssl_channel_credentials(root_certificates=certs.ca_cert)
        ) as channel,
    ):
        stub = progress_pb2_grpc.WorkflowRunnerCommandControllerStub(channel)
        assert stub.report_progress(EVENT, metadata=AUTH, timeout=10).accepted
        assert server.store.events() == [EVENT]


def test_plaintext_client_cannot_talk_to_a_tls_server() -> None:
    """A plaintext client fails against the TLS test server and nothing is stored."""
    with (
        StigmerTestServer("tls-key", tls=True) as server,
        grpc.insecure_channel(server.endpoint) as channel,
    ):
        assert server.ca_file is not None
        assert server.env()["STIGMER_SERVICE_USE_TLS"] == "true"
        assert server.env()["STIGMER_SERVICE_CA_FILE"] == server.ca_file
        stub = progress_pb2_grpc.WorkflowRunnerCommandControllerStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.report_progress(EVENT, metadata=AUTH, timeout=5)
        assert isinstance(info.value, grpc.RpcError)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert server.events() == []


def test_client_without_the_ca_is_refused() -> None:
    """A client trusting only the system roots fails the handshake with the test CA."""
    with (
        StigmerTestServer("tls-key", tls=True) as server,
        grpc.secure_channel(server.endpoint, grpc.ssl_channel_credentials()) as channel,
    ):
        stub = progress_pb2_grpc.WorkflowRunnerCommandControllerStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.report_progress(EVENT, metadata=AUTH, timeout=5)
        assert isinstance(info.value, grpc.RpcError)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE


def test_half_a_tls_configuration_is_refused(tmp_path: Path) -> None:
    """A certificate without its key (or the reverse) is a ConfigError."""
    with pytest.raises(ConfigError, match="tls_key"):
        ReceiverServer(api_keys=["k"], db_path=tmp_path / "e.db", tls_cert=b"pem")
    with pytest.raises(ConfigError, match="tls_cert"):
        ReceiverServer(api_keys=["k"], db_path=tmp_path / "e.db", tls_key=b"pem")
