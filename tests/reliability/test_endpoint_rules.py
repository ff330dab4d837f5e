"""The key goes only where the endpoint says: no proxy, no redirect, no DNS-named loopback.

Each test puts an attacker on loopback (a proxy, a redirect target) and checks that the
API key never reaches it, for the library, ``otel-stigmer doctor`` and ``otel-stigmer tail``.
"""

from __future__ import annotations

import io
import json

import pytest

from otel_stigmer import CallbackClient, ConfigError, StigmerConfig, new_progress_event
from otel_stigmer.cli.doctor import run_checks
from otel_stigmer.cli.tail import tail_main
from otel_stigmer.config import is_loopback_host
from otel_stigmer.testing import StigmerTestServer

from .listeners import FakeLivePage, RecordingListener
from .support import CANARY, CANARY_FRAGMENT

PROXY_VARIABLES = ["grpc_proxy", "https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY"]


def _event(execution_id: str) -> object:
    return new_progress_event(execution_id, "workflow_started", "wf", "running", "started", 1)


@pytest.fixture
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Start from an environment without proxy settings."""
    for name in [*PROXY_VARIABLES, "no_proxy", "NO_PROXY", "GRPC_PROXY"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variable", ["grpc_proxy", "https_proxy", "http_proxy"])
def test_callback_ignores_proxy_variables(
    no_proxy_variables: pytest.MonkeyPatch, variable: str
) -> None:
    """With a proxy variable set, the callback still connects directly; the proxy sees nothing."""
    with StigmerTestServer(api_key=CANARY) as server, RecordingListener() as proxy:
        no_proxy_variables.setenv(variable, proxy.url)
        config = StigmerConfig(server.endpoint, CANARY, use_tls=False, timeout=5)
        with CallbackClient(config) as client:
            client.report_progress(_event(f"direct-{variable}"))  # type: ignore[arg-type]
        assert [e.workflow_execution_id for e in server.events()] == [f"direct-{variable}"]
        assert proxy.connections == 0
        assert CANARY_FRAGMENT.encode() not in proxy.received


def test_a_proxy_is_refused_with_plaintext() -> None:
    """STIGMER_SERVICE_ALLOW_PROXY with TLS off: ConfigError naming both variables."""
    env = {
        "STIGMER_SERVICE_ENDPOINT": "127.0.0.1:9090",
        "STIGMER_SERVICE_API_KEY": CANARY,
        "STIGMER_SERVICE_USE_TLS": "false",
        "STIGMER_SERVICE_ALLOW_PROXY": "true",
    }
    with pytest.raises(ConfigError) as caught:
        StigmerConfig.from_env(env)
    text = str(caught.value)
    assert "STIGMER_SERVICE_ALLOW_PROXY" in text
    assert "STIGMER_SERVICE_USE_TLS" in text
    assert "Fix" in text
    assert CANARY_FRAGMENT not in text


def test_an_allowed_proxy_carries_only_tls_to_the_real_endpoint(
    no_proxy_variables: pytest.MonkeyPatch,
) -> None:
    """Allowed with TLS, the proxy relays an encrypted tunnel: it never sees the key."""
    with (
        StigmerTestServer(api_key=CANARY, tls=True) as server,
        RecordingListener(tunnel=True) as proxy,
    ):
        no_proxy_variables.setenv("grpc_proxy", proxy.url)
        config = StigmerConfig(
            server.endpoint, CANARY, ca_file=server.ca_file, allow_proxy=True, timeout=10
        )
        with CallbackClient(config) as client:
            client.report_progress(_event("through-proxy"))  # type: ignore[arg-type]
        assert [e.workflow_execution_id for e in server.events()] == ["through-proxy"]
        assert proxy.connections == 1
        assert proxy.received.startswith(b"CONNECT ")
        assert CANARY_FRAGMENT.encode() not in proxy.received


def test_doctor_ignores_proxy_variables(no_proxy_variables: pytest.MonkeyPatch) -> None:
    """`otel-stigmer doctor` follows the same rule: every step passes, the proxy sees nothing."""
    with StigmerTestServer(api_key=CANARY) as server, RecordingListener() as proxy:
        for variable in ("grpc_proxy", "https_proxy", "http_proxy"):
            no_proxy_variables.setenv(variable, proxy.url)
        results = run_checks(server.env(), timeout=5)
        assert [(c.step, c.failed) for c in results] == [
            ("configuration", False),
            ("dns", False),
            ("tcp", False),
            ("tls", False),
            ("auth", False),
        ], results
        assert proxy.connections == 0
        assert "proxy from grpc_proxy ignored (STIGMER_SERVICE_ALLOW_PROXY unset)" in (
            results[0].detail
        )


@pytest.mark.parametrize("host", ["localhost.", "LOCALHOST.", "127.0.0.1.", "app.localhost"])
def test_hosts_resolved_through_dns_are_not_loopback(host: str) -> None:
    """Trailing-dot names and *.localhost reach DNS, so plaintext to them is refused."""
    assert not is_loopback_host(host)
    with pytest.raises(ConfigError, match="not a loopback address"):
        StigmerConfig(f"{host}:9090", CANARY, use_tls=False)


def _tail(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str]:
    monkeypatch.setenv("STIGMER_SERVICE_API_KEY", CANARY)
    out = io.StringIO()
    status = tail_main(["--no-follow", "--no-color", "--timeout", "5", *argv], stdout=out)
    err = capsys.readouterr().err
    assert CANARY_FRAGMENT not in out.getvalue() + err
    return status, err


@pytest.mark.parametrize(
    "url", ["http://localhost.:{port}", "http://127.0.0.1.:{port}", "http://stigmer.invalid:{port}"]
)
def test_tail_refuses_plaintext_to_a_host_that_is_not_loopback(
    no_proxy_variables: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    """`tail --url http://<not loopback>` stops before connecting, naming the fix."""
    with RecordingListener() as listener:
        status, err = _tail(no_proxy_variables, capsys, "--url", url.format(port=listener.port))
        assert status == 2
        assert "not a loopback address" in err
        assert "STIGMER_SERVICE_ALLOW_INSECURE" in err
        assert listener.connections == 0


def test_tail_never_follows_a_redirect_with_the_key(
    no_proxy_variables: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A receiver answering 302 to another host: not followed, the other host sees nothing."""
    with RecordingListener() as elsewhere:
        routes = {
            "/api/executions": (302, {"Location": f"{elsewhere.url}/steal"}, b""),
        }
        with FakeLivePage(routes) as page:
            status, err = _tail(no_proxy_variables, capsys, "--url", page.url)
        assert status == 1
        assert "redirect" in err
        assert "not followed" in err
        assert elsewhere.connections == 0


def test_tail_ignores_proxy_variables(
    no_proxy_variables: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tail` with http_proxy/https_proxy set talks to the receiver itself, not the proxy."""
    with RecordingListener() as proxy:
        for variable in ("http_proxy", "https_proxy", "HTTP_PROXY"):
            no_proxy_variables.setenv(variable, proxy.url)
        routes = {"/api/executions": (200, {"Content-Type": "application/json"}, b"[]")}
        with FakeLivePage(routes) as page:
            status, _ = _tail(no_proxy_variables, capsys, "--url", page.url)
            assert [path for path, _ in page.requests] == ["/api/executions"]
        assert status == 0
        assert proxy.connections == 0
        assert json.dumps(CANARY).strip('"').encode() not in proxy.received
