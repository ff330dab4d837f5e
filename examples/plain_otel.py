"""Plain OpenTelemetry, no Stigmer import: a workflow span, a task span, a progress event.

Run it with no code change: ``OTEL_TRACES_EXPORTER=stigmer opentelemetry-instrument python
examples/plain_otel.py`` (and the three ``STIGMER_SERVICE_*`` variables).
"""

from opentelemetry import trace

tracer = trace.get_tracer("runner")

with tracer.start_as_current_span(
    "ingest", attributes={"stigmer.workflow.execution_id": "wfexec-123"}
):
    with tracer.start_as_current_span("fetch", attributes={"stigmer.task.name": "fetch"}) as span:
        span.add_event("progress", {"stigmer.progress": 50, "stigmer.message": "half way"})
