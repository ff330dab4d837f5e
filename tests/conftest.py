"""Shared test set-up: internal errors of the pipeline fail our own tests loudly."""

from __future__ import annotations

import os

# Production code logs and swallows internal errors; our own suite wants them raised.
os.environ.setdefault("OTEL_STIGMER_RAISE_INTERNAL_ERRORS", "1")
