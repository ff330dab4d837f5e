"""Browser sessions of the live page: random tokens, never the API key, in the cookie."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

__all__ = ["SessionStore"]

_MAX_SESSIONS = 10_000


class SessionStore:
    """Random session tokens and one-time login tokens, each with an expiry.

    Args:
        session_ttl: Seconds a session cookie stays valid.
        login_ttl: Seconds a one-time login token stays valid.
        clock: Monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        *,
        session_ttl: float = 12 * 3600.0,
        login_ttl: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session_ttl = session_ttl
        self._login_ttl = login_ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, float] = {}
        self._logins: dict[str, float] = {}

    def __repr__(self) -> str:
        with self._lock:
            return f"SessionStore(<{len(self._sessions)} session(s)>)"

    def open_session(self) -> str:
        """Create a session and return its token (the cookie value)."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._prune(self._sessions)
            if len(self._sessions) >= _MAX_SESSIONS:
                # Oldest first: dicts keep insertion order.
                self._sessions.pop(next(iter(self._sessions)))
            self._sessions[token] = self._clock() + self._session_ttl
        return token

    def is_valid(self, token: str | None) -> bool:
        """Return True when ``token`` names a live session."""
        if not token:
            return False
        with self._lock:
            expiry = self._sessions.get(token)
            if expiry is None:
                return False
            if expiry <= self._clock():
                del self._sessions[token]
                return False
            return True

    def close_session(self, token: str | None) -> None:
        """Forget a session (log out)."""
        if token:
            with self._lock:
                self._sessions.pop(token, None)

    def issue_login_token(self) -> str:
        """Return a one-time token that :meth:`redeem_login_token` exchanges for a session."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._prune(self._logins)
            self._logins[token] = self._clock() + self._login_ttl
        return token

    def redeem_login_token(self, token: str | None) -> bool:
        """Consume a login token; True when it was valid (it cannot be used again)."""
        if not token:
            return False
        with self._lock:
            expiry = self._logins.pop(token, None)
        return expiry is not None and expiry > self._clock()

    def _prune(self, table: dict[str, float]) -> None:
        now = self._clock()
        for token in [t for t, expiry in table.items() if expiry <= now]:
            del table[token]
