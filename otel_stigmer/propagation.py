"""Carry the workflow's context (trace and baggage) to threads, subprocesses and remote workers.

Within one process, asyncio tasks (``asyncio.gather``, ``create_task``) and
``asyncio.to_thread`` inherit the context on their own. A plain thread pool does not:
submit through :class:`ContextExecutor`, or wrap the callable with :func:`run_in_context`.

Across processes, the W3C ``traceparent`` and ``baggage`` headers (the globally configured
OTel propagators) carry the trace and the workflow identity. These helpers always include the
identity; other outgoing calls include it only with ``STIGMER_IDENTITY_BAGGAGE=all`` (see
``otel_stigmer._baggage_policy``). Use :func:`inject_headers` on the
sending side, :func:`attach_headers` around the work on the receiving side. For a subprocess,
:func:`inject_environ` / :func:`attach_environ` use the environment variables ``TRACEPARENT``,
``TRACESTATE`` and ``BAGGAGE`` as the carrier.
"""

from __future__ import annotations

import contextvars
import functools
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.context import Context

from otel_stigmer._baggage_policy import unfiltered

__all__ = [
    "ContextExecutor",
    "attach_environ",
    "attach_headers",
    "inject_environ",
    "inject_headers",
    "run_in_context",
]

P = ParamSpec("P")
R = TypeVar("R")


def inject_headers(context: Context | None = None) -> dict[str, str]:
    """Return the propagation headers (``traceparent``, ``baggage``, ...) for a context.

    Args:
        context: The context to serialise; the current one by default.

    Returns:
        A new dict to send along with a request or message to a worker.
    """
    carrier: dict[str, str] = {}
    unfiltered().inject(carrier, context=context)
    return carrier


@contextmanager
def attach_headers(headers: Mapping[str, str]) -> Iterator[Context]:
    """Make the context carried by ``headers`` current for the duration of the block.

    Tasks run inside the block are children of the remote span and inherit the workflow's
    execution id and name from the baggage.

    Args:
        headers: Headers produced by :func:`inject_headers` (keys in lower case).

    Yields:
        The attached context.
    """
    ctx = propagate.extract(headers, context=otel_context.get_current())
    token = otel_context.attach(ctx)
    try:
        yield ctx
    finally:
        otel_context.detach(token)


def inject_environ(
    env: Mapping[str, str] | None = None, context: Context | None = None
) -> dict[str, str]:
    """Return a copy of ``env`` (``os.environ`` by default) with the context's carrier added.

    Pass the result as ``env=`` to :mod:`subprocess`; the child calls :func:`attach_environ`.

    Args:
        env: The environment to extend.
        context: The context to serialise; the current one by default.

    Returns:
        The environment with ``TRACEPARENT`` / ``TRACESTATE`` / ``BAGGAGE`` set.
    """
    result = dict(os.environ if env is None else env)
    for key, value in inject_headers(context).items():
        result[key.upper()] = value
    return result


@contextmanager
def attach_environ(env: Mapping[str, str] | None = None) -> Iterator[Context]:
    """Attach the context carried by the environment (see :func:`inject_environ`) for a block.

    Args:
        env: The environment to read; ``os.environ`` by default.

    Yields:
        The attached context.
    """
    source = os.environ if env is None else env
    headers = {key.lower(): value for key, value in source.items() if key.isupper()}
    with attach_headers(headers) as ctx:
        yield ctx


def run_in_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Bind ``fn`` to the current context, for running it later on another thread.

    Each call runs in its own copy of the context captured now, so the same bound callable
    may run on several threads at once.

    Args:
        fn: The callable to bind.

    Returns:
        A callable with the same signature.
    """
    captured = contextvars.copy_context()

    @functools.wraps(fn)
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        return captured.copy().run(fn, *args, **kwargs)

    return bound


class ContextExecutor(ThreadPoolExecutor):
    """A thread pool that runs every submitted callable in a copy of the submitter's context.

    A drop-in replacement for :class:`~concurrent.futures.ThreadPoolExecutor` (``map`` goes
    through ``submit`` too), so tasks run on the pool belong to the submitting workflow::

        with ContextExecutor(max_workers=4) as pool:
            results = list(pool.map(fetch, urls))
    """

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """Schedule ``fn(*args, **kwargs)`` in a copy of the current context."""
        ctx = contextvars.copy_context()

        def in_context() -> R:
            return ctx.run(fn, *args, **kwargs)

        return super().submit(in_context)
