"""What a span stands for in the Stigmer model, decided in one place.

The live processor, the exporter, the test capture and the mapping all ask
:func:`role_of`; :func:`claim_role` also writes the inherited workflow identity onto a
starting task or marker span (from its parent span in this process, else from baggage).
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

from opentelemetry import baggage, trace
from opentelemetry.context import Context
from opentelemetry.util.types import Attributes

from otel_stigmer import conventions as conv
from otel_stigmer.events import TERMINAL_EVENT_TYPES
from otel_stigmer.values import attributes_view

__all__ = ["NO_ROLE", "Kind", "SpanRole", "claim_role", "role_of"]


class Kind(enum.Enum):
    """The kinds of span the pipeline knows."""

    WORKFLOW = "workflow"
    TASK = "task"
    MARKER = "marker"
    NONE = "none"


class SpanRole(NamedTuple):
    """A span's role and the identity that goes with it (a tuple: cheap to make per hook).

    Attributes:
        kind: Workflow, task, marker (a span that stands for one event) or none.
        execution_id: The workflow execution it reports to; empty when unknown.
        event_type: The event a marker span stands for; empty for other kinds.
    """

    kind: Kind
    execution_id: str = ""
    event_type: str = ""

    @property
    def reported(self) -> bool:
        """True when the span produces events: it has a role and an execution to report to."""
        return self.kind is not Kind.NONE and bool(self.execution_id)

    @property
    def terminal(self) -> bool:
        """True for a marker that ends a workflow or task (kept first when queues are full)."""
        return self.kind is Kind.MARKER and self.event_type in TERMINAL_EVENT_TYPES


#: The role of a span that is neither workflow, task nor marker.
NO_ROLE = SpanRole(Kind.NONE)
_new = tuple.__new__  # builds a SpanRole in C (its generated __new__ is Python)
_WORKFLOW, _TASK, _MARKER = Kind.WORKFLOW, Kind.TASK, Kind.MARKER


def role_of(attributes: Attributes) -> SpanRole:
    """Return the span's role from its attributes.

    A marker carries ``stigmer.event.type``, a task ``stigmer.task.name``, a workflow only
    ``stigmer.workflow.execution_id``. A task or marker without an execution id has a role
    but is not :attr:`~SpanRole.reported`: outside any workflow it stays a plain span.
    """
    if not attributes:
        return NO_ROLE
    execution_id = attributes.get(conv.WORKFLOW_EXECUTION_ID)
    if type(execution_id) is not str:
        execution_id = _text(execution_id)
    if conv.EVENT_TYPE in attributes:
        return _new(SpanRole, (_MARKER, execution_id, _text(attributes.get(conv.EVENT_TYPE))))
    if conv.TASK_NAME in attributes:
        return _new(SpanRole, (_TASK, execution_id, ""))
    if execution_id:
        return _new(SpanRole, (_WORKFLOW, execution_id, ""))
    return NO_ROLE


def claim_role(span: Any, parent_context: Context | None) -> SpanRole:
    """Return the role of a starting SDK span, inheriting the workflow identity if needed.

    A task or marker span without an execution id takes it (and the workflow name) from
    the parent span in this process, else from OTel baggage, and keeps it as attributes,
    so an exporter that sees only ended spans has it too.
    """
    role = role_of(attributes_view(span))
    if role.kind in (Kind.TASK, Kind.MARKER) and not role.execution_id:
        _inherit_workflow(span, parent_context)
        role = role_of(attributes_view(span))
    return role


def _inherit_workflow(span: Any, parent_context: Context | None) -> None:
    parent = trace.get_current_span(parent_context)
    parent_attributes = attributes_view(parent) if hasattr(parent, "attributes") else None
    if parent_attributes and parent_attributes.get(conv.WORKFLOW_EXECUTION_ID):
        span.set_attribute(
            conv.WORKFLOW_EXECUTION_ID, parent_attributes[conv.WORKFLOW_EXECUTION_ID]
        )
        name = parent_attributes.get(conv.WORKFLOW_NAME)
        if name is None and conv.TASK_NAME not in parent_attributes:
            name = getattr(parent, "name", None)
        if name is not None and conv.WORKFLOW_NAME not in (span.attributes or {}):
            span.set_attribute(conv.WORKFLOW_NAME, name)
        return
    values = baggage.get_all(parent_context)
    execution_id = values.get(conv.BAGGAGE_EXECUTION_ID)
    if execution_id:
        span.set_attribute(conv.WORKFLOW_EXECUTION_ID, str(execution_id))
        name = values.get(conv.BAGGAGE_WORKFLOW_NAME)
        if name and conv.WORKFLOW_NAME not in (span.attributes or {}):
            span.set_attribute(conv.WORKFLOW_NAME, str(name))


def _text(value: object) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)
