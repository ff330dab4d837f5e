"""The workflow run by ``otel-stigmer demo``: business code instrumented only with decorators."""
