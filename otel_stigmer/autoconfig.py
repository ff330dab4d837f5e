"""Zero-code set-up under ``opentelemetry-instrument``: the ``stigmer`` exporter and configurator.

``OTEL_TRACES_EXPORTER=stigmer`` names the ``stigmer`` entry point of the
``opentelemetry_traces_exporter`` group. Whichever configurator runs (this package's
``stigmer``, or ``opentelemetry-distro``'s), the result is the same: the *live*
:class:`~otel_stigmer.StigmerSpanProcessor` on the global provider (starts reported as they
happen, task identity inherited from the parent span or baggage), at most one per provider,
and a Stigmer misconfiguration logs one error and turns Stigmer off while every other
exporter keeps working.

* :class:`StigmerAutoExporter` is what the entry point creates. The SDK's configurator sets
  the global provider before it builds the exporters, so the exporter's constructor attaches
  the live pipeline there; the exporter itself exports nothing (the SDK wraps it in a batch
  processor that then has nothing to do).
* :class:`StigmerConfigurator` (entry point ``stigmer`` of ``opentelemetry_configurator``)
  runs the SDK's standard set-up without that idle batch processor, and drops a metrics or
  logs exporter that is not installed (one error) instead of failing the whole set-up.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import entry_points
from typing import Any

from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_stigmer._configure import StigmerPipeline, configure_as
from otel_stigmer._guard import RAISE_ENV
from otel_stigmer.exceptions import ConfigError

__all__ = ["EXPORTER_NAME", "StigmerAutoExporter", "StigmerConfigurator", "attach_live"]

_log = logging.getLogger("otel_stigmer")

#: The name to put in ``OTEL_TRACES_EXPORTER``.
EXPORTER_NAME = "stigmer"
_SOURCE = f"{OTEL_TRACES_EXPORTER}={EXPORTER_NAME}"
_GROUPS = {
    OTEL_METRICS_EXPORTER: "opentelemetry_metrics_exporter",
    OTEL_LOGS_EXPORTER: "opentelemetry_logs_exporter",
}
# Names the SDK maps to another entry point name (OTLP over gRPC by default).
_ALIASES = {"otlp": "otlp_proto_grpc"}


def attach_live() -> StigmerPipeline:
    """Attach the live pipeline to the global provider, as the zero-code path does.

    Never raises: a misconfiguration is logged once (the message names the variable and the
    fix) and an inactive pipeline is returned, so the process's other exporters keep working.
    """
    try:
        return configure_as(_SOURCE)
    except ConfigError as exc:
        _log.error("otel-stigmer: reporting is off (other exporters are unaffected): %s", exc)
        return StigmerPipeline(None, None, reason=str(exc))
    except Exception as exc:
        if os.environ.get(RAISE_ENV) == "1":
            raise
        _log.exception("otel-stigmer: reporting is off (other exporters are unaffected)")
        return StigmerPipeline(None, None, reason=repr(exc))


class StigmerAutoExporter(SpanExporter):
    """Created by ``OTEL_TRACES_EXPORTER=stigmer``: attaches the live pipeline, exports nothing.

    Attributes:
        pipeline: The pipeline attached to the global provider (inactive when misconfigured).
    """

    def __init__(self) -> None:
        self.pipeline = attach_live()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Nothing to do: the live processor has reported these spans already."""
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release (the pipeline is shut down with its provider and at exit)."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Flush the live pipeline."""
        return self.pipeline.force_flush(timeout_millis)


class StigmerConfigurator(_OTelSDKConfigurator):
    """The SDK's standard configurator, with the live Stigmer pipeline and no crash on a
    missing metrics or logs exporter."""

    def _configure(self, **kwargs: Any) -> None:
        traces = _names(os.environ.get(OTEL_TRACES_EXPORTER, ""))
        overrides = {OTEL_TRACES_EXPORTER: _joined(n for n in traces if n != EXPORTER_NAME)}
        for variable, group in _GROUPS.items():
            names = _names(os.environ.get(variable, ""))
            installed = [n for n in names if _installed(group, n)]
            for missing in sorted(set(names) - set(installed)):
                _log.error(
                    "otel-stigmer: %s=%s names an exporter that is not installed; it is left "
                    "out so that the rest of OpenTelemetry starts (install it, or set %s=none)",
                    variable,
                    missing,
                    variable,
                )
            overrides[variable] = _joined(installed)
        with _environment(overrides):
            super()._configure(**kwargs)  # type: ignore[no-untyped-call]
        if EXPORTER_NAME in traces:
            attach_live()


def _names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    return [] if names == ["none"] else names


def _joined(names: Iterator[str] | list[str]) -> str:
    return ",".join(names) or "none"


def _installed(group: str, name: str) -> bool:
    wanted = _ALIASES.get(name, name)
    return any(ep.name == wanted for ep in entry_points(group=group))


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
