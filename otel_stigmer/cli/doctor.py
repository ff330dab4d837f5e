"""``otel-stigmer doctor``: the troubleshooting checklist, automated.

Checks, in order, and stops at the first failure (later steps are skipped): the
configuration from the environment, DNS, TCP, the TLS handshake and an authenticated
probe call of the configured protocol (``STIGMER_PROTOCOL``) that can change nothing.
Each step prints PASS, FAIL or SKIP, with the fix on failure. The API key
is reported as set, never shown.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

import grpc

from otel_stigmer.client import CallbackClient
from otel_stigmer.config import (
    ALIAS_API_KEY,
    ENV_ALLOW_PROXY,
    ENV_API_KEY,
    ENV_API_KEY_FILE,
    ENV_CA_FILE,
    ENV_ENDPOINT,
    ENV_PROTOCOL,
    ENV_USE_TLS,
    PROXY_VARIABLES,
    StigmerConfig,
)
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.exceptions import CallbackError, ConfigError
from otel_stigmer.status.client import StatusClient
from otel_stigmer.status.wire import WorkflowExecutionStatus

__all__ = ["Check", "build_parser", "doctor_main", "run_checks"]

_PROG = "otel-stigmer doctor"
_EXPIRY_WARNING = datetime.timedelta(days=14)
_PASS, _FAIL, _SKIP = "PASS", "FAIL", "SKIP"
_CALLS = {"progress": "report_progress", "status": "updateStatus"}


@dataclass(frozen=True)
class Check:
    """The outcome of one step.

    Attributes:
        step: ``configuration``, ``dns``, ``tcp``, ``tls`` or ``auth``.
        outcome: ``PASS``, ``FAIL`` or ``SKIP``.
        detail: What was found.
        fix: What to do about a failure (empty otherwise).
    """

    step: str
    outcome: str
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        """True for a failed step."""
        return self.outcome == _FAIL


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``otel-stigmer doctor``."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description=(
            "Check that progress can reach the Stigmer Service: configuration, DNS, TCP, "
            "TLS and an authenticated probe call, with the fix for the first failure."
        ),
        epilog=(
            f"Reads the same variables as the library ({ENV_ENDPOINT}, {ENV_API_KEY} or "
            f"{ENV_API_KEY_FILE}, {ENV_USE_TLS}, {ENV_CA_FILE}, ...). Exit status 0 when "
            "every step passes, 1 otherwise."
        ),
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="time allowed for each network step (default 5)",
    )
    return parser


def _check_config(environ: Mapping[str, str]) -> tuple[Check, StigmerConfig | None]:
    try:
        config = StigmerConfig.from_env(environ)
    except ConfigError as exc:
        # The message already names the variable and the fix.
        return Check("configuration", _FAIL, str(exc)), None
    if config.api_key_file:
        source = f"from {ENV_API_KEY_FILE}"
    else:
        source = f"from {ENV_API_KEY if environ.get(ENV_API_KEY, '').strip() else ALIAS_API_KEY}"
    tls = "on" if config.use_tls else "off (plaintext)"
    roots = f", CA {config.ca_file}" if config.ca_file else ""
    detail = (
        f"endpoint {config.authority()}, TLS {tls}{roots}, API key set ({source}), "
        f"protocol {config.protocol} ({_CALLS[config.protocol]})"
    )
    proxies = [name for name in PROXY_VARIABLES if os.environ.get(name, "").strip()]
    if proxies:
        use = "used (TLS tunnel)" if config.allow_proxy else f"ignored ({ENV_ALLOW_PROXY} unset)"
        detail += f"; proxy from {proxies[0]} {use}"
    return Check("configuration", _PASS, detail), config


def _check_dns(config: StigmerConfig) -> tuple[Check, list[tuple[Any, ...]]]:
    try:
        infos = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return (
            Check(
                "dns",
                _FAIL,
                f"cannot resolve {config.host!r}: {exc.strerror}",
                f"check the host name in {ENV_ENDPOINT}, and the machine's DNS settings",
            ),
            [],
        )
    addresses = sorted({str(info[4][0]) for info in infos})
    return Check("dns", _PASS, f"{config.host} -> {', '.join(addresses)}"), infos


def _check_tcp(config: StigmerConfig, infos: list[tuple[Any, ...]], timeout: float) -> Check:
    errors = []
    for family, kind, proto, _, address in infos:
        started = time.monotonic()
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
        except OSError as exc:
            errors.append(f"{address[0]}: {exc.strerror or exc}")
            continue
        took = (time.monotonic() - started) * 1000
        return Check("tcp", _PASS, f"connected to {address[0]} port {address[1]} in {took:.0f} ms")
    return Check(
        "tcp",
        _FAIL,
        f"cannot connect to {config.authority()}: {'; '.join(errors)}",
        "start the receiver (or check that it listens on this port), and check firewalls "
        f"and proxies between here and {config.host}; `nc -zv {config.host} {config.port}` "
        "tests the same",
    )


def _cert_subject(cert: Mapping[str, Any]) -> str:
    parts = [f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn]
    return ", ".join(parts) or "(empty subject)"


def _check_tls(config: StigmerConfig, timeout: float) -> Check:
    if not config.use_tls:
        return Check("tls", _SKIP, f"plaintext ({ENV_USE_TLS}=false)")
    try:
        context = ssl.create_default_context(cafile=config.ca_file)
        context.set_alpn_protocols(["h2"])
        with (
            socket.create_connection((config.host, config.port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=config.host) as tls,
        ):
            cert = tls.getpeercert() or {}
            version = tls.version() or "TLS"
    except ssl.SSLCertVerificationError as exc:
        roots = f"the CA in {ENV_CA_FILE}={config.ca_file!r}" if config.ca_file else "system roots"
        return Check(
            "tls",
            _FAIL,
            f"certificate not trusted ({exc.verify_message}); checked against {roots}",
            f"set {ENV_CA_FILE} to the PEM bundle of the CA that signed the receiver's "
            "certificate, or give the receiver a certificate from a trusted CA whose "
            f"names include {config.host!r}",
        )
    except ssl.SSLError as exc:
        return Check(
            "tls",
            _FAIL,
            f"TLS handshake failed: {exc.reason or exc}",
            f"if the receiver serves plaintext (a local dev receiver), set {ENV_USE_TLS}=false; "
            "otherwise check the receiver's TLS configuration",
        )
    except OSError as exc:
        return Check("tls", _FAIL, f"TLS handshake failed: {exc}", "check the receiver")
    expires = datetime.datetime.fromtimestamp(
        ssl.cert_time_to_seconds(str(cert.get("notAfter", ""))), datetime.timezone.utc
    )
    left = expires - datetime.datetime.now(datetime.timezone.utc)
    detail = f"{version}, subject {_cert_subject(cert)}, expires {expires:%Y-%m-%d %H:%M} UTC"
    if left < _EXPIRY_WARNING:
        when = f"in {left.days} day(s)" if left.days >= 1 else "within a day"
        detail += f" ({when}: renew it soon)"
    return Check("tls", _PASS, detail)


@contextmanager
def _quiet_client_logs() -> Iterator[None]:
    # The client warns once per failure; doctor reports it itself, with the fix.
    logger = logging.getLogger("otel_stigmer.client")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _auth_failure(exc: CallbackError, config: StigmerConfig) -> Check:
    key_var = ENV_API_KEY_FILE if config.api_key_file else ENV_API_KEY
    if exc.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return Check(
            "auth",
            _FAIL,
            f"authentication failed: check {key_var} ({exc.code.name}: {exc.details})",
            f"set {key_var} to a key the receiver accepts; check that it has not expired "
            "or been revoked and has the permissions to report progress",
        )
    if exc.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Check(
            "auth",
            _FAIL,
            "the probe call timed out",
            "the receiver accepts connections but does not answer: check its health and load",
        )
    return Check(
        "auth",
        _FAIL,
        f"the probe call failed with {exc.code.name}: {exc.details or 'no details'}",
        "check that the endpoint is a Stigmer gRPC service (not an HTTP page or a proxy "
        "that drops HTTP/2) and look at its logs",
    )


def _check_status_auth(config: StigmerConfig, timeout: float) -> Check:
    """Probe ``updateStatus`` with an empty execution id: refused as invalid, never applied.

    The open-source server validates the id before it loads an execution, and the
    reference receiver checks the key first, so nothing can be stored or altered.
    """
    with _quiet_client_logs(), StatusClient(config) as client:
        try:
            client.update_status("", WorkflowExecutionStatus(), timeout=timeout)
        except CallbackError as exc:
            if exc.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND):
                return Check(
                    "auth",
                    _PASS,
                    f"reachable and authenticated: updateStatus refused a probe with an empty "
                    f"execution id ({exc.code.name}), which no execution has",
                )
            if exc.code == grpc.StatusCode.UNIMPLEMENTED:
                return Check(
                    "auth",
                    _FAIL,
                    "the endpoint does not implement updateStatus (UNIMPLEMENTED)",
                    f"if it is the Stigmer Service, unset {ENV_PROTOCOL} (or set it to "
                    "progress); otherwise check that the endpoint is the open-source "
                    "Stigmer server",
                )
            return _auth_failure(exc, config)
    return Check(
        "auth",
        _PASS,
        "reachable, but the receiver accepted an updateStatus with an empty execution id: "
        "it does not validate updates",
    )


def _check_auth(config: StigmerConfig, timeout: float) -> Check:
    if config.protocol == "status":
        return _check_status_auth(config, timeout)
    return _check_progress_auth(config, timeout)


def _check_progress_auth(config: StigmerConfig, timeout: float) -> Check:
    with _quiet_client_logs(), CallbackClient(config) as client:
        try:
            # An empty batch stores nothing, yet passes authentication first.
            response = client.report_progress_batch([], timeout=timeout)
        except CallbackError as exc:
            if exc.code != grpc.StatusCode.UNIMPLEMENTED:
                return _auth_failure(exc, config)
        else:
            return Check(
                "auth",
                _PASS,
                f"authenticated: an empty report_progress_batch was accepted "
                f"(accepted={response.accepted})",
            )
        try:
            # Invalid on purpose: the receiver authenticates, then refuses it, storing nothing.
            client.report_progress(WorkflowProgressEvent(), timeout=timeout)
        except CallbackError as probe_error:
            if probe_error.code == grpc.StatusCode.INVALID_ARGUMENT:
                return Check(
                    "auth",
                    _PASS,
                    "authenticated: report_progress refused an empty probe event as invalid, "
                    "after the key check (this receiver has no batch RPC)",
                )
            if probe_error.code == grpc.StatusCode.UNIMPLEMENTED:
                return Check(
                    "auth",
                    _FAIL,
                    "the endpoint does not implement report_progress (UNIMPLEMENTED)",
                    f"if it is the open-source Stigmer server, set {ENV_PROTOCOL}=status",
                )
            return _auth_failure(probe_error, config)
    return Check(
        "auth",
        _PASS,
        "authenticated, but the receiver stored an empty probe event: it does not validate events",
    )


def run_checks(
    environ: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    report: Callable[[Check], None] | None = None,
) -> list[Check]:
    """Run every step in order; after a failure the remaining steps are skipped.

    Args:
        environ: The variables to read (``os.environ`` by default).
        timeout: Seconds allowed for each network step.
        report: Called with each result as soon as it is known.
    """
    env = os.environ if environ is None else environ
    results: list[Check] = []

    def record(check: Check) -> bool:
        results.append(check)
        if report is not None:
            report(check)
        return not check.failed

    steps: list[str] = ["dns", "tcp", "tls", "auth"]
    check, config = _check_config(env)
    if record(check) and config is not None:
        dns, infos = _check_dns(config)
        if (
            record(dns)
            and record(_check_tcp(config, infos, timeout))
            and record(_check_tls(config, timeout))
        ):
            record(_check_auth(config, timeout))
    done = {c.step for c in results}
    for step in steps:
        if step not in done:
            record(Check(step, _SKIP, "skipped: fix the failed step first"))
    return results


def doctor_main(argv: list[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Run ``otel-stigmer doctor``.

    Returns:
        0 when every step passed (or was not needed), 1 when one failed.
    """
    args = build_parser().parse_args(argv)
    out = stdout or sys.stdout

    def show(check: Check) -> None:
        print(f"  {check.outcome}  {check.step:<14} {check.detail}", file=out)
        if check.fix:
            print(f"        {'':<14} fix: {check.fix}", file=out)
        out.flush()

    print(f"{_PROG}: can progress reach the Stigmer Service?", file=out)
    results = run_checks(timeout=args.timeout, report=show)
    failed = [c.step for c in results if c.failed]
    if failed:
        print(f"\n{failed[0]} failed: progress cannot be delivered until it is fixed.", file=out)
        return 1
    print("\nAll checks passed: progress events can be delivered.", file=out)
    return 0
