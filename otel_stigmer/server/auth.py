"""Bearer-key authentication of incoming calls (constant-time comparison, throttled guesses)."""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterable, Sequence

from otel_stigmer.exceptions import ConfigError
from otel_stigmer.server.throttle import FailureThrottle

__all__ = ["TOO_MANY_FAILURES", "BearerKeyAuth"]

_SCHEME = "bearer"
#: Start of the reason given to an address that spent its budget of failed attempts.
_INVALID_KEY = "invalid API key"
TOO_MANY_FAILURES = "too many failed authentication attempts from this address"


class BearerKeyAuth:
    """Checks the ``authorization: Bearer <key>`` metadata against accepted keys.

    Error messages say what is wrong and how to fix it, never what was presented. Given
    the caller's address, failed attempts are throttled per address (see
    :class:`~otel_stigmer.server.throttle.FailureThrottle`): past the budget, the key is
    not even compared.

    Args:
        api_keys: The accepted keys; at least one, none empty.
        throttle: The per-address budget of failures (a default one when None).

    Raises:
        ConfigError: When no key, or an empty key, is given.
    """

    def __init__(self, api_keys: Sequence[str], *, throttle: FailureThrottle | None = None) -> None:
        if isinstance(api_keys, str):
            api_keys = [api_keys]
        keys = [k.strip() for k in api_keys]
        if not keys or not all(keys):
            raise ConfigError(
                "the receiver needs at least one non-empty API key: pass api_keys=[...] "
                "(or --api-key / STIGMER_SERVER_API_KEYS for `otel-stigmer serve`)"
            )
        self._keys = [k.encode() for k in keys]
        self.throttle = throttle or FailureThrottle()

    def __repr__(self) -> str:
        return f"BearerKeyAuth(<{len(self._keys)} key(s)>)"

    def check(
        self, metadata: Iterable[tuple[str, str | bytes]], peer: str | None = None
    ) -> str | None:
        """Return None when the call carries an accepted key, else the reason to reject it.

        Args:
            metadata: The call's headers.
            peer: The caller's address; when given, failures are throttled and logged.
        """
        if peer is not None:
            wait = self.throttle.wait_time(peer)
            if wait > 0:
                return f"{TOO_MANY_FAILURES}: retry in {math.ceil(wait)} s"
        reason = self._check(metadata)
        if reason is not None and peer is not None:
            self.throttle.record_failure(peer, reason, guess=reason.startswith(_INVALID_KEY))
        return reason

    def _check(self, metadata: Iterable[tuple[str, str | bytes]]) -> str | None:
        values = [v for k, v in metadata if k.lower() == "authorization"]
        if not values:
            return "missing authorization metadata: send 'authorization: Bearer <api key>'"
        if len(values) > 1:
            return "more than one authorization metadata entry: send exactly one"
        value = values[0]
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != _SCHEME or not token:
            return "malformed authorization metadata: expected 'Bearer <api key>'"
        presented = token.encode()
        # Compare against every key so timing does not tell which one nearly matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented, key)
        if not matched:
            return f"{_INVALID_KEY}: check STIGMER_SERVICE_API_KEY against the receiver's keys"
        return None
