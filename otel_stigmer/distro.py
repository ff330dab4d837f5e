"""The ``stigmer`` OpenTelemetry distro: defaults for ``opentelemetry-instrument``.

Selected by ``opentelemetry-instrument`` when it is the only distro installed, or with
``OTEL_PYTHON_DISTRO=stigmer`` (OpenTelemetry picks the first distro it finds otherwise).
It only sets defaults, each kept when the variable is already set:

* ``OTEL_TRACES_EXPORTER=stigmer``: the live Stigmer pipeline;
* ``OTEL_METRICS_EXPORTER=none`` and ``OTEL_LOGS_EXPORTER=none``: Stigmer uses traces only,
  and no OTLP collector is assumed (set them to ``otlp`` to send metrics and logs there).

This module needs ``opentelemetry-instrumentation`` (which provides ``opentelemetry-instrument``).
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.instrumentation.distro import BaseDistro

from otel_stigmer.autoconfig import EXPORTER_NAME

__all__ = ["DEFAULTS", "StigmerDistro"]

#: The variables the distro sets when they are unset.
DEFAULTS = {
    OTEL_TRACES_EXPORTER: EXPORTER_NAME,
    OTEL_METRICS_EXPORTER: "none",
    OTEL_LOGS_EXPORTER: "none",
}


class StigmerDistro(BaseDistro):  # type: ignore[misc]  # the base module is untyped
    """Sets :data:`DEFAULTS` for each variable that is unset."""

    def _configure(self, **kwargs: Any) -> None:
        for name, value in DEFAULTS.items():
            if not os.environ.get(name, "").strip():
                os.environ[name] = value
