"""RetryPolicy: which codes are retried and how the backoff grows (pure unit tests)."""

from __future__ import annotations

import random
from collections.abc import Callable

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_stigmer.exceptions import ConfigError
from otel_stigmer.retry import NEVER_RETRIED_CODES, RETRYABLE_CODES, RetryPolicy


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    ],
)
def test_transient_codes_are_retried(code: grpc.StatusCode) -> None:
    """The four transient codes of the contract are retryable by default."""
    assert RetryPolicy().is_retryable(code)


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    ],
)
def test_other_codes_are_not_retried(code: grpc.StatusCode) -> None:
    """Auth, request and our own cancellation failures are never retried by default."""
    assert not RetryPolicy().is_retryable(code)


def test_policy_refuses_to_retry_auth_failures() -> None:
    """A policy that would retry a rejected key cannot be built."""
    with pytest.raises(ConfigError, match="UNAUTHENTICATED"):
        RetryPolicy(retryable_codes=RETRYABLE_CODES | {grpc.StatusCode.UNAUTHENTICATED})
    assert not (RETRYABLE_CODES & NEVER_RETRIED_CODES)


def test_backoff_grows_exponentially_without_jitter() -> None:
    """With no jitter the delays are initial * multiplier**(n-1), capped at max_backoff."""
    policy = RetryPolicy(initial_backoff=0.2, multiplier=2.0, max_backoff=1.0, jitter=0.0)
    assert [policy.backoff(n) for n in range(1, 6)] == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0])


def test_backoff_jitter_is_seeded_and_bounded() -> None:
    """The same seed gives the same delays, all within +-jitter of the base."""
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=100.0, jitter=0.2)
    first = [policy.backoff(3, rng=random.Random(7)) for _ in range(3)]
    again = [policy.backoff(3, rng=random.Random(7)) for _ in range(3)]
    assert first == again
    spread = {policy.backoff(3, rng=random.Random(seed)) for seed in range(50)}
    assert all(3.2 <= delay <= 4.8 for delay in spread)
    assert len(spread) > 40


def test_server_delay_is_a_floor_with_a_cap() -> None:
    """A server's RetryInfo lengthens the wait, up to max_server_delay, but never shortens it."""
    policy = RetryPolicy(initial_backoff=0.2, jitter=0.0, max_server_delay=30.0)
    assert policy.backoff(1, server_delay=2.5) == 2.5
    assert policy.backoff(1, server_delay=0.05) == pytest.approx(0.2)
    assert policy.backoff(1, server_delay=3600.0) == 30.0
    assert policy.backoff(1, server_delay=None) == pytest.approx(0.2)


@given(attempt=st.integers(min_value=1, max_value=10_000), seed=st.integers(0, 2**32))
def test_backoff_never_exceeds_the_cap(attempt: int, seed: int) -> None:
    """Any attempt number gives a delay in (0, max_backoff], even when the power overflows."""
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=5.0, multiplier=10.0, jitter=0.5)
    delay = policy.backoff(attempt, rng=random.Random(seed))
    assert 0 < delay <= 5.0


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: RetryPolicy(initial_backoff=0.0), "initial_backoff"),
        (lambda: RetryPolicy(max_backoff=0.1, initial_backoff=1.0), "max_backoff"),
        (lambda: RetryPolicy(multiplier=0.5), "multiplier"),
        (lambda: RetryPolicy(jitter=1.5), "jitter"),
        (lambda: RetryPolicy(max_server_delay=-1.0), "max_server_delay"),
    ],
)
def test_invalid_policy_is_refused(build: Callable[[], RetryPolicy], field: str) -> None:
    """Nonsensical policy values fail at construction, naming the field."""
    with pytest.raises(ConfigError, match=field):
        build()


def test_attempt_numbers_start_at_one() -> None:
    """backoff(0) is a programming error."""
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy().backoff(0)
