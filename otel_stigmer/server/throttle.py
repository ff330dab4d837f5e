"""Throttling of failed authentication per client address, with one summarised log line.

Each address has a budget of failed attempts (a token bucket): ``burst`` failures at
once, refilled at ``per_second``. An address that spent its budget is refused without its
key being looked at until a token is back, so guessing costs time whatever the attacker
sends. Successful calls, and calls that present no key at all, cost nothing. Rejections
are logged at most once per ``log_interval``: the first one at once, the rest summed up
in the next line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FailureThrottle", "peer_address"]

_log = logging.getLogger("otel_stigmer.server.auth")

_MAX_TRACKED_ADDRESSES = 10_000


def peer_address(peer: str) -> str:
    """The address part of a gRPC peer (``ipv4:127.0.0.1:5000`` -> ``127.0.0.1``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition("]")[0].lstrip("[%") or rest
    if kind == "ipv4":
        return rest.rpartition(":")[0] or rest
    return peer  # unix sockets and the like: one bucket per name


@dataclass
class _Bucket:
    tokens: float
    updated: float


class FailureThrottle:
    """Per-address budget of failed authentications.

    Args:
        burst: Failures an address may make at once.
        per_second: Failures per second an address earns back.
        log_interval: Seconds between two log lines about rejected calls.
        clock: Monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        *,
        burst: int = 20,
        per_second: float = 2.0,
        log_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = float(burst)
        self._rate = per_second
        self._interval = log_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._next_line = 0.0
        self._rejected = 0
        self._throttled = 0
        self._addresses: set[str] = set()

    def __repr__(self) -> str:
        return f"FailureThrottle(burst={self._burst:g}, per_second={self._rate:g})"

    def wait_time(self, address: str) -> float:
        """Seconds until ``address`` may try a key again; 0 when it may now.

        A positive answer counts as a refused attempt in the log summary.
        """
        with self._lock:
            bucket = self._refill(address)
            if bucket is None or bucket.tokens >= 1.0:
                return 0.0
            self._throttled += 1
            self._addresses.add(address)
            self._maybe_log()
            return (1.0 - bucket.tokens) / self._rate

    def record_failure(self, address: str, reason: str, *, guess: bool = True) -> None:
        """Count a rejected call; a ``guess`` (a key that did not match) spends a token."""
        with self._lock:
            now = self._clock()
            if guess:
                bucket = self._refill(address)
                if bucket is None:
                    if len(self._buckets) >= _MAX_TRACKED_ADDRESSES:
                        self._forget_recovered(now)
                    bucket = self._buckets[address] = _Bucket(self._burst, now)
                bucket.tokens = max(0.0, bucket.tokens - 1.0)
            self._rejected += 1
            self._addresses.add(address)
            self._maybe_log(reason)

    def flush_log(self) -> None:
        """Log what the current interval holds (for example when the server stops)."""
        with self._lock:
            self._next_line = 0.0
            self._maybe_log()

    def _refill(self, address: str) -> _Bucket | None:
        bucket = self._buckets.get(address)
        if bucket is not None:
            now = self._clock()
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        return bucket

    def _forget_recovered(self, now: float) -> None:
        for address, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.updated) * self._rate >= self._burst:
                del self._buckets[address]
        while len(self._buckets) >= _MAX_TRACKED_ADDRESSES:
            del self._buckets[next(iter(self._buckets))]

    def _maybe_log(self, reason: str | None = None) -> None:
        now = self._clock()
        if now < self._next_line or not (self._rejected or self._throttled):
            return
        self._next_line = now + self._interval
        if self._rejected == 1 and not self._throttled and reason is not None:
            (address,) = self._addresses
            _log.warning("rejected a call from %s: %s", address, reason)
        else:
            _log.warning(
                "rejected %d calls with a wrong or missing API key and refused %d more "
                "unchecked (too many failures) from %d address(es) in the last %g s",
                self._rejected,
                self._throttled,
                len(self._addresses),
                self._interval,
            )
        self._rejected = 0
        self._throttled = 0
        self._addresses = set()
