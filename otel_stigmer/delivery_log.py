"""What the delivery pipeline says in its log: each kind of trouble once, never the key.

The wording of a failed call comes from :func:`otel_stigmer.retry.describe_failure`, the
same as the client's. A repeated failure or refusal is logged again only after a while,
so an outage is one line, not one per retry.
"""

from __future__ import annotations

import logging
import time

from otel_stigmer.exceptions import CallbackError
from otel_stigmer.retry import AUTH_CODES, describe_failure
from otel_stigmer.sinks import Refused

__all__ = ["DeliveryLog"]

_log = logging.getLogger("otel_stigmer.delivery")
_MAX_KEYS = 256


class DeliveryLog:
    """The pipeline's log lines, each distinct one at most once per ``period`` seconds."""

    def __init__(self, period: float = 60.0) -> None:
        self._period = period
        self._last: dict[tuple[str, ...], float] = {}

    def failure(self, error: CallbackError, delay: float) -> None:
        """A send failed; its events are kept and retried after ``delay`` seconds or more."""
        if error.code in AUTH_CODES:
            consequence = f"events are kept and retried every {delay:.0f} s or more"
            level = logging.ERROR
        else:
            consequence = "events are kept and retried with backoff"
            level = logging.WARNING
        if self._first((error.code.name,)):  # details vary between attempts (gRPC texts)
            _log.log(
                level, "otel-stigmer: %s", describe_failure(error.code, error.details, consequence)
            )

    def refused(self, item: Refused) -> None:
        """The receiver refused an event for good."""
        if self._first(("refused", item.reason, item.message)):
            _log.error(
                "otel-stigmer: the receiver refused an event (%s%s); it is dropped, not retried",
                "invalid" if item.reason == "rejected" else "accepted=false",
                f": {item.message}" if item.message else "",
            )

    @staticmethod
    def flush_timed_out(timeout_millis: int, left: int) -> None:
        """A flush ended by its timeout."""
        _log.warning(
            "otel-stigmer flush timed out after %d ms with %d events not yet delivered",
            timeout_millis,
            left,
        )

    @staticmethod
    def shut_down_with(left: int, spooled: bool) -> None:
        """Shutdown left events undelivered."""
        where = "kept in the spool" if spooled else "dropped"
        _log.warning("otel-stigmer shut down with %d undelivered events (%s)", left, where)

    @staticmethod
    def restored(count: int) -> None:
        """Events of an earlier process were loaded from the spool."""
        _log.info("otel-stigmer: %d undelivered events restored from the spool", count)

    def _first(self, key: tuple[str, ...]) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            return False
        if len(self._last) >= _MAX_KEYS:
            self._last.clear()
        self._last[key] = now
        return True
