"""Temporal runs reported with STIGMER_PROTOCOL=status: the status says what the events say.

A status pipeline joins the session's tracer provider next to the progress pipeline, so
each run below is reported through both protocols at once, from the same spans.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from status_oracle import expected_outcome, stored_outcome

from otel_stigmer import StigmerConfig
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.status.wire import TERMINAL_PHASES

from .conftest import Harness

pytestmark = pytest.mark.temporal


@pytest.fixture(scope="module")
def status_processor(harness: Harness) -> Iterator[StigmerSpanProcessor]:
    """A status pipeline on the harness's provider, shut down after this module."""
    config = StigmerConfig.from_env(harness.receiver.env())
    processor = StigmerSpanProcessor(config=dataclasses.replace(config, protocol="status"))
    harness.tracer_provider.add_span_processor(processor)
    yield processor
    processor.shutdown()


@pytest.mark.parametrize(
    "plan",
    [
        ["ok_step", "ok_step", "ok_step"],
        ["flaky_step"],
        ["ok_step", "fatal_step"],
    ],
    ids=["three-activities", "retried-activity", "failed-workflow"],
)
def test_status_matches_the_event_stream(
    harness: Harness, status_processor: StigmerSpanProcessor, plan: list[str]
) -> None:
    """Phase, each activity call with its final status, and error texts agree."""
    handle = harness.start(plan)
    events = harness.finish(handle)
    assert status_processor.force_flush(10_000)
    stored = harness.receiver.wait_for_status(
        lambda status: status.phase in TERMINAL_PHASES, handle.id, timeout=20
    )
    assert stored_outcome(stored) == expected_outcome(events)
    assert len(stored.tasks) == len(plan)
    assert stored.temporal_workflow_id == handle.id


def test_cancelled_run(harness: Harness, status_processor: StigmerSpanProcessor) -> None:
    """A cancelled run is CANCELLED; its activity FAILED with a ``cancelled`` error."""
    handle = harness.start(["hang_step"])
    harness.receiver.wait_for_events(
        lambda events: any(e.event_type == "task_started" for e in events),
        execution_id=handle.id,
        timeout=20,
    )
    harness.loop.run(handle.cancel())
    events = harness.finish(handle)
    assert status_processor.force_flush(10_000)
    stored = harness.receiver.wait_for_status(
        lambda status: status.phase in TERMINAL_PHASES, handle.id, timeout=20
    )
    assert stored_outcome(stored) == expected_outcome(events)
    assert stored.tasks[0].metadata["outcome"] == "cancelled"
