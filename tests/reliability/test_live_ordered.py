"""Live span events and arrival in sequence order, on the reference and an upstream receiver."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from benchmarks.upstream import Arrival, UpstreamReceiver
from otel_stigmer import StigmerConfig, StigmerSpanExporter, configure
from otel_stigmer import conventions as conv
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.testing import StigmerTestServer, capture_progress

KEY = "live-ordered-key-41b7"
ROOT = Path(__file__).resolve().parents[2]
#: Generous slack over a deadline: a loaded CI machine, thread wake-ups.
SLACK = 1.5
FAST = RetryPolicy(initial_backoff=0.01, max_backoff=0.1, auth_initial_backoff=0.5)


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    tp = TracerProvider()
    yield tp
    tp.shutdown()


@pytest.fixture
def server() -> Iterator[StigmerTestServer]:
    with StigmerTestServer(api_key=KEY) as srv:
        yield srv


def _types(server: StigmerTestServer, execution_id: str) -> list[tuple[str, int]]:
    return [(e.event_type, e.task_progress) for e in server.events(execution_id)]


def test_task_progress_is_stored_while_the_task_runs(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """Each progress event is stored before the next is added and before the task ends."""
    pipeline = configure(StigmerConfig.from_env(server.env()), tracer_provider=provider)
    tracer = provider.get_tracer("runner")
    with (
        tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "live-t"}),
        tracer.start_as_current_span("fetch", attributes={conv.TASK_NAME: "fetch"}) as span,
    ):
        for count, percent in enumerate((10, 50, 90), start=1):
            span.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: percent})
            seen = server.wait_for_events(2 + count, execution_id="live-t")
            assert seen[-1].event_type == "task_progress"
            assert seen[-1].task_progress == percent
    assert pipeline.force_flush(10_000)
    events = server.events("live-t")
    assert [(e.event_type, e.task_progress) for e in events] == [
        ("workflow_started", 0),
        ("task_started", 0),
        ("task_progress", 10),
        ("task_progress", 50),
        ("task_progress", 90),
        ("task_completed", 0),
        ("workflow_completed", 0),
    ]
    numbers = [e.sequence_number for e in events]
    assert all(a < b for a, b in itertools.pairwise(numbers))


def test_workflow_progress_pause_and_resume_are_live_and_in_place(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """Workflow-level span events are stored when added, numbered before later tasks."""
    pipeline = configure(StigmerConfig.from_env(server.env()), tracer_provider=provider)
    tracer = provider.get_tracer("runner")
    with tracer.start_as_current_span(
        "wf", attributes={conv.WORKFLOW_EXECUTION_ID: "live-w"}
    ) as workflow:
        workflow.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: 20})
        server.wait_for_events(2, execution_id="live-w")
        workflow.add_event("workflow_paused", {conv.MESSAGE: "waiting for approval"})
        assert server.wait_for_events(3, execution_id="live-w")[-1].status == "paused"
        workflow.add_event("workflow_resumed")
        server.wait_for_events(4, execution_id="live-w")
        with tracer.start_as_current_span("step", attributes={conv.TASK_NAME: "step"}):
            pass
        workflow.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: 100})
        server.wait_for_events(7, execution_id="live-w")
    assert pipeline.force_flush(10_000)
    assert _types(server, "live-w") == [
        ("workflow_started", 0),
        ("workflow_progress", 20),
        ("workflow_paused", 0),
        ("workflow_resumed", 0),
        ("task_started", 0),
        ("task_completed", 0),
        ("workflow_progress", 100),
        ("workflow_completed", 0),
    ]


def test_capture_shows_span_events_where_they_happened() -> None:
    """In a test capture a workflow's progress comes before the tasks that followed it."""
    from opentelemetry import trace  # noqa: PLC0415

    with capture_progress() as events:
        tracer = trace.get_tracer("runner")
        with tracer.start_as_current_span(
            "wf", attributes={conv.WORKFLOW_EXECUTION_ID: "cap-live"}
        ) as workflow:
            workflow.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: 5})
            with tracer.start_as_current_span("t", attributes={conv.TASK_NAME: "t"}):
                pass
    events.assert_sequence(
        [
            "workflow_started",
            "workflow_progress",
            "task_started",
            "task_completed",
            "workflow_completed",
        ]
    )


def test_exporter_force_flush_returns_with_the_events_stored(server: StigmerTestServer) -> None:
    """On the exporter path the provider's force_flush returns once the events are stored."""
    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(StigmerSpanExporter(StigmerConfig.from_env(server.env())))
    )
    tracer = provider.get_tracer("runner")
    workflow = {conv.WORKFLOW_EXECUTION_ID: "exp-ff"}
    # Without the live processor a task span carries its execution id itself.
    task = {**workflow, conv.TASK_NAME: "t"}
    with (
        tracer.start_as_current_span("wf", attributes=workflow),
        tracer.start_as_current_span("t", attributes=task) as span,
    ):
        span.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: 50})
    assert provider.force_flush()
    assert _types(server, "exp-ff") == [
        ("workflow_started", 0),
        ("task_started", 0),
        ("task_progress", 50),
        ("task_completed", 0),
        ("workflow_completed", 0),
    ]
    provider.shutdown()


def _run_execution(provider: TracerProvider, execution_id: str, tasks: int) -> None:
    tracer = provider.get_tracer("runner")
    with tracer.start_as_current_span(
        "wf", attributes={conv.WORKFLOW_EXECUTION_ID: execution_id}
    ) as workflow:
        for number in range(tasks):
            name = f"t{number}"
            with tracer.start_as_current_span(name, attributes={conv.TASK_NAME: name}) as span:
                span.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: 50})
            workflow.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: number})


@pytest.mark.slow
def test_upstream_receiver_with_faults_gets_every_event_once_in_order(
    provider: TracerProvider,
) -> None:
    """Fields 1-11 only, 30 % UNAVAILABLE, 5 % lost answers, 20 executions at once:
    every event arrives, each execution in sequence order, re-sends byte-identical."""
    executions, tasks = 20, 5
    per_execution = 2 + tasks * 4  # started, completed; per task: start, progress, end, wf
    with UpstreamReceiver(KEY, unavailable=0.3, lost=0.05) as receiver:
        pipeline = configure(
            StigmerConfig.from_env(receiver.env), tracer_provider=provider, retry_policy=FAST
        )
        threads = [
            threading.Thread(target=_run_execution, args=(provider, f"up-{n}", tasks))
            for n in range(executions)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert pipeline.force_flush(60_000)
        arrivals = list(receiver.arrivals)
    by_execution: dict[str, list[Arrival]] = {}
    for arrival in arrivals:
        by_execution.setdefault(arrival.execution_id, []).append(arrival)
    assert sorted(by_execution) == sorted(f"up-{n}" for n in range(executions))
    for execution_id, seen in by_execution.items():
        numbers = [a.sequence_number for a in seen]
        # Zero inversions: a re-send repeats the last number, never goes back further.
        assert all(a <= b for a, b in itertools.pairwise(numbers)), execution_id
        assert len(set(numbers)) == per_execution, execution_id
        payloads: dict[int, set[bytes]] = {}
        for a in seen:
            payloads.setdefault(a.sequence_number, set()).add(a.payload)
        assert all(len(p) == 1 for p in payloads.values()), "a re-send differs from the first"
        types = [a.event_type for a in {a.sequence_number: a for a in seen}.values()]
        assert types[0] == "workflow_started"
        assert types[-1] == "workflow_completed"
    assert len(arrivals) > executions * per_execution, "the faults caused no re-send"


def _denied(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.name.startswith("otel_stigmer") and r.levelno >= logging.INFO]


def test_accepted_false_is_a_refusal_logged_once(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """accepted=false: counted as refused, one line with the receiver's text, no retry."""
    caplog.set_level(logging.INFO, logger="otel_stigmer")
    with UpstreamReceiver(KEY, refuse=lambda e: e.event_type == "task_progress") as receiver:
        pipeline = configure(
            StigmerConfig.from_env(receiver.env), tracer_provider=provider, retry_policy=FAST
        )
        _run_execution(provider, "refuse-1", tasks=3)
        assert pipeline.force_flush(10_000)
        assert len(receiver.refused) == 3  # each refused event was sent once
        stats = pipeline.stats()
        assert stats.dropped == {"refused": 3}
        assert stats.sent == len(receiver.arrivals) == 2 + 3 * 3
    lines = [r for r in _denied(caplog.records) if "refused" in r.getMessage()]
    assert len(lines) == 1
    assert UpstreamReceiver.REFUSAL in lines[0].getMessage()
    assert "accepted=false" in lines[0].getMessage()


def test_wrong_key_on_the_unary_path_is_one_line(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused key on an upstream receiver: one ERROR line naming the variable, no other."""
    caplog.set_level(logging.INFO, logger="otel_stigmer")
    with UpstreamReceiver(KEY) as receiver:
        env = {**receiver.env, "STIGMER_SERVICE_API_KEY": "not-the-key-93af"}
        pipeline = configure(StigmerConfig.from_env(env), tracer_provider=provider)
        _run_execution(provider, "denied-1", tasks=2)
        assert not pipeline.force_flush(1_500)
        stats = pipeline.stats()
        assert stats.unauthenticated_calls >= 1
        assert stats.sent == 0
        pipeline.shutdown(100)
    lines = [r for r in _denied(caplog.records) if r.levelno >= logging.WARNING]
    failures = [r for r in lines if "UNAUTHENTICATED" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in lines]
    assert failures[0].levelno == logging.ERROR
    assert "STIGMER_SERVICE_API_KEY" in failures[0].getMessage()
    assert "not-the-key" not in caplog.text


def test_hung_receiver_is_one_line_and_a_failed_call(
    provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """A receiver that never answers: one WARNING about the timeout, failed calls counted."""
    caplog.set_level(logging.INFO, logger="otel_stigmer")
    with UpstreamReceiver(KEY, hang=True) as receiver:
        env = {**receiver.env, "STIGMER_SERVICE_TIMEOUT": "0.3"}
        pipeline = configure(StigmerConfig.from_env(env), tracer_provider=provider)
        _run_execution(provider, "hung-1", tasks=1)
        assert not pipeline.force_flush(1_500)
        assert pipeline.stats().failed_calls >= 1
        pipeline.shutdown(200)
    failures = [r for r in _denied(caplog.records) if "DEADLINE_EXCEEDED" in r.getMessage()]
    assert len(failures) == 1
    assert "STIGMER_SERVICE_TIMEOUT" in failures[0].getMessage()


def _spans(provider: TracerProvider, execution_id: str) -> None:
    tracer = provider.get_tracer("runner")
    workflow = {conv.WORKFLOW_EXECUTION_ID: execution_id}
    task = {**workflow, conv.TASK_NAME: "t"}
    with (
        tracer.start_as_current_span("wf", attributes=workflow),
        tracer.start_as_current_span("t", attributes=task),
    ):
        pass


def test_shutdown_keeps_one_deadline_against_a_hung_receiver(provider: TracerProvider) -> None:
    """shutdown(t) returns within t (plus slack), on the processor and the exporter path."""
    with UpstreamReceiver(KEY, hang=True) as receiver:
        config = StigmerConfig.from_env(receiver.env)  # calls may take the default 10 s
        pipeline = configure(config, tracer_provider=provider)
        _spans(provider, "hung-shutdown")
        exporter = StigmerSpanExporter(config, export_wait_millis=0)
        other = TracerProvider()
        exported: list[object] = []
        other.add_span_processor(_Collect(exported))
        _spans(other, "hung-export")
        exporter.export(exported)  # type: ignore[arg-type]
        for shut_down in (pipeline.shutdown, exporter.shutdown):
            started = time.monotonic()
            shut_down(1_000)
            assert time.monotonic() - started < 1.0 + SLACK
        assert pipeline.stats().dropped["shutdown"] >= 1
        assert exporter.stats().dropped["shutdown"] >= 1


class _Collect(SpanProcessor):
    """Keeps ended spans, to hand them to an exporter by hand."""

    def __init__(self, into: list[object]) -> None:
        self._into = into

    def on_end(self, span: ReadableSpan) -> None:
        self._into.append(span)


EXIT_CHILD = """
import sys, time
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from otel_stigmer import StigmerConfig, StigmerSpanExporter, configure
from otel_stigmer import conventions as conv

provider = TracerProvider()
if sys.argv[1] == "processor":
    configure(StigmerConfig.from_env(), tracer_provider=provider)
else:
    provider.add_span_processor(BatchSpanProcessor(StigmerSpanExporter()))
tracer = provider.get_tracer("runner")
workflow = {conv.WORKFLOW_EXECUTION_ID: "exit-" + sys.argv[1]}
with tracer.start_as_current_span("wf", attributes=workflow):
    with tracer.start_as_current_span("t", attributes={**workflow, conv.TASK_NAME: "t"}):
        pass
print(time.monotonic(), flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("path", ["processor", "exporter"])
def test_exit_with_a_hung_receiver_is_bounded(path: str) -> None:
    """Interpreter exit with a receiver that never answers takes the documented few seconds."""
    # configure(): 5 s at exit; exporter: one export waits 2 s, its shutdown at most 3 s.
    bound = 5.0
    with UpstreamReceiver(KEY, hang=True) as receiver:
        child = subprocess.run(
            [sys.executable, "-c", EXIT_CHILD, path],
            env={**os.environ, **receiver.env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        ended = time.monotonic()
    assert child.returncode == 0, child.stderr[-2000:]
    spans_done = float(child.stdout.split()[0])
    assert ended - spans_done < bound + SLACK + 1.0  # interpreter teardown included
