"""Whether code runs inside Temporal's workflow sandbox (imports nothing from temporalio).

Temporal re-imports a workflow's module in a sandbox for every workflow run. A module-level
``otel_stigmer.configure()`` in that module would build a new pipeline each time, never
freed; :func:`in_workflow_sandbox` lets ``configure()`` do nothing there instead.
"""

from __future__ import annotations

import sys

__all__ = ["in_workflow_sandbox"]


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
