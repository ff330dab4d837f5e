"""Every reliability test runs with a canary key and fails if it leaks into any log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from .support import CANARY_FRAGMENT


@pytest.fixture(autouse=True)
def canary_never_logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Capture every logger at DEBUG; after the test, no record may hold the canary key."""
    caplog.set_level(logging.DEBUG)
    for name in ("grpc", "otel_stigmer", "opentelemetry"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog
    # At teardown ``caplog.records`` holds only this phase so far; check every phase.
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    for record in records:
        text = record.getMessage() + str(record.args) + (record.exc_text or "")
        if record.exc_info and record.exc_info[1] is not None:
            text += repr(record.exc_info[1])
        assert CANARY_FRAGMENT not in text, f"API key leaked in a log line: {record.name}"
