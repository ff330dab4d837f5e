"""Whether code runs inside Temporal's workflow sandbox (imports nothing from temporalio).

Temporal re-imports a workflow's module in a sandbox for every workflow run. A module-level
``otel_stigmer.configure()`` in that module would build a new pipeline each time, never
freed; :func:`sandbox_pipeline` lets ``configure()`` do nothing there instead.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otel_stigmer.setup import StigmerPipeline

__all__ = ["in_workflow_sandbox", "sandbox_pipeline"]


def in_workflow_sandbox() -> bool:
    """Whether the caller runs in a Temporal workflow sandbox."""
    # temporalio is a passthrough module: inside the sandbox it is the host's, imported.
    workflow = sys.modules.get("temporalio.workflow")
    if workflow is None:
        return False
    try:
        return bool(workflow.unsafe.in_sandbox())
    except Exception:
        return False


def sandbox_pipeline() -> StigmerPipeline | None:
    """An inert pipeline (attached to nothing, no thread) in the sandbox; else None."""
    if not in_workflow_sandbox():
        return None
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415 - rarely needed

    from otel_stigmer.processor import StigmerSpanProcessor  # noqa: PLC0415 - avoid a cycle
    from otel_stigmer.setup import StigmerPipeline  # noqa: PLC0415 - avoid a cycle
    from otel_stigmer.sinks import MemorySink  # noqa: PLC0415 - avoid a cycle

    processor = StigmerSpanProcessor(MemorySink())
    return StigmerPipeline(processor, TracerProvider(shutdown_on_exit=False))
