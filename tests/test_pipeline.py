"""The live pipeline against the reference receiver over real loopback gRPC."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import baggage, context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from otel_stigmer import StigmerConfig, StigmerPipeline, StigmerSpanExporter, configure
from otel_stigmer import conventions as conv
from otel_stigmer.propagation import inject_headers
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.testing import StigmerTestServer

CANARY = "canary-key-7f3a9c"  # must never show up in logs
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def server() -> Iterator[StigmerTestServer]:
    with StigmerTestServer(api_key=CANARY) as srv:
        yield srv


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    tp = TracerProvider()
    yield tp
    tp.shutdown()


def _pipeline(server: StigmerTestServer, provider: TracerProvider, **env: str) -> StigmerPipeline:
    return configure(StigmerConfig.from_env({**server.env(), **env}), tracer_provider=provider)


def _rows(server: StigmerTestServer, execution_id: str) -> list[tuple[str, str, str]]:
    return [(e.event_type, e.task_name, e.status) for e in server.events(execution_id)]


def test_workflow_with_failed_retried_and_cancelled_tasks(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """Three tasks — failing, retried, cancelled — leave exactly the expected events, in order."""
    pipeline = _pipeline(server, provider)
    tracer = provider.get_tracer("runner")
    wf = {conv.WORKFLOW_EXECUTION_ID: "wf-accept", conv.WORKFLOW_NAME: "ingest"}
    with tracer.start_as_current_span("ingest", attributes=wf):
        try:
            with tracer.start_as_current_span("parse", attributes={conv.TASK_NAME: "parse"}):
                raise ValueError("bad row 7")
        except ValueError:
            pass
        with tracer.start_as_current_span("fetch", attributes={conv.TASK_NAME: "fetch"}) as span:
            span.add_event("task_retry", {conv.TASK_ATTEMPT: 1, conv.MESSAGE: "timeout"})
        with tracer.start_as_current_span(
            "notify", attributes={conv.TASK_NAME: "notify", conv.STATUS: conv.CANCELLED}
        ):
            pass
    assert pipeline.force_flush(10_000)
    assert _rows(server, "wf-accept") == [
        ("workflow_started", "", "running"),
        ("task_started", "parse", "running"),
        ("task_failed", "parse", "failed"),
        ("task_started", "fetch", "running"),
        ("task_retry", "fetch", "running"),
        ("task_completed", "fetch", "completed"),
        ("task_started", "notify", "running"),
        ("task_cancelled", "notify", "cancelled"),
        ("workflow_completed", "", "completed"),
    ]
    events = server.events("wf-accept")
    failed = events[2]
    assert (failed.error.code, failed.error.message) == ("ValueError", "bad row 7")
    assert 'raise ValueError("bad row 7")' in failed.error.stack_trace
    assert all(e.workflow_name == "ingest" for e in events)
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == len(numbers)
    assert len({e.event_id for e in events}) == len(events)


def test_started_events_are_live(server: StigmerTestServer, provider: TracerProvider) -> None:
    """The receiver holds workflow_started and task_started while both spans are still open."""
    _pipeline(server, provider)
    tracer = provider.get_tracer("runner")
    with (
        tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "wf-live"}),
        tracer.start_as_current_span("step", attributes={conv.TASK_NAME: "step"}),
    ):
        seen = server.wait_for_events(2, execution_id="wf-live", timeout=10)
        assert [e.event_type for e in seen] == ["workflow_started", "task_started"]
    server.wait_for_events(4, execution_id="wf-live", timeout=10)


def test_task_inherits_workflow_through_baggage(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """A task span whose parent is not the workflow span inherits the ids from baggage."""
    pipeline = _pipeline(server, provider)
    tracer = provider.get_tracer("runner")
    ctx = baggage.set_baggage(conv.BAGGAGE_EXECUTION_ID, "wf-bag")
    ctx = baggage.set_baggage(conv.BAGGAGE_WORKFLOW_NAME, "nightly", ctx)
    token = context.attach(ctx)
    try:
        with (
            tracer.start_as_current_span("http"),
            tracer.start_as_current_span("t", attributes={conv.TASK_NAME: "t"}),
        ):
            pass
    finally:
        context.detach(token)
    assert pipeline.force_flush(10_000)
    assert [(e.event_type, e.workflow_name) for e in server.events("wf-bag")] == [
        ("task_started", "nightly"),
        ("task_completed", "nightly"),
    ]


CHILD = textwrap.dedent(
    """
    import os, sys
    from opentelemetry import context, propagate
    from opentelemetry.sdk.trace import TracerProvider
    from otel_stigmer import StigmerConfig, configure
    from otel_stigmer import conventions as conv

    provider = TracerProvider()
    pipeline = configure(StigmerConfig.from_env(), tracer_provider=provider)
    carrier = {"traceparent": os.environ["TRACEPARENT"], "baggage": os.environ["BAGGAGE"]}
    token = context.attach(propagate.extract(carrier))
    with provider.get_tracer("worker").start_as_current_span(
        "remote", attributes={conv.TASK_NAME: "remote"}
    ):
        pass
    context.detach(token)
    sys.exit(0 if pipeline.force_flush(10_000) else 3)
    """
)


def test_two_processes_report_one_execution_in_order(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """Tasks of one execution in two processes arrive in the order in which they happened."""
    pipeline = _pipeline(server, provider)
    tracer = provider.get_tracer("runner")
    wf = {conv.WORKFLOW_EXECUTION_ID: "wf-2proc", conv.WORKFLOW_NAME: "spread"}
    with tracer.start_as_current_span("spread", attributes=wf):
        with tracer.start_as_current_span("local-1", attributes={conv.TASK_NAME: "local-1"}):
            pass
        token = context.attach(baggage.set_baggage(conv.BAGGAGE_EXECUTION_ID, "wf-2proc"))
        carrier = inject_headers()  # the identity leaves only through the helpers
        context.detach(token)
        env = {
            **os.environ,
            **server.env(),
            "TRACEPARENT": carrier["traceparent"],
            "BAGGAGE": carrier["baggage"],
        }
        subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, timeout=60)
        with tracer.start_as_current_span("local-2", attributes={conv.TASK_NAME: "local-2"}):
            pass
    assert pipeline.force_flush(10_000)
    assert [(e.event_type, e.task_name) for e in server.events("wf-2proc")] == [
        ("workflow_started", ""),
        ("task_started", "local-1"),
        ("task_completed", "local-1"),
        ("task_started", "remote"),
        ("task_completed", "remote"),
        ("task_started", "local-2"),
        ("task_completed", "local-2"),
        ("workflow_completed", ""),
    ]


def test_receiver_down_at_start_then_back(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """Events produced while the receiver is down are all delivered once it is back."""
    server.stop()
    fast = RetryPolicy(initial_backoff=0.05, max_backoff=0.5)
    config = StigmerConfig.from_env({**server.env(), "STIGMER_SERVICE_TIMEOUT": "2"})
    pipeline = configure(config, tracer_provider=provider)
    pipeline.processor.sender._policy = fast
    tracer = provider.get_tracer("runner")
    with tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "wf-down"}):
        for index in range(20):
            with tracer.start_as_current_span(
                f"t{index}", attributes={conv.TASK_NAME: f"t{index}"}
            ):
                pass
    # All business code has run; nothing could be delivered yet.
    assert server.events("wf-down") == []
    assert _wait(lambda: pipeline.stats().failed_calls >= 1)
    server.restart()
    assert pipeline.force_flush(20_000)
    events = server.events("wf-down")
    assert len(events) == 42
    assert len({e.event_id for e in events}) == 42
    stats = pipeline.stats()
    assert stats.sent == stats.enqueued == 42
    assert stats.dropped == {}


def test_exporter_entry_point_under_opentelemetry_instrument(
    server: StigmerTestServer, tmp_path: Path
) -> None:
    """OTEL_TRACES_EXPORTER=stigmer opentelemetry-instrument delivers a script's events."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(
            """
            from opentelemetry import trace
            tracer = trace.get_tracer("app")
            attrs = {"stigmer.workflow.execution_id": "wf-auto", "stigmer.workflow.name": "auto"}
            with tracer.start_as_current_span("auto", attributes=attrs):
                # Without the live processor nothing writes the inherited ids at span
                # start, so the task span carries them itself (as @task does).
                task = {**attrs, "stigmer.task.name": "step"}
                with tracer.start_as_current_span("step", attributes=task):
                    pass
            """
        )
    )
    env = {
        **os.environ,
        **server.env(),
        "OTEL_TRACES_EXPORTER": "stigmer",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    result = subprocess.run(
        [str(instrument), sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert CANARY not in result.stdout + result.stderr
    events = server.wait_for_events(4, execution_id="wf-auto", timeout=20)
    assert [(e.event_type, e.task_name) for e in events] == [
        ("workflow_started", ""),
        ("task_started", "step"),
        ("task_completed", "step"),
        ("workflow_completed", ""),
    ]


def test_exporter_under_batch_span_processor(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """The exporter alone (under a BatchSpanProcessor) reports starts, span events and ends."""
    exporter = StigmerSpanExporter(StigmerConfig.from_env(server.env()))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("runner")
    wf = {conv.WORKFLOW_EXECUTION_ID: "wf-bsp"}
    with (
        tracer.start_as_current_span("wf", attributes=wf),
        tracer.start_as_current_span("t", attributes={**wf, conv.TASK_NAME: "t"}) as span,
    ):
        span.add_event("progress", {conv.PROGRESS: 50})
    assert provider.force_flush(10_000)
    assert exporter.force_flush(10_000)
    assert [e.event_type for e in server.events("wf-bsp")] == [
        "workflow_started",
        "task_started",
        "task_progress",
        "task_completed",
        "workflow_completed",
    ]


def test_wrong_key_never_reaches_business_code(
    server: StigmerTestServer, provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong key: spans work, one error line without the key, refused calls counted."""
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-" + CANARY
    pipeline = _pipeline(server, provider, STIGMER_SERVICE_API_KEY=wrong)
    tracer = provider.get_tracer("runner")
    for index in range(3):
        with tracer.start_as_current_span(
            "wf", attributes={conv.WORKFLOW_EXECUTION_ID: f"w{index}"}
        ):
            pass
    assert _wait(lambda: pipeline.stats().unauthenticated_calls >= 1)
    assert not pipeline.force_flush(300)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "API key" in errors[0].getMessage()
    assert all(CANARY not in r.getMessage() for r in caplog.records)
    stats = pipeline.stats()
    assert stats.sent == 0
    assert stats.queue_depth == 6  # kept for a later retry, not dropped
    assert server.events() == []
    # No retry storm: one call, then a backoff of seconds.
    assert server.faults.calls.get("report_progress_batch", 0) <= 2
    pipeline.shutdown(200)


def test_shutdown_returns_within_its_timeout(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """shutdown() with the receiver gone returns within its timeout and counts what was left."""
    server.stop()
    pipeline = _pipeline(server, provider)
    tracer = provider.get_tracer("runner")
    with tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "wf-sd"}):
        pass
    finished = threading.Event()

    def stop() -> None:
        pipeline.shutdown(500)
        finished.set()

    threading.Thread(target=stop).start()
    assert finished.wait(10), "shutdown(500 ms) did not return"
    assert pipeline.stats().dropped["shutdown"] == 2
    with provider.get_tracer("runner").start_as_current_span(
        "late", attributes={conv.WORKFLOW_EXECUTION_ID: "wf-late"}
    ):
        pass
    assert pipeline.stats().dropped["after_shutdown"] >= 1


def test_configure_is_idempotent_per_provider(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """A second configure() for the same provider reuses the pipeline; no double reports."""
    first = _pipeline(server, provider)
    assert _pipeline(server, provider) is first
    with provider.get_tracer("r").start_as_current_span(
        "wf", attributes={conv.WORKFLOW_EXECUTION_ID: "wf-once"}
    ):
        pass
    assert first.force_flush(10_000)
    assert len(server.events("wf-once")) == 2
    assert server.faults.calls.get("report_progress_batch", 0) >= 1


def test_asyncio_tasks_report_concurrently(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """Tasks started with asyncio.gather inherit the workflow span as parent."""
    pipeline = _pipeline(server, provider)
    tracer = provider.get_tracer("runner")

    async def step(name: str) -> None:
        with tracer.start_as_current_span(name, attributes={conv.TASK_NAME: name}):
            await asyncio.sleep(0)

    async def main() -> None:
        with tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "wf-aio"}):
            await asyncio.gather(step("a"), step("b"), step("c"))

    asyncio.run(main())
    assert pipeline.force_flush(10_000)
    events = server.events("wf-aio")
    assert sorted(e.task_name for e in events if e.event_type == "task_completed") == [
        "a",
        "b",
        "c",
    ]
    assert events[-1].event_type == "workflow_completed"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_gets_a_working_pipeline(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """A child forked after configure() delivers its own events through a new channel."""
    pipeline = _pipeline(server, provider)
    tracer = provider.get_tracer("runner")
    with tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "wf-parent"}):
        pass
    assert pipeline.force_flush(10_000)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            with tracer.start_as_current_span(
                "wf", attributes={conv.WORKFLOW_EXECUTION_ID: "wf-child"}
            ):
                pass
            code = 0 if pipeline.force_flush(10_000) else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(code)
    os.close(write)
    status = os.read(read, 1)
    os.waitpid(pid, 0)
    assert status == b"\x00"
    assert len(server.events("wf-child")) == 2
    assert len(server.events("wf-parent")) == 2


def _wait(predicate: object, timeout: float = 10.0) -> bool:
    event = threading.Event()
    deadline_checks = int(timeout / 0.02)
    for _ in range(deadline_checks):
        if callable(predicate) and predicate():
            return True
        event.wait(0.02)
    return False
