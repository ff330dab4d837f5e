"""The open-source Stigmer server's ``updateStatus`` merge rules (pure).

A copy of ``BuildNewStateWithStatusStep`` of its ``update_status.go``: the stored status
is updated field by field with what the update carries, and the whole task list is
replaced whenever the update carries at least one task.
"""

from __future__ import annotations

from otel_stigmer.status.wire import ExecutionPhase, WorkflowExecutionStatus

__all__ = ["merge_status"]


def merge_status(
    stored: WorkflowExecutionStatus, update: WorkflowExecutionStatus
) -> WorkflowExecutionStatus:
    """Return ``stored`` with ``update`` merged in; neither argument is changed.

    - ``tasks``: replaced by the update's list when that list is not empty;
    - ``phase``: taken when not ``EXECUTION_PHASE_UNSPECIFIED``;
    - ``output``: taken when set;
    - ``error``, ``started_at``, ``completed_at``, ``temporal_workflow_id``: taken when
      not empty.
    """
    merged = WorkflowExecutionStatus()
    merged.CopyFrom(stored)
    if len(update.tasks) > 0:
        del merged.tasks[:]
        merged.tasks.extend(update.tasks)
    if update.phase != ExecutionPhase.EXECUTION_PHASE_UNSPECIFIED:
        merged.phase = update.phase
    if update.HasField("output"):
        merged.output.CopyFrom(update.output)
    if update.error:
        merged.error = update.error
    if update.started_at:
        merged.started_at = update.started_at
    if update.completed_at:
        merged.completed_at = update.completed_at
    if update.temporal_workflow_id:
        merged.temporal_workflow_id = update.temporal_workflow_id
    return merged
