"""What leaves the process: the workflow identity in the W3C ``baggage`` header.

``@workflow`` puts ``stigmer.workflow.execution_id`` and ``stigmer.workflow.name`` into OTel
baggage so that tasks inherit them. The globally configured propagator is what instrumented
HTTP, gRPC and messaging clients use for *every* outgoing call, to any host, and a
propagator is never told the destination, so a per-host allow-list cannot be enforced there.
The policy is therefore by channel, chosen with ``STIGMER_IDENTITY_BAGGAGE``:

* ``helpers`` (default): the global propagator leaves these two entries out; they travel only
  through ``otel_stigmer.propagation`` (``inject_headers``, ``inject_environ``) and the
  Temporal interceptor, which you call for the workers you own. Other baggage entries and
  ``traceparent`` are untouched.
* ``all``: the global propagator sends them too (OpenTelemetry's default behaviour).
"""

from __future__ import annotations

import os
import sys
import threading

from opentelemetry import baggage, propagate
from opentelemetry.context import Context, get_current
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)

from otel_stigmer import conventions as conv
from otel_stigmer._forksafe import renew_after_fork
from otel_stigmer.exceptions import ConfigError

__all__ = ["ENV_IDENTITY_BAGGAGE", "IdentityFilteringPropagator", "install", "unfiltered"]

#: ``helpers`` (default) or ``all``: which channels carry the workflow identity in baggage.
ENV_IDENTITY_BAGGAGE = "STIGMER_IDENTITY_BAGGAGE"
_POLICIES = ("helpers", "all")
_IDENTITY_KEYS = (conv.BAGGAGE_EXECUTION_ID, conv.BAGGAGE_WORKFLOW_NAME)
_lock = threading.Lock()
renew_after_fork(sys.modules[__name__], "_lock")


class IdentityFilteringPropagator(TextMapPropagator):
    """Wraps a propagator and leaves the Stigmer identity out of what it injects."""

    def __init__(self, inner: TextMapPropagator) -> None:
        self.inner = inner

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        """Inject like the wrapped propagator, without the Stigmer baggage entries."""
        ctx = get_current() if context is None else context
        entries = baggage.get_all(ctx)
        for key in _IDENTITY_KEYS:
            if key in entries:
                ctx = baggage.remove_baggage(key, ctx)
        self.inner.inject(carrier, ctx, setter)

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        """Extract like the wrapped propagator (incoming identity is accepted)."""
        return self.inner.extract(carrier, context, getter)

    @property
    def fields(self) -> set[str]:
        """The wrapped propagator's fields."""
        return set(self.inner.fields)


def policy() -> str:
    """The configured policy, ``helpers`` or ``all``.

    Raises:
        ConfigError: For any other value.
    """
    value = os.environ.get(ENV_IDENTITY_BAGGAGE, "").strip().lower() or "helpers"
    if value not in _POLICIES:
        raise ConfigError(
            f"{ENV_IDENTITY_BAGGAGE}={value!r}: not a policy. Fix: use 'helpers' (the identity "
            "travels only through otel_stigmer.propagation and the Temporal interceptor) or "
            "'all' (every instrumented outgoing call carries it in the baggage header)."
        )
    return value


def install() -> None:
    """Apply the policy to the global propagator (idempotent)."""
    wanted = policy()
    with _lock:
        current = propagate.get_global_textmap()
        wrapped = isinstance(current, IdentityFilteringPropagator)
        if wanted == "helpers" and not wrapped:
            propagate.set_global_textmap(IdentityFilteringPropagator(current))
        elif wanted == "all" and isinstance(current, IdentityFilteringPropagator):
            propagate.set_global_textmap(current.inner)


def unfiltered() -> TextMapPropagator:
    """The global propagator without the filter: what the project's own helpers inject with."""
    current = propagate.get_global_textmap()
    return current.inner if isinstance(current, IdentityFilteringPropagator) else current
