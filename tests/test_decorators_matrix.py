"""The decorator matrix: {sync, async, generator, async generator} x {success, exception,
cancellation / early close} x {function, method, classmethod, staticmethod}, asserting the
decorated behaviour and the progress events captured for it."""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from otel_stigmer.decorators import task, workflow
from otel_stigmer.testing._capture import capture_progress

KINDS = ("sync", "async", "generator", "async_generator")
OUTCOMES = ("success", "exception", "cancel")
SHAPES = ("function", "method", "classmethod", "staticmethod")


@dataclass
class Ctl:
    """What the task body should do, and the exception object it raises."""

    outcome: str
    error: ValueError = field(default_factory=lambda: ValueError("boom"))
    started: asyncio.Event | None = None


# --- bodies, one per kind ------------------------------------------------------------------


def sync_body(ctl: Ctl, tag: str) -> str:
    if ctl.outcome == "exception":
        raise ctl.error
    if ctl.outcome == "cancel":
        raise asyncio.CancelledError
    return f"done:{tag}"


async def async_body(ctl: Ctl, tag: str) -> str:
    await asyncio.sleep(0)
    if ctl.outcome == "exception":
        raise ctl.error
    if ctl.outcome == "cancel":
        assert ctl.started is not None
        ctl.started.set()
        await asyncio.Event().wait()
    return f"done:{tag}"


def gen_body(ctl: Ctl, tag: str) -> Iterator[Any]:
    yield tag
    if ctl.outcome == "exception":
        raise ctl.error
    yield 1
    yield 2


async def agen_body(ctl: Ctl, tag: str) -> AsyncIterator[Any]:
    yield tag
    await asyncio.sleep(0)
    if ctl.outcome == "exception":
        raise ctl.error
    yield 1
    yield 2


# --- the decorated shapes ------------------------------------------------------------------
# classmethods put @task under @classmethod, staticmethods put it above @staticmethod, so both
# stacking orders are covered.


@task
def sync_function(ctl: Ctl) -> str:
    return sync_body(ctl, "function")


class SyncShapes:
    @task
    def method(self, ctl: Ctl) -> str:
        return sync_body(ctl, type(self).__name__)

    @classmethod
    @task
    def klass(cls, ctl: Ctl) -> str:
        return sync_body(ctl, cls.__name__)

    @task
    @staticmethod
    def static(ctl: Ctl) -> str:
        return sync_body(ctl, "static")


@task
async def async_function(ctl: Ctl) -> str:
    return await async_body(ctl, "function")


class AsyncShapes:
    @task
    async def method(self, ctl: Ctl) -> str:
        return await async_body(ctl, type(self).__name__)

    @classmethod
    @task
    async def klass(cls, ctl: Ctl) -> str:
        return await async_body(ctl, cls.__name__)

    @task
    @staticmethod
    async def static(ctl: Ctl) -> str:
        return await async_body(ctl, "static")


@task
def generator_function(ctl: Ctl) -> Iterator[Any]:
    yield from gen_body(ctl, "function")


class GeneratorShapes:
    @task
    def method(self, ctl: Ctl) -> Iterator[Any]:
        yield from gen_body(ctl, type(self).__name__)

    @classmethod
    @task
    def klass(cls, ctl: Ctl) -> Iterator[Any]:
        yield from gen_body(ctl, cls.__name__)

    @task
    @staticmethod
    def static(ctl: Ctl) -> Iterator[Any]:
        yield from gen_body(ctl, "static")


@task
async def async_generator_function(ctl: Ctl) -> AsyncIterator[Any]:
    async for item in agen_body(ctl, "function"):
        yield item


class AsyncGeneratorShapes:
    @task
    async def method(self, ctl: Ctl) -> AsyncIterator[Any]:
        async for item in agen_body(ctl, type(self).__name__):
            yield item

    @classmethod
    @task
    async def klass(cls, ctl: Ctl) -> AsyncIterator[Any]:
        async for item in agen_body(ctl, cls.__name__):
            yield item

    @task
    @staticmethod
    async def static(ctl: Ctl) -> AsyncIterator[Any]:
        async for item in agen_body(ctl, "static"):
            yield item


_CLASSES: dict[str, Any] = {
    "sync": SyncShapes,
    "async": AsyncShapes,
    "generator": GeneratorShapes,
    "async_generator": AsyncGeneratorShapes,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sync": sync_function,
    "async": async_function,
    "generator": generator_function,
    "async_generator": async_generator_function,
}


def target(kind: str, shape: str) -> tuple[Callable[..., Any], str, str]:
    """The callable to call, its task name and the tag its body reports."""
    cls = _CLASSES[kind]
    if shape == "function":
        fn = _FUNCTIONS[kind]
        return fn, fn.__name__, "function"
    if shape == "method":
        return cls().method, f"{cls.__name__}.method", cls.__name__
    if shape == "classmethod":
        return cls.klass, f"{cls.__name__}.klass", cls.__name__
    return cls().static, f"{cls.__name__}.static", "static"


# --- drivers: run the target inside a workflow -----------------------------------------------

Outcome = tuple[Any, BaseException | None]


@workflow(name="matrix", execution_id="wf-matrix")
def run_sync(fn: Callable[..., Any], ctl: Ctl) -> Outcome:
    try:
        return fn(ctl), None
    except BaseException as exc:
        return None, exc


@workflow(name="matrix", execution_id="wf-matrix")
def run_generator(fn: Callable[..., Any], ctl: Ctl) -> Outcome:
    got: list[Any] = []
    iterator = fn(ctl)
    try:
        for item in iterator:
            got.append(item)
            if ctl.outcome == "cancel":
                iterator.close()
                break
    except BaseException as exc:
        return got, exc
    return got, None


@workflow(name="matrix", execution_id="wf-matrix")
async def run_async(fn: Callable[..., Any], ctl: Ctl) -> Outcome:
    ctl.started = asyncio.Event()
    running = asyncio.create_task(fn(ctl))
    if ctl.outcome == "cancel":
        await ctl.started.wait()
        running.cancel()
    try:
        return await running, None
    except BaseException as exc:
        return None, exc


@workflow(name="matrix", execution_id="wf-matrix")
async def run_async_generator(fn: Callable[..., Any], ctl: Ctl) -> Outcome:
    got: list[Any] = []
    iterator = fn(ctl)
    try:
        async for item in iterator:
            got.append(item)
            if ctl.outcome == "cancel":
                await iterator.aclose()
                break
    except BaseException as exc:
        return got, exc
    return got, None


def drive(kind: str, fn: Callable[..., Any], ctl: Ctl) -> Outcome:
    if kind == "sync":
        return run_sync(fn, ctl)
    if kind == "generator":
        return run_generator(fn, ctl)
    if kind == "async":
        return asyncio.run(run_async(fn, ctl))
    return asyncio.run(run_async_generator(fn, ctl))


def expected_result(kind: str, outcome: str, tag: str) -> Any:
    iterating = kind in ("generator", "async_generator")
    if outcome == "success":
        return [tag, 1, 2] if iterating else f"done:{tag}"
    return [tag] if iterating else None


TERMINAL = {"success": "task_completed", "exception": "task_failed", "cancel": "task_cancelled"}


@pytest.mark.parametrize(
    ("kind", "outcome", "shape"), list(itertools.product(KINDS, OUTCOMES, SHAPES))
)
def test_matrix(kind: str, outcome: str, shape: str) -> None:
    """Each kind/outcome/shape keeps its behaviour and reports started then its outcome."""
    fn, name, tag = target(kind, shape)
    ctl = Ctl(outcome)
    with capture_progress() as events:
        result, raised = drive(kind, fn, ctl)

    assert result == expected_result(kind, outcome, tag)
    if outcome == "exception":
        assert raised is ctl.error
    elif outcome == "cancel" and kind in ("sync", "async"):
        assert isinstance(raised, asyncio.CancelledError)
    else:
        assert raised is None

    events.assert_sequence(
        [
            "workflow_started",
            ("task_started", name),
            (TERMINAL[outcome], name),
            "workflow_completed",
        ]
    )
    assert {e.workflow_execution_id for e in events} == {"wf-matrix"}
    assert {e.workflow_name for e in events} == {"matrix"}
    terminal = events[2]
    if outcome == "exception":
        assert terminal.status == "failed"
        assert (terminal.error.code, terminal.error.message) == ("ValueError", "boom")
        assert "raise ctl.error" in terminal.error.stack_trace
    else:
        assert terminal.status == ("completed" if outcome == "success" else "cancelled")
        assert not terminal.HasField("error")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matrix_kind_is_kept(kind: str, shape: str) -> None:
    """Every shape answers inspect's coroutine / generator questions like the undecorated one."""
    fn, _, _ = target(kind, shape)
    assert inspect.iscoroutinefunction(fn) is (kind == "async")
    assert inspect.isgeneratorfunction(fn) is (kind == "generator")
    assert inspect.isasyncgenfunction(fn) is (kind == "async_generator")
    assert list(inspect.signature(fn).parameters) == ["ctl"]
