"""Which Stigmer execution a Temporal workflow run belongs to (pure)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ExecutionIdContext",
    "ExecutionIdResolver",
    "Identity",
    "from_memo",
    "from_search_attribute",
    "from_workflow_id",
    "resolve_identity",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutionIdContext:
    """What a resolver may read to find a workflow run's Stigmer execution id.

    Attributes:
        workflow_id: The Temporal workflow id.
        run_id: The Temporal run id.
        workflow_type: The Temporal workflow type (the Stigmer workflow name).
        memo: The workflow's memo, decoded; empty where it is unknown (an activity whose
            workflow worker does not run the interceptor).
        search_attributes: The workflow's search attributes at start, by name; empty
            where unknown.
    """

    workflow_id: str
    run_id: str
    workflow_type: str
    memo: Mapping[str, Any] = field(default_factory=dict)
    search_attributes: Mapping[str, Any] = field(default_factory=dict)


#: Returns the execution id for a workflow run, or None to fall back to the workflow id.
ExecutionIdResolver = Callable[[ExecutionIdContext], "str | None"]


@dataclass(frozen=True)
class Identity:
    """The Stigmer identity of one workflow run (and its parent run, for a child)."""

    execution_id: str
    workflow_name: str
    parent_workflow_id: str = ""
    parent_run_id: str = ""


def from_workflow_id() -> ExecutionIdResolver:
    """Use the Temporal workflow id as the execution id (the default)."""

    def resolve(context: ExecutionIdContext) -> str | None:
        return context.workflow_id

    return resolve


def from_memo(key: str) -> ExecutionIdResolver:
    """Read the execution id from the workflow memo field ``key``."""

    def resolve(context: ExecutionIdContext) -> str | None:
        return _as_text(context.memo.get(key))

    return resolve


def from_search_attribute(name: str) -> ExecutionIdResolver:
    """Read the execution id from the search attribute ``name`` (its first value if a list)."""

    def resolve(context: ExecutionIdContext) -> str | None:
        return _as_text(context.search_attributes.get(name))

    return resolve


def resolve_identity(resolver: ExecutionIdResolver, context: ExecutionIdContext) -> Identity:
    """Apply ``resolver``, falling back to the workflow id when it gives nothing or fails."""
    execution_id: str | None = None
    try:
        execution_id = _as_text(resolver(context))
    except Exception:
        _log.warning(
            "execution id resolver failed for workflow %s; using the workflow id",
            context.workflow_id,
            exc_info=True,
        )
    if not execution_id:
        execution_id = context.workflow_id
    return Identity(execution_id=execution_id, workflow_name=context.workflow_type)


def _as_text(value: object) -> str | None:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text or None
