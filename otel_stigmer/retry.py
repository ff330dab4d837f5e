"""Retry policy as data: which gRPC codes are retried and how long to back off (pure)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import grpc

from otel_stigmer.exceptions import ConfigError

__all__ = ["NEVER_RETRIED_CODES", "RETRYABLE_CODES", "RetryPolicy"]

#: Codes that mean "try again later". CANCELLED is left out on purpose: in this
#: library it means our own side gave up (the client was closed or the caller
#: cancelled), and repeating the call would only delay a shutdown.
RETRYABLE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)

#: Codes that repeating cannot fix; listed for documentation, and a policy refuses to
#: make any of them retryable, so a bad key never turns into a retry storm.
NEVER_RETRIED_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
    }
)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter over a set of retryable gRPC status codes.

    Attributes:
        initial_backoff: Delay before the first retry, in seconds.
        max_backoff: Upper bound of the computed delay, in seconds.
        multiplier: Growth factor of the delay per retry.
        jitter: Relative spread: each delay is scaled by a random factor in
            ``[1 - jitter, 1 + jitter]`` so clients that failed together do not retry together.
        retryable_codes: Status codes worth retrying.
        max_server_delay: Upper bound on a delay requested by the server, in seconds, so a
            misbehaving receiver cannot park a sender for hours.
    """

    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2
    retryable_codes: frozenset[grpc.StatusCode] = RETRYABLE_CODES
    max_server_delay: float = 60.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial_backoff) and self.initial_backoff > 0):
            raise ConfigError(f"RetryPolicy.initial_backoff={self.initial_backoff!r} must be > 0")
        if not (math.isfinite(self.max_backoff) and self.max_backoff >= self.initial_backoff):
            raise ConfigError(
                f"RetryPolicy.max_backoff={self.max_backoff!r} must be >= initial_backoff"
            )
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1):
            raise ConfigError(f"RetryPolicy.multiplier={self.multiplier!r} must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"RetryPolicy.jitter={self.jitter!r} must be within 0..1")
        if not (math.isfinite(self.max_server_delay) and self.max_server_delay >= 0):
            raise ConfigError(
                f"RetryPolicy.max_server_delay={self.max_server_delay!r} must be >= 0"
            )
        forbidden = self.retryable_codes & NEVER_RETRIED_CODES
        if forbidden:
            names = ", ".join(sorted(code.name for code in forbidden))
            raise ConfigError(f"RetryPolicy.retryable_codes must not contain {names}")

    def is_retryable(self, code: grpc.StatusCode) -> bool:
        """Return whether a call that failed with ``code`` is worth repeating."""
        return code in self.retryable_codes

    def backoff(
        self,
        attempt: int,
        *,
        rng: random.Random | None = None,
        server_delay: float | None = None,
    ) -> float:
        """Return the delay in seconds before retry number ``attempt``.

        Args:
            attempt: 1 for the first retry, 2 for the second, ...
            rng: Random source of the jitter (``random`` module when ``None``).
            server_delay: Delay the server asked for; the result is never shorter
                (capped at ``max_server_delay``).
        """
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        try:
            base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        except OverflowError:
            base = self.max_backoff
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        delay = min(self.max_backoff, base * (1.0 + spread))
        if server_delay is not None and server_delay > 0:
            delay = max(delay, min(server_delay, self.max_server_delay))
        return delay
