"""One line of advice when TLS is on but a loopback receiver speaks plaintext.

The usual first-run mistake is a local ``otel-stigmer serve`` (plaintext) with
``STIGMER_SERVICE_USE_TLS`` left at its default ``true``: gRPC then logs handshake failures
that do not say what to change. After :func:`otel_stigmer.configure`, a background thread
opens one TLS handshake to a *loopback* endpoint (never to another host) and, when the peer
does not answer in TLS, logs the fix once.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading

from otel_stigmer._forksafe import renew_after_fork
from otel_stigmer.config import ENV_ENDPOINT, ENV_USE_TLS, StigmerConfig, is_loopback_host

__all__ = ["check_in_background", "speaks_tls"]

_log = logging.getLogger("otel_stigmer")
_PROBE_TIMEOUT_S = 2.0
_checked: set[str] = set()
_lock = threading.Lock()
renew_after_fork(sys.modules[__name__], "_lock")


def check_in_background(config: StigmerConfig) -> threading.Thread | None:
    """Start the probe for ``config`` when TLS is on and the host is loopback (once per endpoint).

    Returns:
        The probe thread, or ``None`` when no probe is needed.
    """
    if not config.use_tls or not is_loopback_host(config.host):
        return None
    with _lock:
        if config.authority() in _checked:
            return None
        _checked.add(config.authority())
    thread = threading.Thread(
        target=_probe, args=(config,), name="otel-stigmer-tls-check", daemon=True
    )
    thread.start()
    return thread


def speaks_tls(host: str, port: int, timeout: float = _PROBE_TIMEOUT_S) -> bool | None:
    """Whether the peer completes a TLS handshake (certificates are not checked here).

    Returns:
        True or False, or ``None`` when no connection could be opened (nothing to say).
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return None
    try:
        with context.wrap_socket(raw, server_hostname=host):
            return True
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return False
    except OSError:
        return None
    finally:
        raw.close()


def _probe(config: StigmerConfig) -> None:
    try:
        if speaks_tls(config.host, config.port) is False:
            _log.warning(
                "otel-stigmer: %s=%s does not answer in TLS; a local receiver such as "
                "`otel-stigmer serve` is plaintext: set %s=false",
                ENV_ENDPOINT,
                config.authority(),
                ENV_USE_TLS,
            )
    except Exception:  # a hint must never fail anything
        _log.debug("otel-stigmer: TLS probe failed", exc_info=True)
