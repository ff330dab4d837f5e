"""A canary API key never shows up in reprs, exception texts or logs, even at DEBUG."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import grpc
import pytest

from otel_stigmer.client import CallbackClient
from otel_stigmer.config import ENV_API_KEY, ENV_API_KEY_FILE, ENV_ENDPOINT, StigmerConfig
from otel_stigmer.events import WorkflowProgressEvent, new_progress_event
from otel_stigmer.exceptions import CallbackError, ConfigError
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.testing import StigmerTestServer

CANARY = "canary-0b7e4c1d9a2f-secret"
FAST = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, jitter=0.0)


def _texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def _assert_clean(*texts: str) -> None:
    for text in texts:
        assert CANARY not in text
        # A prefix of the key is still a leak.
        assert CANARY[:16] not in text


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every logger, grpc's included, at DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name in ("grpc", "grpc._channel", "grpc._server", "otel_stigmer"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _event(execution_id: str = "hygiene-1") -> WorkflowProgressEvent:
    return new_progress_event(execution_id, "workflow_started", "w", "running", "m", 1)


def test_config_repr_and_str_hide_the_canary(tmp_path: Path) -> None:
    """repr/str of configs built from a key or a key file never contain the key."""
    config = StigmerConfig("localhost:9090", CANARY, use_tls=False)
    key_file = tmp_path / "key"
    key_file.write_text(CANARY + "\n")
    from_file = StigmerConfig("localhost:9090", "", use_tls=False, api_key_file=str(key_file))
    _assert_clean(repr(config), str(config), repr(from_file), str(from_file))
    with CallbackClient(config) as client:
        _assert_clean(repr(client), str(client))


def test_config_errors_never_quote_the_canary(tmp_path: Path) -> None:
    """Every key-related ConfigError leaves the key out of its text."""
    key_file = tmp_path / "key"
    key_file.write_text(CANARY)
    bad_file = tmp_path / "bad"
    bad_file.write_text(CANARY + "\x00")
    cases = [
        {ENV_ENDPOINT: "localhost:9090", ENV_API_KEY: CANARY + "\x1b"},
        {ENV_ENDPOINT: "localhost:9090", ENV_API_KEY: CANARY + " " + CANARY},
        {ENV_ENDPOINT: "localhost:9090", ENV_API_KEY: CANARY, ENV_API_KEY_FILE: str(key_file)},
        {ENV_ENDPOINT: "localhost:9090", ENV_API_KEY_FILE: str(bad_file)},
        {ENV_ENDPOINT: "example.com:9090", ENV_API_KEY: CANARY, "STIGMER_SERVICE_USE_TLS": "no"},
        {ENV_ENDPOINT: "https://x:1", ENV_API_KEY: CANARY},
        {ENV_API_KEY: CANARY},
    ]
    for env in cases:
        with pytest.raises(ConfigError) as info:
            StigmerConfig.from_env(env)
        _assert_clean(*_texts(info.value))


def test_wrong_key_call_leaks_nothing(
    debug_logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A rejected canary key appears in no error text, log record or output stream."""
    with StigmerTestServer(api_key="the-right-key") as server:
        config = StigmerConfig(server.endpoint, CANARY, use_tls=False)
        with CallbackClient(config, retry_policy=FAST) as client:
            for _ in range(2):
                with pytest.raises(CallbackError) as info:
                    client.report_progress_with_retry(_event(), max_attempts=3)
                assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
                _assert_clean(*_texts(info.value))
    warnings = [r for r in debug_logs.records if r.levelno == logging.WARNING]
    assert len([r for r in warnings if r.name == "otel_stigmer.client"]) == 1
    _assert_clean(debug_logs.text, *(r.getMessage() for r in debug_logs.records))
    out, err = capfd.readouterr()
    _assert_clean(out, err)


def test_retry_sequence_leaks_nothing(
    debug_logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Retries, a give-up and a server echoing the key leave it out of logs and errors."""
    with StigmerTestServer(api_key=CANARY) as server:
        config = StigmerConfig(server.endpoint, CANARY, use_tls=False)
        with CallbackClient(config, retry_policy=FAST) as client:
            server.fail_next(2, grpc.StatusCode.UNAVAILABLE, retry_delay=0.01)
            assert client.report_progress_with_retry(_event(), max_attempts=3).accepted
            server.fail_next(3, grpc.StatusCode.UNAVAILABLE, details=f"echo Bearer {CANARY}")
            with pytest.raises(CallbackError) as info:
                client.report_progress_with_retry(_event(), max_attempts=3)
            assert "echo Bearer ***" in info.value.details
            _assert_clean(*_texts(info.value))
    assert any("retrying in" in r.getMessage() for r in debug_logs.records)
    _assert_clean(debug_logs.text, *(r.getMessage() for r in debug_logs.records))
    out, err = capfd.readouterr()
    _assert_clean(out, err)


def test_tls_failure_leaks_nothing(
    debug_logs: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A TLS handshake failure (untrusted CA) reports UNAVAILABLE without the key."""
    with StigmerTestServer(api_key=CANARY, tls=True) as server:
        config = StigmerConfig(server.endpoint, CANARY, timeout=5.0)
        with CallbackClient(config, retry_policy=FAST) as client:
            with pytest.raises(CallbackError) as info:
                client.report_progress_with_retry(_event(), max_attempts=2)
            assert info.value.code is grpc.StatusCode.UNAVAILABLE
            _assert_clean(*_texts(info.value))
    _assert_clean(debug_logs.text, *(r.getMessage() for r in debug_logs.records))
    out, err = capfd.readouterr()
    _assert_clean(out, err)
