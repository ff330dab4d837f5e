"""Exceptions raised by otel-stigmer."""

from __future__ import annotations

import grpc


class ConfigError(ValueError):
    """Invalid configuration; the message names the variable, the bad value and the fix."""


class CallbackError(Exception):
    """A ``report_progress`` call failed.

    Attributes:
        code: The gRPC status code of the failed call.
        details: The server's error text (never contains the API key).
        retry_delay: The delay the server asked for before a retry, in seconds, if any.
    """

    def __init__(
        self, code: grpc.StatusCode, details: str, *, retry_delay: float | None = None
    ) -> None:
        super().__init__(f"report_progress failed: {code.name}: {details}")
        self.code = code
        self.details = details
        self.retry_delay = retry_delay
