"""@workflow / @task: spans, attributes, execution ids, baggage, retries and wrapper fidelity."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest
from opentelemetry import baggage, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from otel_stigmer import conventions as conv
from otel_stigmer.decorators import new_execution_id, task, workflow
from otel_stigmer.testing import capture_progress

_EXPORTER = InMemorySpanExporter()
_PROVIDERS: list[TracerProvider] = []


class _WhileRecording(SimpleSpanProcessor):
    """Exports only while a test of this module runs, so other tests' spans are not kept."""

    recording = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording:
            super().on_end(span)


_PROCESSOR = _WhileRecording(_EXPORTER)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Finished spans of the global SDK provider, recorded in memory for one test."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    if provider not in _PROVIDERS:
        provider.add_span_processor(_PROCESSOR)
        _PROVIDERS.append(provider)
    _EXPORTER.clear()
    _PROCESSOR.recording = True
    yield _EXPORTER
    _PROCESSOR.recording = False
    _EXPORTER.clear()


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


# --- wrapper fidelity --------------------------------------------------------------------


@task
def add(a: int, b: int = 2) -> int:
    """Add two numbers."""
    return a + b


@task(name="agen")
async def numbers(n: int) -> AsyncIterator[int]:
    """Count to n."""
    for i in range(n):
        yield i


@workflow(name="wf")
async def pipeline(execution_id: str) -> str:
    """Run the pipeline."""
    return execution_id


def test_signature_docstring_and_kind_are_kept() -> None:
    """The decorated functions keep their signature, docstring, name and async-ness."""
    assert str(inspect.signature(add)) == "(a: 'int', b: 'int' = 2) -> 'int'"
    assert add.__doc__ == "Add two numbers."
    assert add.__name__ == "add"
    assert inspect.iscoroutinefunction(pipeline)
    assert not inspect.iscoroutinefunction(add)
    assert inspect.isasyncgenfunction(numbers)
    assert numbers.__doc__ == "Count to n."


def test_bare_and_called_forms_name_spans(spans: InMemorySpanExporter) -> None:
    """Bare @task names the span after the function; name= overrides it; import-time is fine."""

    @task
    def fetch() -> None:
        pass

    @task(name="store-it", attributes={"app.kind": "db"})
    def store() -> None:
        pass

    @workflow
    def ingest() -> None:
        fetch()
        store()
        add(1)  # decorated at import, possibly before any provider was set

    ingest()
    got = by_name(spans)
    assert set(got) == {"ingest", "fetch", "store-it", "add"}
    assert got["store-it"].attributes is not None
    assert got["store-it"].attributes["app.kind"] == "db"
    assert got["store-it"].attributes[conv.TASK_NAME] == "store-it"


# --- attributes and inheritance ----------------------------------------------------------


def test_task_span_carries_workflow_identity(spans: InMemorySpanExporter) -> None:
    """A task span has its task name and the enclosing workflow's execution id and name."""

    @task
    def step() -> None:
        pass

    @workflow(name="orders")
    def run(execution_id: str) -> None:
        step()

    run("wfexec-42")
    got = by_name(spans)
    wf_attrs = dict(got["orders"].attributes or {})
    task_attrs = dict(got["step"].attributes or {})
    assert wf_attrs == {conv.WORKFLOW_EXECUTION_ID: "wfexec-42", conv.WORKFLOW_NAME: "orders"}
    assert task_attrs == {
        conv.TASK_NAME: "step",
        conv.WORKFLOW_EXECUTION_ID: "wfexec-42",
        conv.WORKFLOW_NAME: "orders",
    }
    assert got["step"].parent is not None
    assert got["step"].parent.span_id == got["orders"].context.span_id


def test_workflow_puts_identity_in_baggage_for_its_duration(spans: InMemorySpanExporter) -> None:
    """Inside a workflow the baggage holds its execution id and name; afterwards it is gone."""
    seen: dict[str, object] = {}

    @workflow(name="bag", execution_id="wfexec-bag")
    def run() -> None:
        seen.update(baggage.get_all())

    run()
    assert seen == {conv.BAGGAGE_EXECUTION_ID: "wfexec-bag", conv.BAGGAGE_WORKFLOW_NAME: "bag"}
    assert baggage.get_all() == {}


def test_task_outside_workflow_is_plain_span_and_warns_once(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """A task without a workflow is an ordinary span with no Stigmer role; one warning."""

    @task(attributes={"k": "v"})
    def lonely() -> int:
        return 7

    with caplog.at_level(logging.WARNING, logger="otel_stigmer"):
        assert lonely() == 7
        assert lonely() == 7
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["lonely", "lonely"]
    assert dict(finished[0].attributes or {}) == {"k": "v"}
    warnings = [r for r in caplog.records if "outside any workflow" in r.getMessage()]
    assert len(warnings) == 1


# --- execution id resolution -------------------------------------------------------------


def _execution_id(exporter: InMemorySpanExporter, name: str) -> object:
    attributes = by_name(exporter)[name].attributes or {}
    return attributes[conv.WORKFLOW_EXECUTION_ID]


def test_execution_id_from_decorator_string_wins(spans: InMemorySpanExporter) -> None:
    """execution_id='...' on the decorator beats the call argument."""

    @workflow(execution_id="fixed")
    def wf(execution_id: str) -> None:
        pass

    wf("from-arg")
    assert _execution_id(spans, "wf") == "fixed"


def test_execution_id_from_callable_of_bound_arguments(spans: InMemorySpanExporter) -> None:
    """A callable receives the bound arguments, defaults applied, by parameter name."""

    def order_id(args: Mapping[str, Any]) -> str:
        return f"order-{args['order']}-{args['region']}"

    class Shop:
        @workflow(execution_id=order_id)
        def checkout(self, order: int, region: str = "eu") -> None:
            pass

    Shop().checkout(17)
    assert _execution_id(spans, "Shop.checkout") == "order-17-eu"


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda wf: wf("pos-id"), "pos-id"),
        (lambda wf: wf(execution_id="kw-id"), "kw-id"),
    ],
)
def test_execution_id_from_call_argument(
    spans: InMemorySpanExporter, call: Any, expected: str
) -> None:
    """A call argument named execution_id is used, positional or keyword."""

    @workflow
    def wf(execution_id: str) -> None:
        pass

    call(wf)
    assert _execution_id(spans, "wf") == expected


def test_execution_id_from_workflow_execution_id_argument(spans: InMemorySpanExporter) -> None:
    """A call argument named workflow_execution_id is used too."""

    @workflow
    def wf(data: str, workflow_execution_id: str) -> None:
        pass

    wf("x", "wfx-1")
    assert _execution_id(spans, "wf") == "wfx-1"


def test_execution_id_from_enclosing_workflow(spans: InMemorySpanExporter) -> None:
    """A nested workflow without its own id joins the enclosing execution."""

    @workflow
    def inner() -> None:
        pass

    @workflow(execution_id="outer-id")
    def outer() -> None:
        inner()

    outer()
    assert _execution_id(spans, "inner") == "outer-id"


def test_execution_id_from_baggage(spans: InMemorySpanExporter) -> None:
    """Without a parent span, the execution id comes from the baggage."""
    from opentelemetry import context  # noqa: PLC0415

    @workflow
    def wf() -> None:
        pass

    token = context.attach(baggage.set_baggage(conv.BAGGAGE_EXECUTION_ID, "from-baggage"))
    try:
        wf()
    finally:
        context.detach(token)
    assert _execution_id(spans, "wf") == "from-baggage"


def test_generated_execution_ids_are_sortable_and_unique(spans: InMemorySpanExporter) -> None:
    """Generated ids look like wfexec-<32 hex>, unique and increasing in creation order."""
    ids = [new_execution_id() for _ in range(2000)]
    assert all(re.fullmatch(r"wfexec-[0-9a-f]{32}", i) for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)

    @workflow
    def wf() -> None:
        pass

    wf()
    generated = _execution_id(spans, "wf")
    assert isinstance(generated, str)
    assert generated.startswith("wfexec-")
    assert generated > ids[-1]


def test_failing_execution_id_callable_falls_back(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising execution_id callable is logged; the call still runs with the next source."""

    def broken(args: Mapping[str, Any]) -> str:
        raise KeyError("nope")

    @workflow(execution_id=broken)
    def wf(execution_id: str) -> str:
        return "ran"

    with caplog.at_level(logging.ERROR, logger="otel_stigmer"):
        assert wf("arg-id") == "ran"
    assert _execution_id(spans, "wf") == "arg-id"


def test_invalid_decorator_arguments_fail_fast() -> None:
    """Bad decorator arguments raise at decoration time, naming the argument."""
    with pytest.raises(TypeError, match="execution_id"):
        workflow(execution_id=42)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="retries"):
        task(retries=-1)
    with pytest.raises(TypeError, match="generator"):

        @task(retries=2)
        def gen() -> Iterator[int]:
            yield 1


# --- outcomes ----------------------------------------------------------------------------


def test_base_exception_ends_span_as_failed(spans: InMemorySpanExporter) -> None:
    """KeyboardInterrupt is re-raised, and the span still ends, recorded as failed."""
    interrupt = KeyboardInterrupt()

    @workflow(execution_id="kb")
    def wf() -> None:
        raise interrupt

    with pytest.raises(KeyboardInterrupt) as info:
        wf()
    assert info.value is interrupt
    span = by_name(spans)["wf"]
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_retries_make_one_span_per_attempt(spans: InMemorySpanExporter) -> None:
    """@task(retries=N) calls again on failure; each attempt is a span with its number."""
    calls: list[int] = []

    @task(retries=2, retry_on=ConnectionError)
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "up"

    @workflow(execution_id="retry")
    def wf() -> str:
        return flaky()

    assert wf() == "up"
    attempts = [s for s in spans.get_finished_spans() if s.name == "flaky"]
    assert [(s.attributes or {})[conv.TASK_ATTEMPT] for s in attempts] == [1, 2, 3]
    assert [(s.attributes or {}).get(conv.STATUS) for s in attempts] == [
        conv.RETRYING,
        conv.RETRYING,
        None,
    ]
    assert [s.status.status_code for s in attempts] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]


def test_retries_exhausted_reraise_last_error(spans: InMemorySpanExporter) -> None:
    """When attempts run out the last exception propagates and the last span is failed."""
    errors: list[ConnectionError] = []

    @task(retries=1)
    async def always() -> None:
        errors.append(ConnectionError(len(errors)))
        raise errors[-1]

    @workflow(execution_id="exhaust")
    async def wf() -> None:
        await always()

    with pytest.raises(ConnectionError) as info:
        asyncio.run(wf())
    assert info.value is errors[-1]
    attempts = [s for s in spans.get_finished_spans() if s.name == "always"]
    assert [(s.attributes or {}).get(conv.STATUS) for s in attempts] == [conv.RETRYING, None]


def test_non_retryable_exception_is_not_retried(spans: InMemorySpanExporter) -> None:
    """An exception outside retry_on fails the task at once."""

    @task(retries=3, retry_on=ConnectionError)
    def strict() -> None:
        raise ValueError("bad input")

    @workflow(execution_id="strict")
    def wf() -> None:
        strict()

    with pytest.raises(ValueError, match="bad input"):
        wf()
    assert len([s for s in spans.get_finished_spans() if s.name == "strict"]) == 1


# --- generator context handling ----------------------------------------------------------


def test_generator_context_does_not_leak_between_items(spans: InMemorySpanExporter) -> None:
    """Between items the caller's span is current; inside the body the generator's span is."""
    inside: list[str] = []

    @task
    def items() -> Iterator[int]:
        for i in range(2):
            inside.append(getattr(trace.get_current_span(), "name", "?"))
            yield i

    @workflow(execution_id="leak")
    def wf() -> list[str]:
        outside = []
        for _ in items():
            outside.append(getattr(trace.get_current_span(), "name", "?"))
        return outside

    assert wf() == ["wf", "wf"]
    assert inside == ["items", "items"]


def test_abandoned_async_generator_is_finalised_cleanly(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    """An async generator left unfinished is closed by the loop in another task: cancelled,
    and no context-detach error is logged."""

    @task
    async def stream() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    @workflow(execution_id="abandon")
    async def wf() -> int:
        async for item in stream():
            return item
        return -1

    with caplog.at_level(logging.DEBUG):
        assert asyncio.run(wf()) == 0
    span = by_name(spans)["stream"]
    assert (span.attributes or {}).get(conv.STATUS) == conv.CANCELLED
    assert span.status.status_code is StatusCode.UNSET
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_instrumentation_failure_never_reaches_business_code(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """If the tracer breaks, the function still runs and returns; the error is only logged."""
    from otel_stigmer import decorators  # noqa: PLC0415
    from otel_stigmer._guard import RAISE_ENV  # noqa: PLC0415

    def broken_tracer() -> trace.Tracer:
        raise RuntimeError("tracer exploded")

    monkeypatch.delenv(RAISE_ENV, raising=False)
    monkeypatch.setattr(decorators, "_tracer", broken_tracer)

    @task
    def step() -> int:
        return 1

    @workflow
    async def wf() -> int:
        return step() + 1

    with caplog.at_level(logging.ERROR, logger="otel_stigmer"):
        assert asyncio.run(wf()) == 2
    assert "could not start the span" in caplog.text


def test_task_instance_id_is_shared_by_attempts_and_differs_between_calls() -> None:
    """Each call of a task has its own instance id; all attempts of one call share it."""
    calls: list[int] = []

    @task(retries=1, retry_on=ConnectionError)
    def flaky(n: int) -> int:
        calls.append(n)
        if calls.count(n) == 1:
            raise ConnectionError("down")
        return n

    @task
    def plain() -> None:
        return None

    @workflow(execution_id="instances")
    def wf() -> None:
        flaky(1)
        flaky(2)
        plain()
        plain()

    with capture_progress() as capture:
        wf()
    by_instance: dict[str, list[str]] = {}
    for event in capture.events:
        if event.task_name:
            by_instance.setdefault(event.task_instance_id, []).append(event.event_type)
        else:
            assert event.task_instance_id == ""
    assert sorted(by_instance.values()) == sorted(
        [
            ["task_started", "task_retry", "task_started", "task_completed"],
            ["task_started", "task_retry", "task_started", "task_completed"],
            ["task_started", "task_completed"],
            ["task_started", "task_completed"],
        ]
    )
    assert all(instance for instance in by_instance)
