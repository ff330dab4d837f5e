"""``@workflow`` and ``@task``: ordinary OpenTelemetry spans carrying the Stigmer conventions.

The decorators only create spans (with the attributes of :mod:`otel_stigmer.conventions`) and
put the workflow identity into OTel baggage; turning spans into progress events is the span
processor's job. Nothing here raises into the decorated code: a failure of the
instrumentation itself is logged and the function runs as if undecorated.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import random
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast, overload

import wrapt
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import Span, Tracer
from opentelemetry.util.types import AttributeValue

from otel_stigmer import conventions as conv
from otel_stigmer._forksafe import renew_after_fork
from otel_stigmer._guard import RAISE_ENV

__all__ = ["ExecutionIdSource", "new_execution_id", "task", "workflow"]

_log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: How ``@workflow(execution_id=...)`` names a run: a fixed id, or a callable that receives the
#: call's bound arguments (defaults applied) by parameter name and returns the id.
ExecutionIdSource = str | Callable[[Mapping[str, Any]], str]

_EXECUTION_ID_PARAMETERS = ("execution_id", "workflow_execution_id")
_CANCELLATIONS: tuple[type[BaseException], ...] = (
    asyncio.CancelledError,
    concurrent.futures.CancelledError,
    GeneratorExit,
)
_Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


@dataclass
class _Spec:
    """What one decorator application was asked for."""

    is_workflow: bool
    name: str
    attributes: Mapping[str, AttributeValue]
    execution_id: ExecutionIdSource | None = None
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    retry_delay: float = 0.0
    warned: bool = field(default=False, compare=False)


class _Call:
    """The intercepted call, kept for resolving the execution id from its arguments.

    A plain slotted class, not a frozen dataclass: one is made per call, and a frozen
    dataclass's ``__init__`` costs about twice as much.
    """

    __slots__ = ("args", "kwargs", "wrapped")

    def __init__(
        self, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.wrapped = wrapped
        self.args = args
        self.kwargs = kwargs


class _Run:
    """A started span and the context (span + baggage) its body runs in (one per call)."""

    __slots__ = ("context", "span")

    def __init__(self, span: Span, context: Context) -> None:
        self.span = span
        self.context = context


# --- public decorators -------------------------------------------------------------------


@overload
def workflow(fn: F, /) -> F: ...
@overload
def workflow(
    *,
    name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    execution_id: ExecutionIdSource | None = None,
) -> Callable[[F], F]: ...
def workflow(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    execution_id: ExecutionIdSource | None = None,
) -> F | Callable[[F], F]:
    """Run the function as a Stigmer workflow: one span from call to return (or last item).

    Usable bare (``@workflow``) or with arguments. The execution id is, in order: the
    ``execution_id`` argument of the decorator, a call argument named ``execution_id`` or
    ``workflow_execution_id``, the enclosing workflow (same process, or OTel baggage from
    another one), else a new sortable id. The id and the workflow name go into OTel baggage so
    tasks in other threads, asyncio tasks, subprocesses and remote workers inherit them.

    Args:
        fn: The function, when used bare.
        name: Workflow and span name; defaults to the function's qualified name.
        attributes: Extra span attributes.
        execution_id: A fixed id, or a callable receiving the bound call arguments by name.

    Returns:
        The decorated function (signature, docstring and async-ness unchanged).
    """
    if (
        execution_id is not None
        and not isinstance(execution_id, str)
        and not callable(execution_id)
    ):
        raise TypeError(
            "workflow(execution_id=...) must be a string or a callable of the call's bound "
            f"arguments, not {type(execution_id).__name__}"
        )

    def decorate(f: F) -> F:
        spec = _Spec(True, name or _default_name(f), dict(attributes or {}), execution_id)
        return _instrument(f, spec)

    return decorate if fn is None else decorate(fn)


@overload
def task(fn: F, /) -> F: ...
@overload
def task(
    *,
    name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    retry_delay: float = 0.0,
) -> Callable[[F], F]: ...
def task(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    retries: int = 0,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    retry_delay: float = 0.0,
) -> F | Callable[[F], F]:
    """Run the function as a task of the enclosing workflow: one span per call (per attempt).

    Usable bare (``@task``) or with arguments. The task span carries the workflow's execution
    id and name, taken from the enclosing workflow span or from OTel baggage. Outside any
    workflow the span is an ordinary OTel span with no Stigmer role (a warning is logged once).

    Args:
        fn: The function, when used bare.
        name: Task and span name; defaults to the function's qualified name.
        attributes: Extra span attributes.
        retries: How many times to call the function again after an exception in
            ``retry_on``; each failed attempt is reported as ``task_retry`` and each attempt
            is its own span with ``stigmer.task.attempt`` set. Not for generators.
        retry_on: The exception type(s) that trigger a retry.
        retry_delay: Seconds to wait before each retry.

    Returns:
        The decorated function (signature, docstring and async-ness unchanged).
    """
    if retries < 0 or retry_delay < 0:
        raise ValueError("task(retries=..., retry_delay=...) must not be negative")
    retry_types = retry_on if isinstance(retry_on, tuple) else (retry_on,)

    def decorate(f: F) -> F:
        spec = _Spec(
            False,
            name or _default_name(f),
            dict(attributes or {}),
            retries=retries,
            retry_on=retry_types,
            retry_delay=retry_delay,
        )
        return _instrument(f, spec)

    return decorate if fn is None else decorate(fn)


def new_execution_id() -> str:
    """Return a new execution id, ``wfexec-`` and 32 hex digits, increasing in creation order.

    The digits are laid out like a UUIDv7: milliseconds since the epoch, then a counter that
    keeps ids created in the same millisecond in order, then random bits.
    """
    global _last_ms, _counter  # noqa: PLW0603 - the monotonic state is process-wide by design
    with _id_lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, 0
        else:
            # Same (or an earlier, after a clock step) millisecond: keep counting from the last.
            _counter += 1
            if _counter > 0xFFF:
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    return f"wfexec-{value:032x}"


_id_lock = threading.Lock()
renew_after_fork(sys.modules[__name__], "_id_lock")
_last_ms = 0
_counter = 0


# --- wrapping ----------------------------------------------------------------------------


def _default_name(fn: Callable[..., Any]) -> str:
    target = _unwrap_descriptor(fn)
    qualname = str(getattr(target, "__qualname__", None) or getattr(target, "__name__", "task"))
    # Functions defined inside functions would read "main.<locals>.fetch"; keep "fetch".
    return qualname.rsplit("<locals>.", 1)[-1]


def _unwrap_descriptor(fn: Any) -> Any:
    return fn.__func__ if isinstance(fn, classmethod | staticmethod) else fn


def _instrument(fn: F, spec: _Spec) -> F:
    target = _unwrap_descriptor(fn)
    wrapper: _Wrapper
    if inspect.isasyncgenfunction(target) or inspect.isgeneratorfunction(target):
        if spec.retries:
            raise TypeError(f"task(retries=...) cannot retry the generator {spec.name!r}")
        if inspect.isasyncgenfunction(target):
            wrapper = _async_generator_wrapper(spec)
        else:
            wrapper = _generator_wrapper(spec)
    elif inspect.iscoroutinefunction(target):
        wrapper = _coroutine_wrapper(spec)
    else:
        wrapper = _function_wrapper(spec)
    return cast(F, wrapt.FunctionWrapper(fn, wrapper))


def _function_wrapper(spec: _Spec) -> _Wrapper:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        attempt = 1
        call_id = _new_call_id(spec)
        call = _call_of(spec, wrapped, args, kwargs)
        while True:
            run = _begin(spec, otel_context.get_current(), call, attempt, call_id)
            token = _attach(run)
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as exc:
                retry = _will_retry(spec, exc, attempt)
                _finish(run, exc, retrying=retry)
                if not retry:
                    raise
            else:
                _finish(run, None)
                return result
            finally:
                _detach(token)
            if spec.retry_delay:
                time.sleep(spec.retry_delay)
            attempt += 1

    return wrapper


def _coroutine_wrapper(spec: _Spec) -> _Wrapper:
    async def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        attempt = 1
        call_id = _new_call_id(spec)
        call = _call_of(spec, wrapped, args, kwargs)
        while True:
            run = _begin(spec, otel_context.get_current(), call, attempt, call_id)
            token = _attach(run)
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                retry = _will_retry(spec, exc, attempt)
                _finish(run, exc, retrying=retry)
                if not retry:
                    raise
            else:
                _finish(run, None)
                return result
            finally:
                _detach(token)
            if spec.retry_delay:
                await asyncio.sleep(spec.retry_delay)
            attempt += 1

    return wrapper


def _generator_wrapper(spec: _Spec) -> _Wrapper:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        # The generator belongs to the context that created it; its span starts at the first
        # iteration, so a generator that is never iterated leaves no open span behind.
        parent = otel_context.get_current()
        call = _Call(wrapped, args, kwargs)
        return _traced_generator(spec, parent, call, wrapped(*args, **kwargs))

    return wrapper


def _traced_generator(
    spec: _Spec, parent: Context, call: _Call, gen: Generator[Any, Any, Any]
) -> Generator[Any, Any, Any]:
    # The span's context is attached only while the generator body runs (one step at a time)
    # and detached before each item goes back to the caller, so it never leaks into the caller
    # and is never detached from a different context.
    run = _begin(spec, parent, call, 1)
    send: Any = None
    throw: BaseException | None = None
    while True:
        token = _attach(run)
        try:
            item = gen.send(send) if throw is None else gen.throw(throw)
        except StopIteration as stop:
            _finish(run, None)
            return stop.value
        except BaseException as exc:
            _finish(run, exc)
            raise
        finally:
            _detach(token)
        try:
            send, throw = (yield item), None
        except GeneratorExit as closing:
            token = _attach(run)
            try:
                gen.close()
            except BaseException as exc:
                _finish(run, exc)
                raise
            finally:
                _detach(token)
            _finish(run, closing)
            raise
        except BaseException as exc:
            send, throw = None, exc


def _async_generator_wrapper(spec: _Spec) -> _Wrapper:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        parent = otel_context.get_current()
        call = _Call(wrapped, args, kwargs)
        return _traced_async_generator(spec, parent, call, wrapped(*args, **kwargs))

    return wrapper


async def _traced_async_generator(
    spec: _Spec, parent: Context, call: _Call, agen: AsyncGenerator[Any, Any]
) -> AsyncGenerator[Any, Any]:
    # Same per-step attach/detach as _traced_generator: an async generator may be resumed or
    # closed from a different asyncio task (or by the loop's finaliser), so the context must
    # not stay attached across a yield.
    run = _begin(spec, parent, call, 1)
    send: Any = None
    throw: BaseException | None = None
    while True:
        token = _attach(run)
        try:
            item = await (agen.asend(send) if throw is None else agen.athrow(throw))
        except StopAsyncIteration:
            _finish(run, None)
            return
        except BaseException as exc:
            _finish(run, exc)
            raise
        finally:
            _detach(token)
        try:
            send, throw = (yield item), None
        except GeneratorExit as closing:
            token = _attach(run)
            try:
                await agen.aclose()
            except BaseException as exc:
                _finish(run, exc)
                raise
            finally:
                _detach(token)
            _finish(run, closing)
            raise
        except BaseException as exc:
            send, throw = None, exc


# --- span lifecycle (never raises) -------------------------------------------------------


_tracer_cache: tuple[trace.TracerProvider, Tracer] | None = None


def _warn_if_unconfigured() -> None:
    # Imported here: the pipeline module pulls in the delivery machinery.
    from otel_stigmer._configure import warn_if_unconfigured  # noqa: PLC0415

    warn_if_unconfigured(trace.get_tracer_provider())


def _tracer() -> Tracer:
    # Looked up per call (cached per provider) so a provider configured after import is used.
    global _tracer_cache  # noqa: PLW0603 - a one-entry cache keyed by the global provider
    provider = trace.get_tracer_provider()
    cached = _tracer_cache
    if cached is None or cached[0] is not provider:
        cached = (provider, provider.get_tracer("otel_stigmer"))
        _tracer_cache = cached
    return cached[1]


def _new_call_id(spec: _Spec) -> str | None:
    """A task instance id shared by the attempts of one call (only needed with retries)."""
    return f"{random.getrandbits(64):016x}" if spec.retries else None


def _call_of(
    spec: _Spec, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> _Call | None:
    """The call's arguments, kept only where they can name the run (workflows)."""
    return _Call(wrapped, args, kwargs) if spec.is_workflow else None


def _begin(
    spec: _Spec, parent: Context, call: _Call | None, attempt: int, call_id: str | None = None
) -> _Run | None:
    try:
        return _begin_span(spec, parent, call, attempt, call_id)
    except Exception:
        if os.environ.get(RAISE_ENV) == "1":
            raise
        _log.exception("otel_stigmer: could not start the span for %r", spec.name)
        return None


def _begin_span(
    spec: _Spec, parent: Context, call: _Call | None, attempt: int, call_id: str | None
) -> _Run:
    attributes: dict[str, AttributeValue] = dict(spec.attributes)
    enclosing_id, enclosing_name = _enclosing_workflow(parent)
    if spec.is_workflow:
        from_call = _workflow_execution_id(spec, call) if call is not None else None
        execution_id = from_call or enclosing_id or new_execution_id()
        attributes[conv.WORKFLOW_EXECUTION_ID] = execution_id
        attributes[conv.WORKFLOW_NAME] = spec.name
        tracer = _tracer()
        if not enclosing_id:
            _warn_if_unconfigured()
        span = tracer.start_span(spec.name, context=parent, attributes=attributes)
        ctx = trace.set_span_in_context(span, parent)
        ctx = baggage.set_baggage(conv.BAGGAGE_EXECUTION_ID, execution_id, ctx)
        ctx = baggage.set_baggage(conv.BAGGAGE_WORKFLOW_NAME, spec.name, ctx)
        return _Run(span, ctx)
    if enclosing_id:
        attributes[conv.TASK_NAME] = spec.name
        attributes[conv.WORKFLOW_EXECUTION_ID] = enclosing_id
        if enclosing_name:
            attributes[conv.WORKFLOW_NAME] = enclosing_name
        if spec.retries:
            attributes[conv.TASK_ATTEMPT] = attempt
        if call_id:
            attributes[conv.TASK_INSTANCE_ID] = call_id
    elif not spec.warned:
        spec.warned = True
        _log.warning(
            "otel_stigmer: task %r ran outside any workflow; it is traced as an ordinary span "
            "and reports no progress (call it from a @workflow, or attach the workflow's "
            "context with otel_stigmer.propagation in a worker)",
            spec.name,
        )
    span = _tracer().start_span(spec.name, context=parent, attributes=attributes)
    return _Run(span, trace.set_span_in_context(span, parent))


def _enclosing_workflow(parent: Context) -> tuple[str | None, str | None]:
    """Execution id and workflow name from the parent span's attributes, else from baggage."""
    span_attributes = getattr(trace.get_current_span(parent), "attributes", None) or {}
    execution_id = span_attributes.get(conv.WORKFLOW_EXECUTION_ID)
    if execution_id:
        name = span_attributes.get(conv.WORKFLOW_NAME)
        return str(execution_id), str(name) if name else None
    execution_id = baggage.get_baggage(conv.BAGGAGE_EXECUTION_ID, parent)
    if execution_id:
        name = baggage.get_baggage(conv.BAGGAGE_WORKFLOW_NAME, parent)
        return str(execution_id), str(name) if name else None
    return None, None


def _workflow_execution_id(spec: _Spec, call: _Call) -> str | None:
    source = spec.execution_id
    if isinstance(source, str):
        return source or None
    if source is not None:
        try:
            return str(source(_bound_arguments(call))) or None
        except Exception:
            _log.exception("otel_stigmer: the execution_id callable of %r failed", spec.name)
    # Keyword arguments first: they need no signature binding.
    arguments: Mapping[str, Any] = call.kwargs
    if call.args and not any(arguments.get(p) for p in _EXECUTION_ID_PARAMETERS):
        arguments = _bound_arguments(call)
    for parameter in _EXECUTION_ID_PARAMETERS:
        if arguments.get(parameter):
            return str(arguments[parameter])
    return None


def _bound_arguments(call: _Call) -> Mapping[str, Any]:
    try:
        bound = inspect.signature(call.wrapped).bind_partial(*call.args, **call.kwargs)
    except (TypeError, ValueError):
        # The call itself will raise the same TypeError; leave the id to the other sources.
        return call.kwargs
    bound.apply_defaults()
    return bound.arguments


def _will_retry(spec: _Spec, exc: BaseException, attempt: int) -> bool:
    return attempt <= spec.retries and isinstance(exc, spec.retry_on)


def _is_cancellation(exc: BaseException) -> bool:
    # Engines have their own cancellation types (Temporal, anyio); they share the name.
    return isinstance(exc, _CANCELLATIONS) or type(exc).__name__ == "CancelledError"


def _finish(run: _Run | None, exc: BaseException | None, *, retrying: bool = False) -> None:
    if run is None:
        return
    span = run.span
    try:
        if exc is not None:
            if _is_cancellation(exc):
                span.set_attribute(conv.STATUS, conv.CANCELLED)
            else:
                span.record_exception(exc, escaped=not retrying)
                if retrying:
                    span.set_attribute(conv.STATUS, conv.RETRYING)
                span.set_status(
                    trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
                )
        span.end()
    except Exception:
        if os.environ.get(RAISE_ENV) == "1":
            raise
        _log.exception("otel_stigmer: could not end the span of %r", getattr(span, "name", "?"))


def _attach(run: _Run | None) -> object | None:
    if run is None:
        return None
    try:
        return otel_context.attach(run.context)
    except Exception:
        if os.environ.get(RAISE_ENV) == "1":
            raise
        _log.exception("otel_stigmer: could not attach the span context")
        return None


def _detach(token: object | None) -> None:
    if token is None:
        return
    try:
        otel_context.detach(cast(Any, token))
    except Exception:
        # A token used from another context (a generator finalised elsewhere) cannot be
        # detached there; the context it belongs to is gone with it.
        _log.debug("otel_stigmer: span context detach skipped", exc_info=True)
