"""Semantic conventions: the span attribute, span event and baggage names otel-stigmer reads.

A span is a *workflow span* when it carries :data:`WORKFLOW_EXECUTION_ID` and no
:data:`TASK_NAME`; it is a *task span* when it carries :data:`TASK_NAME`. Any other
span has no Stigmer role and produces no progress events.
"""

from __future__ import annotations

from typing import Final

#: Execution id of the workflow run. Set on workflow spans; inherited onto task spans.
WORKFLOW_EXECUTION_ID: Final = "stigmer.workflow.execution_id"
#: Workflow name. Defaults to the workflow span's name; inherited onto task spans.
WORKFLOW_NAME: Final = "stigmer.workflow.name"
#: Task name. Its presence makes a span a task span.
TASK_NAME: Final = "stigmer.task.name"
#: Attempt number of a task (1 for the first attempt).
TASK_ATTEMPT: Final = "stigmer.task.attempt"
#: Identity of one task call, shared by all its attempts (each attempt is its own span).
#: Defaults to the task span's span id, so a task without retries needs nothing here.
TASK_INSTANCE_ID: Final = "stigmer.task.instance_id"
#: Explicit error code for a failed span; overrides ``exception.type``.
ERROR_CODE: Final = "stigmer.error.code"
#: Explicit outcome: set to ``"cancelled"`` to report a span end as cancelled.
STATUS: Final = "stigmer.status"
#: Progress in percent (0-100), on a :data:`PROGRESS_EVENT` span event.
PROGRESS: Final = "stigmer.progress"
#: Human-readable message, on a span or on any span event.
MESSAGE: Final = "stigmer.message"
#: Span attributes with this prefix are copied into the event's ``metadata`` map.
METADATA_PREFIX: Final = "stigmer.metadata."

#: Name of the span event that reports progress (``workflow_progress`` / ``task_progress``).
PROGRESS_EVENT: Final = "progress"

#: Baggage entries that carry the workflow identity across threads, processes and workers.
BAGGAGE_EXECUTION_ID: Final = WORKFLOW_EXECUTION_ID
BAGGAGE_WORKFLOW_NAME: Final = WORKFLOW_NAME

#: Value of :data:`STATUS` that marks a cancelled span.
CANCELLED: Final = "cancelled"
#: Value of :data:`STATUS` on a failed task attempt that will be retried (reported as
#: ``task_retry`` with the error, instead of ``task_failed``).
RETRYING: Final = "retrying"

#: Set to ``True`` on a task or workflow span whose start and outcome are reported by other
#: means (marker spans, as the Temporal integration does): only its span events (progress,
#: pause, resume, retry) become progress events, live as they are added.
EVENTS_ONLY: Final = "stigmer.span.events_only"

#: Marks a *marker span*: a span that stands for exactly one progress event of this type
#: (for example ``workflow_started``) at its start time, instead of a start/end pair.
#: Integrations whose engine cannot hold a span open (Temporal workflow code) use it.
EVENT_TYPE: Final = "stigmer.event.type"
#: Explicit event id of a marker span, instead of one derived from its span. Integrations
#: that may report the same fact from several processes (Temporal: the activity worker, the
#: workflow worker, a watcher) derive it from the engine's own ids, so receivers that
#: de-duplicate by event id store the fact once.
EVENT_ID: Final = "stigmer.event.id"
