"""capture_progress(): in-memory routing, deterministic mode, helpers, nesting and muting."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from otel_stigmer.decorators import task, workflow
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.sinks import MemorySink
from otel_stigmer.testing._capture import (
    DETERMINISTIC_EPOCH_MS,
    capture_active,
    capture_progress,
)

ROOT = Path(__file__).resolve().parents[1]


@task
def fetch(url: str) -> str:
    return url.upper()


@task
def parse(text: str) -> str:
    if not text:
        raise ValueError("empty document")
    return text


@workflow(name="ingest")
def ingest(urls: list[str], execution_id: str) -> None:
    for url in urls:
        with contextlib.suppress(ValueError):
            parse(fetch(url))


def test_deterministic_timeline_snapshot() -> None:
    """Deterministic mode gives a stable, readable timeline and renumbered ids and times."""
    with capture_progress(deterministic=True) as events:
        ingest(["a", ""], execution_id="wf-1")
    assert events.timeline() == textwrap.dedent(
        """\
        workflow_started     ingest                   running
          task_started       fetch                    running
          task_completed     fetch                    completed
          task_started       parse                    running
          task_completed     parse                    completed
          task_started       fetch                    running
          task_completed     fetch                    completed
          task_started       parse                    running
          task_failed        parse                    failed     ValueError: empty document
        workflow_completed   ingest                   completed"""
    )
    assert [e.event_id for e in events] == [f"evt-{n}" for n in range(1, 11)]
    assert [e.timestamp_ms - DETERMINISTIC_EPOCH_MS for e in events] == list(range(10))
    assert [e.sequence_number for e in events] == list(range(1, 11))
    assert {e.trace_id for e in events} == {"0" * 31 + "1"}
    assert events[0].span_id == "0" * 15 + "1"
    assert events[1].parent_span_id == events[0].span_id


def test_live_capture_keeps_real_ids_and_orders_sequences() -> None:
    """Without deterministic mode, ids and times are the pipeline's own, in order."""
    with capture_progress() as events:
        ingest(["a"], execution_id="wf-live")
    assert events.types() == [
        "workflow_started",
        "task_started",
        "task_completed",
        "task_started",
        "task_completed",
        "workflow_completed",
    ]
    sequences = [e.sequence_number for e in events]
    assert sequences == sorted(sequences)
    assert len({e.event_id for e in events}) == 6
    assert all(len(e.trace_id) == 32 for e in events)


def test_helpers_filter_and_render_several_executions() -> None:
    """for_execution / for_task filter; the timeline names executions when there are several."""
    with capture_progress(deterministic=True) as events:
        ingest(["a"], execution_id="wf-a")
        ingest(["b"], execution_id="wf-b")
    assert events.executions() == ["wf-a", "wf-b"]
    assert len(events.for_execution("wf-b")) == 6
    assert [e.workflow_execution_id for e in events.for_task("fetch")] == ["wf-a"] * 2 + [
        "wf-b"
    ] * 2
    lines = events.timeline(times=True).splitlines()
    assert lines[0] == "+     0ms [wf-a] workflow_started     ingest                   running"
    assert lines[-1].startswith("+    11ms [wf-b] workflow_completed")
    assert events.for_execution("wf-a").timeline().startswith("workflow_started")


def test_assert_sequence_exact_and_subsequence() -> None:
    """assert_sequence checks exactly, or in order with gaps, and explains a mismatch."""
    with capture_progress() as events:
        ingest([""], execution_id="wf-seq")
    events.assert_sequence(
        [
            "workflow_started",
            ("task_started", "fetch"),
            ("task_completed", "fetch"),
            ("task_started", "parse"),
            ("task_failed", "parse"),
            "workflow_completed",
        ]
    )
    events.assert_sequence([("task_failed", "parse"), "workflow_completed"], exact=False)
    with pytest.raises(AssertionError) as info:
        events.assert_sequence(["workflow_completed", "workflow_started"], exact=False)
    message = str(info.value)
    assert "expected: ['workflow_completed', 'workflow_started']" in message
    assert "('task_failed', 'parse')" in message
    assert "ValueError: empty document" in message
    with pytest.raises(AssertionError):
        events.assert_sequence(["workflow_started"])


def test_clear_and_no_events_rendering() -> None:
    """clear() empties the capture and restarts deterministic numbering."""
    with capture_progress(deterministic=True) as events:
        ingest(["a"], execution_id="wf-clear")
        events.clear()
        assert events.timeline() == "(no events)"
        ingest(["a"], execution_id="wf-clear")
    assert events[0].event_id == "evt-1"
    assert events[0].sequence_number == 1


def test_captures_nest_and_route_to_the_innermost() -> None:
    """Events go to the innermost active capture; none are recorded after the block."""
    with capture_progress() as outer:
        ingest([], execution_id="wf-outer")
        with capture_progress() as inner:
            ingest([], execution_id="wf-inner")
        ingest([], execution_id="wf-outer-2")
    ingest([], execution_id="wf-after")
    assert outer.executions() == ["wf-outer", "wf-outer-2"]
    assert inner.executions() == ["wf-inner"]
    assert not capture_active()


def test_live_processors_are_muted_during_a_capture() -> None:
    """A live Stigmer processor on the provider receives nothing while a capture runs."""
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415

    with capture_progress():
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    live_sink = MemorySink()
    live = StigmerSpanProcessor(live_sink)
    provider.add_span_processor(live)
    try:
        with capture_progress() as events:
            assert capture_active()
            ingest([], execution_id="wf-muted")
        assert events.types() == ["workflow_started", "workflow_completed"]
        assert live.force_flush(10_000)
        assert live_sink.events == []
        ingest([], execution_id="wf-unmuted")
        assert live.force_flush(10_000)
        assert [e.workflow_execution_id for e in live_sink.events] == ["wf-unmuted"] * 2
    finally:
        live.shutdown()


CHILD = textwrap.dedent(
    """
    import json, sys
    import otel_stigmer.testing
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from otel_stigmer.decorators import workflow
    from otel_stigmer.testing._capture import capture_progress

    imported_pytest = "pytest" in sys.modules
    had_sdk_provider = isinstance(trace.get_tracer_provider(), TracerProvider)

    @workflow(execution_id="wf-fresh")
    def wf():
        return None

    with capture_progress() as events:
        wf()
    print(json.dumps([imported_pytest, had_sdk_provider, events.types()]))
    """
)


def test_fresh_process_without_provider_or_pytest() -> None:
    """In a fresh process capture installs an SDK provider; the test kit never imports pytest."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for key in [k for k in env if k.startswith(("STIGMER_", "OTEL_"))]:
        del env[key]
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout) == [False, False, ["workflow_started", "workflow_completed"]]
