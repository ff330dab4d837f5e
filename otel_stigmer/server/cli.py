"""``otel-stigmer serve``: run the reference receiver until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

from otel_stigmer.config import check_grpc_tracing
from otel_stigmer.exceptions import ConfigError
from otel_stigmer.server.app import ReceiverServer
from otel_stigmer.server.http import LiveHttpServer

__all__ = [
    "DEFAULT_HTTP_PORT",
    "ENV_SERVER_API_KEYS",
    "ENV_SERVICE_API_KEY",
    "build_parser",
    "resolve_api_keys",
    "serve_main",
]

#: Comma-separated keys the receiver accepts.
ENV_SERVER_API_KEYS = "STIGMER_SERVER_API_KEYS"
#: The client's key variable, used as the receiver's one key when nothing else is given.
ENV_SERVICE_API_KEY = "STIGMER_SERVICE_API_KEY"

_log = logging.getLogger("otel_stigmer.server")
_PROG = "otel-stigmer serve"
# SIGTERM must stop serve within 2 s, whatever the clients do.
_SIGNAL_POLL_SECONDS = 0.1
_GRACE_SECONDS = 1.0
#: Port of the live page when ``--http-port`` is not given.
DEFAULT_HTTP_PORT = 8080


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``otel-stigmer serve``."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Run the reference Stigmer receiver: report_progress over gRPC into SQLite.",
        epilog=(
            f"API keys: --api-key (repeatable), else {ENV_SERVER_API_KEYS} (comma-separated), "
            f"else {ENV_SERVICE_API_KEY}. Prefer the variables: arguments are visible to "
            "other users of the machine."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=9090, help="port to bind, 0 for any (default 9090)"
    )
    parser.add_argument(
        "--db", default="./stigmer-events.db", help="SQLite file (default ./stigmer-events.db)"
    )
    parser.add_argument(
        "--api-key", action="append", default=[], metavar="KEY", help="an accepted API key"
    )
    parser.add_argument("--tls-cert", type=Path, metavar="PEM", help="server certificate chain")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="private key of --tls-cert")
    parser.add_argument(
        "--no-batch",
        action="store_true",
        help="answer report_progress_batch with UNIMPLEMENTED, like an older receiver",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default INFO)",
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=None,
        help=f"port of the live page and JSON/SSE API, 0 for any (default {DEFAULT_HTTP_PORT})",
    )
    parser.add_argument(
        "--http-host", default=None, metavar="HOST", help="interface of the HTTP side (--host)"
    )
    parser.add_argument("--no-http", action="store_true", help="serve gRPC only, no live page")
    return parser


def resolve_api_keys(flag_keys: list[str], environ: Mapping[str, str]) -> list[str]:
    """Return the accepted keys from the flags, else the environment.

    Raises:
        ConfigError: No key anywhere, naming the flag and the variables.
    """
    keys = [k.strip() for k in flag_keys if k.strip()]
    if not keys:
        keys = [k.strip() for k in environ.get(ENV_SERVER_API_KEYS, "").split(",") if k.strip()]
    if not keys:
        single = environ.get(ENV_SERVICE_API_KEY, "").strip()
        keys = [single] if single else []
    if not keys:
        raise ConfigError(
            "no API key: the receiver refuses to start without one. Pass --api-key KEY, "
            f"or set {ENV_SERVER_API_KEYS}=key1,key2 or {ENV_SERVICE_API_KEY}=KEY"
        )
    return keys


def _read_pem(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot read the file ({exc.strerror})") from None


def _read_tls(cert: Path | None, key: Path | None) -> tuple[bytes | None, bytes | None]:
    if (cert is None) != (key is None):
        raise ConfigError("--tls-cert and --tls-key go together: pass both, or neither")
    if cert is None or key is None:
        return None, None
    return _read_pem(cert, "--tls-cert"), _read_pem(key, "--tls-key")


def _start_http(
    args: argparse.Namespace, server: ReceiverServer, keys: list[str]
) -> LiveHttpServer | None:
    """Start the live page next to the gRPC receiver, or return None when it is off.

    Raises:
        OSError: An explicitly requested ``--http-port`` cannot be bound.
    """
    if args.no_http:
        return None
    port = DEFAULT_HTTP_PORT if args.http_port is None else args.http_port
    http = LiveHttpServer(
        server.store,
        # One key check for both sides: failed guesses share one budget per address.
        server.auth,
        host=args.http_host or args.host,
        port=port,
        tls_cert_file=args.tls_cert,
        tls_key_file=args.tls_key,
        status_store=server.status_store,
    )
    try:
        http.start()
    except OSError as exc:
        if args.http_port is not None:
            raise OSError(f"cannot bind the live page to port {port}: {exc.strerror}") from exc
        # The default port being taken must not cost the gRPC side.
        _log.warning(
            "live page not started: port %d is in use; pass --http-port 0 for any free port",
            port,
        )
        return None
    _log.info("live page on %s (log in with an API key)", http.url)
    return http


def serve_main(argv: list[str] | None = None) -> int:
    """Run ``otel-stigmer serve`` with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        0 after a clean stop on SIGINT/SIGTERM, 2 on a configuration error,
        1 when the address cannot be bound.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        # gRPC tracing would print the key of every client call the receiver takes.
        check_grpc_tracing()
        keys = resolve_api_keys(args.api_key, os.environ)
        cert, key = _read_tls(args.tls_cert, args.tls_key)
        server = ReceiverServer(
            api_keys=keys,
            db_path=args.db,
            host=args.host,
            port=args.port,
            tls_cert=cert,
            tls_key=key,
            batch_enabled=not args.no_batch,
        )
    except ConfigError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2
    try:
        server.start()
        http = _start_http(args, server, keys)
    except OSError as exc:
        server.stop(None)
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 1

    stopping = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        _log.info(
            "receiver listening on %s (%s, %d key(s), database %s)",
            server.endpoint,
            "tls" if server.tls else "plaintext",
            len(keys),
            args.db,
        )
        while not stopping.wait(_SIGNAL_POLL_SECONDS):
            pass
        _log.info("stopping receiver on %s", server.endpoint)
    finally:
        # Both sides stop at once; neither waits on what clients do (connections are shut,
        # calls in flight get the grace), so a stop takes about _GRACE_SECONDS.
        stopper = None
        if http is not None:
            stopper = threading.Thread(target=http.stop, name="stigmer-http-stop")
            stopper.start()
        server.stop(grace=_GRACE_SECONDS)
        if stopper is not None:
            stopper.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
