"""Retry policy as data: which gRPC codes are retried and how long to back off (pure)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import grpc

from otel_stigmer.exceptions import CallbackError, ConfigError

__all__ = [
    "AUTH_CODES",
    "NEVER_RETRIED_CODES",
    "RETRYABLE_CODES",
    "SHRINK_CODES",
    "RetryPolicy",
    "broken_sink_error",
    "describe_failure",
]

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

#: Codes that mean the receiver refused the API key. A single call gives up on them; the
#: delivery pipeline keeps its events and pauses (``auth_backoff``), because a key can be
#: fixed or rotated (a key file is re-read) while the process runs.
AUTH_CODES: frozenset[grpc.StatusCode] = frozenset(
    {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}
)

#: Codes after which the delivery pipeline halves its batch: the receiver took too long
#: or is overloaded, and a smaller batch may get through where the same one never will.
SHRINK_CODES: frozenset[grpc.StatusCode] = frozenset(
    {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)

_HINTS: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAUTHENTICATED: "the receiver refused the API key; check "
    "STIGMER_SERVICE_API_KEY or STIGMER_SERVICE_API_KEY_FILE",
    grpc.StatusCode.PERMISSION_DENIED: "the API key may not report progress; check "
    "STIGMER_SERVICE_API_KEY or STIGMER_SERVICE_API_KEY_FILE",
    grpc.StatusCode.INVALID_ARGUMENT: "the receiver refused the event as invalid",
    grpc.StatusCode.DEADLINE_EXCEEDED: "no answer within STIGMER_SERVICE_TIMEOUT",
}


def describe_failure(code: grpc.StatusCode, details: str, consequence: str) -> str:
    """The one wording of a failed call, shared by the client and the delivery pipeline.

    Args:
        code: The call's status code.
        details: The receiver's text (already free of the API key).
        consequence: What happens to the event(s), e.g. ``"retrying with backoff"``.
    """
    hint = _HINTS.get(code)
    text = f"Stigmer callback failed with {code.name}: {details or 'no details'}"
    if hint:
        text += f" ({hint})"
    return f"{text}; {consequence}"


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
        auth_initial_backoff: The delivery pipeline's first pause after the receiver
            refused the key (:data:`AUTH_CODES`), in seconds; it doubles per refusal.
        auth_max_backoff: Upper bound of that pause, in seconds.
    """

    initial_backoff: float = 0.2
    max_backoff: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2
    retryable_codes: frozenset[grpc.StatusCode] = RETRYABLE_CODES
    max_server_delay: float = 60.0
    auth_initial_backoff: float = 2.0
    auth_max_backoff: float = 60.0

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
        if not (
            math.isfinite(self.auth_max_backoff)
            and 0 < self.auth_initial_backoff <= self.auth_max_backoff
        ):
            raise ConfigError(
                f"RetryPolicy.auth_initial_backoff={self.auth_initial_backoff!r} must be > 0 "
                f"and <= auth_max_backoff={self.auth_max_backoff!r}"
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

    def pipeline_delay(
        self,
        code: grpc.StatusCode,
        failures: int,
        *,
        rng: random.Random | None = None,
        server_delay: float | None = None,
    ) -> float:
        """The delivery pipeline's pause after ``failures`` failed sends in a row.

        A refused key (:data:`AUTH_CODES`) pauses for ``auth_initial_backoff`` doubling to
        ``auth_max_backoff``; any other failure backs off as :meth:`backoff` says.
        """
        if code in AUTH_CODES:
            base = self.auth_initial_backoff * 2.0 ** min(max(failures, 1) - 1, 16)
            return min(base, self.auth_max_backoff)
        return self.backoff(max(failures, 1), rng=rng, server_delay=server_delay)


def broken_sink_error(error: BaseException) -> CallbackError:
    """The failure a sink that raised something else than a CallbackError stands for.

    Treated like an unavailable receiver: the events are kept and retried.
    """
    return CallbackError(grpc.StatusCode.UNKNOWN, type(error).__name__)
