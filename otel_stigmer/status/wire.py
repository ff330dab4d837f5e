"""The open-source Stigmer's ``updateStatus`` messages and enums, under short names."""

from __future__ import annotations

from otel_stigmer._proto.ai.stigmer.agentic.workflowexecution.v1.api_pb2 import (
    WorkflowExecution,
    WorkflowExecutionStatus,
    WorkflowTask,
)
from otel_stigmer._proto.ai.stigmer.agentic.workflowexecution.v1.command_pb2 import (
    WorkflowExecutionUpdateStatusInput,
)
from otel_stigmer._proto.ai.stigmer.agentic.workflowexecution.v1.enum_pb2 import (
    ExecutionPhase,
    WorkflowTaskStatus,
    WorkflowTaskType,
)

__all__ = [
    "TERMINAL_PHASES",
    "TERMINAL_TASK_STATUSES",
    "ExecutionPhase",
    "WorkflowExecution",
    "WorkflowExecutionStatus",
    "WorkflowExecutionUpdateStatusInput",
    "WorkflowTask",
    "WorkflowTaskStatus",
    "WorkflowTaskType",
]

#: Phases after which an execution changes no more.
TERMINAL_PHASES: frozenset[int] = frozenset(
    {
        ExecutionPhase.EXECUTION_COMPLETED,
        ExecutionPhase.EXECUTION_FAILED,
        ExecutionPhase.EXECUTION_CANCELLED,
    }
)

#: Task statuses that end a task call.
TERMINAL_TASK_STATUSES: frozenset[int] = frozenset(
    {
        WorkflowTaskStatus.WORKFLOW_TASK_COMPLETED,
        WorkflowTaskStatus.WORKFLOW_TASK_FAILED,
        WorkflowTaskStatus.WORKFLOW_TASK_SKIPPED,
    }
)
