"""Every reliability test runs with a canary key and fails if it leaks into any log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from .support import CANARY, CANARY_FRAGMENT


@pytest.fixture(autouse=True)
def canary_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture every logger at DEBUG; after the test, no record may hold the canary key."""
    caplog.set_level(logging.DEBUG)
    for name in ("grpc", "otel_stigmer", "opentelemetry"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        if record.exc_info and record.exc_info[1] is not None:
            text += repr(record.exc_info[1])
        assert CANARY_FRAGMENT not in text, f"API key leaked in a log line: {record.name}"
    assert all(CANARY not in str(r.args) for r in caplog.records)
