"""Auth failures: a wrong key never storms, never leaks; a rotated key file is picked up."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerConfig, configure
from otel_stigmer.testing import StigmerTestServer

from .support import CANARY, CANARY_FRAGMENT, FAST, run_workflows, wait_until

#: A second canary: the wrong key must not leak either.
WRONG = "wrong-canary-93be11d0c2f4-secret"


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    tp = TracerProvider()
    yield tp
    tp.shutdown()


@pytest.mark.parametrize("batch_enabled", [True, False], ids=["batch", "unary"])
def test_wrong_key_one_call_per_backoff_window_and_one_error_line(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture, batch_enabled: bool
) -> None:
    """A wrong key: one call per backoff window (>= 2 s), one ERROR line without the key."""
    with StigmerTestServer(api_key=CANARY, batch_enabled=batch_enabled) as server:
        env = {**server.env(), "STIGMER_SERVICE_API_KEY": WRONG}
        pipeline = configure(
            StigmerConfig.from_env(env), tracer_provider=provider, retry_policy=FAST
        )
        started = time.monotonic()
        run_workflows(provider.get_tracer("runner"), "denied", workflows=3, tasks=4)
        assert wait_until(lambda: pipeline.stats().unauthenticated_calls >= 1, timeout=30)
        # Observe for about one backoff window; the bound below holds for any window.
        wait_until(lambda: time.monotonic() - started >= 1.5, timeout=10)
        calls = server.faults.calls
        elapsed = time.monotonic() - started
        # Auth backoff is >= 2 s, doubling: n calls need at least 2 (n - 1) seconds.
        windows = 1 + int(elapsed // 2.0)
        if batch_enabled:
            assert 1 <= calls.get("report_progress_batch", 0) <= windows
            assert "report_progress" not in calls
        else:
            # An older receiver: one UNIMPLEMENTED batch call, then one unary call per
            # window, not one per queued event.
            assert calls.get("report_progress_batch", 0) == 1
            assert 1 <= calls.get("report_progress", 0) <= windows
        stats = pipeline.stats()
        assert stats.sent == 0
        assert not stats.dropped  # kept for when the key is fixed
        assert server.events() == []
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1
        assert "STIGMER_SERVICE_API_KEY" in errors[0].getMessage()
        for record in caplog.records:
            assert WRONG[:16] not in record.getMessage()
        pipeline.shutdown(200)


@pytest.mark.slow
def test_rotated_key_file_is_picked_up_without_restart(
    provider: TracerProvider, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A key file rewritten after UNAUTHENTICATED: the new key is used, events all arrive."""
    key_file = tmp_path / "api-key"
    key_file.write_text(WRONG + "\n")
    with StigmerTestServer(api_key=CANARY) as server:
        env = {
            "STIGMER_SERVICE_ENDPOINT": server.endpoint,
            "STIGMER_SERVICE_USE_TLS": "false",
            "STIGMER_SERVICE_API_KEY_FILE": str(key_file),
        }
        pipeline = configure(
            StigmerConfig.from_env(env), tracer_provider=provider, retry_policy=FAST
        )
        expected = run_workflows(provider.get_tracer("runner"), "rotate", workflows=2, tasks=3)
        assert wait_until(lambda: pipeline.stats().unauthenticated_calls >= 1, timeout=30)
        key_file.write_text(CANARY + "\n")  # the rotation, as a secret manager would do it
        total = sum(len(rows) for rows in expected.values())
        # Auth backoff is 2 s, then 4 s: allow for both and a loaded machine.
        server.wait_for_events(total, timeout=60)
        assert pipeline.force_flush(10_000)
        assert not pipeline.stats().dropped
        assert any("key file changed" in r.getMessage() for r in caplog.records)
        for record in caplog.records:
            assert WRONG[:16] not in record.getMessage()
            assert CANARY_FRAGMENT not in record.getMessage()
