"""A workflow module laid out like Temporal's samples: ``configure()`` at module level.

The workflow sandbox re-imports this module for every run; ``configure()`` must then do
nothing (no provider, no exit hook, no thread, no error for missing configuration).
"""

from __future__ import annotations

from temporalio import workflow

import otel_stigmer
from otel_stigmer.contrib.temporal import in_workflow_sandbox

PIPELINE = otel_stigmer.configure()
IMPORTED_IN_SANDBOX = in_workflow_sandbox()


@workflow.defn
class ModuleLevelConfigureWorkflow:
    """Says whether its module was imported in the sandbox."""

    @workflow.run
    async def run(self) -> bool:
        """Return whether ``configure()`` ran in the sandbox."""
        return IMPORTED_IN_SANDBOX
