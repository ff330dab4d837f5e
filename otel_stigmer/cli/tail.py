"""``otel-stigmer tail [EXECUTION_ID]``: follow a receiver's progress events in the terminal.

Reads the Server-Sent Events stream of a receiver's HTTP side (``otel-stigmer serve``),
authenticated with the API key, and reconnects where it left off (``Last-Event-ID``)
when the connection drops.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from email.message import Message
from http.client import HTTPResponse
from typing import IO

from otel_stigmer.cli._render import ProgressView, Terminal, use_color
from otel_stigmer.config import (
    ENV_ALLOW_INSECURE,
    ENV_ALLOW_PROXY,
    ENV_API_KEY,
    ENV_API_KEY_FILE,
    ENV_CA_FILE,
    is_loopback_host,
    parse_bool,
)
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.exceptions import ConfigError
from otel_stigmer.server.json_view import event_from_json, is_late

__all__ = ["build_parser", "tail_main"]

_PROG = "otel-stigmer tail"
_DEFAULT_URL = "http://127.0.0.1:8080"
_RECONNECT_DELAY = 1.0


class _AuthError(Exception):
    """The receiver refused the key."""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``otel-stigmer tail``."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description=(
            "Follow progress events live from a receiver's HTTP side. With EXECUTION_ID, "
            "follow that execution and exit when its workflow ends (0 completed, 1 failed "
            "or cancelled); without, follow every execution until Ctrl-C."
        ),
        epilog=(
            f"The API key comes from {ENV_API_KEY} (or {ENV_API_KEY_FILE}); an https URL "
            f"signed by a private CA needs --ca-file or {ENV_CA_FILE}."
        ),
    )
    parser.add_argument("execution_id", nargs="?", metavar="EXECUTION_ID")
    parser.add_argument(
        "--url", default=_DEFAULT_URL, help=f"the receiver's live page (default {_DEFAULT_URL})"
    )
    parser.add_argument("--ca-file", metavar="PEM", help="CA bundle to trust for an https URL")
    parser.add_argument(
        "--no-follow", action="store_true", help="print the events stored so far and exit"
    )
    parser.add_argument("--no-color", action="store_true", help="plain output, no ANSI colors")
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a connection may stay silent (default 30; the server pings every 15)",
    )
    return parser


def _api_key() -> str:
    key = os.environ.get(ENV_API_KEY, "").strip()
    if key:
        return key
    path = os.environ.get(ENV_API_KEY_FILE, "").strip()
    if path:
        try:
            with open(path, encoding="ascii") as handle:
                key = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"{ENV_API_KEY_FILE}={path!r}: cannot read the API key file ({exc}). "
                "Fix: point it at a readable file that holds the key."
            ) from None
        if key:
            return key
    raise ConfigError(
        f"{ENV_API_KEY} is not set. Fix: set it (or {ENV_API_KEY_FILE}) to one of the "
        "receiver's API keys."
    )


class _RedirectRefused(urllib.error.URLError):
    """The receiver answered with a redirect, which is never followed with the key."""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Refuses every redirect: following one would hand the key to another address."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        target = urllib.parse.urlsplit(newurl)
        raise _RedirectRefused(
            f"HTTP {code} redirect to {target.scheme}://{target.netloc}{target.path} not "
            "followed: it would carry the API key. Fix: pass the final address with --url"
        )


def _flag(environ: Mapping[str, str], variable: str) -> bool:
    value = environ.get(variable, "").strip()
    return parse_bool(variable, value) if value else False


def _opener(
    parts: urllib.parse.SplitResult, context: ssl.SSLContext | None, environ: Mapping[str, str]
) -> urllib.request.OpenerDirector:
    """An opener that sends the key only where ``--url`` says (the library's rules).

    Plaintext goes to loopback hosts only (or with ``STIGMER_SERVICE_ALLOW_INSECURE``),
    proxies from the environment are ignored unless ``STIGMER_SERVICE_ALLOW_PROXY`` is set
    and the URL is https, and redirects are refused.

    Raises:
        ConfigError: Plaintext to a host that is not loopback, or a proxy without TLS.
    """
    host = parts.hostname or ""
    if (
        parts.scheme == "http"
        and not is_loopback_host(host)
        and not _flag(environ, ENV_ALLOW_INSECURE)
    ):
        raise ConfigError(
            f"--url {parts.geturl()!r}: the API key would travel in plaintext to {host!r}, "
            "which is not a loopback address. Fix: use an https:// URL, or, only on a "
            f"network you trust, set {ENV_ALLOW_INSECURE}=true."
        )
    allow_proxy = _flag(environ, ENV_ALLOW_PROXY)
    if allow_proxy and parts.scheme != "https":
        raise ConfigError(
            f"{ENV_ALLOW_PROXY}=true with --url {parts.geturl()!r}: a proxy would see the "
            f"API key over plaintext. Fix: use an https:// URL, or unset {ENV_ALLOW_PROXY}."
        )
    proxies = urllib.request.ProxyHandler(None if allow_proxy else {})
    return urllib.request.build_opener(
        proxies, _NoRedirects(), urllib.request.HTTPSHandler(context=context)
    )


class _Client:
    """GETs from the receiver's HTTP side with the bearer key."""

    def __init__(
        self,
        base_url: str,
        key: str,
        ca_file: str | None,
        timeout: float,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"--url {base_url!r}: not an http(s) URL. Fix: pass the live page's address, "
                f"e.g. {_DEFAULT_URL}"
            )
        self._base = base_url.rstrip("/")
        self._key = key
        self._timeout = timeout
        context = ssl.create_default_context(cafile=ca_file) if parts.scheme == "https" else None
        self._opener = _opener(parts, context, os.environ if environ is None else environ)

    def open(self, path: str, last_id: int = 0) -> HTTPResponse:
        headers = {"Authorization": f"Bearer {self._key}", "Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = str(last_id)
        request = urllib.request.Request(self._base + path, headers=headers)  # noqa: S310 - scheme checked
        try:
            response: HTTPResponse = self._opener.open(request, timeout=self._timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 401:
                raise _AuthError from None
            raise
        return response

    def get_json(self, path: str) -> object:
        with self.open(path) as response:
            return json.loads(response.read().decode("utf-8"))


def _sse(response: HTTPResponse) -> Iterator[tuple[int, str]]:
    """Yield ``(id, data)`` of each SSE message; comments and other fields are skipped."""
    event_id, data = 0, list[str]()
    for raw in response:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield event_id, "\n".join(data)
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("id:"):
            text = line[3:].strip()
            event_id = int(text) if text.isdigit() else event_id


def _print(
    view: ProgressView, terminal: Terminal, item: dict[str, object]
) -> WorkflowProgressEvent:
    event = event_from_json(item)
    terminal.print(view.feed(event, late=is_late(item)))
    terminal.status(view.bar(event.workflow_execution_id))
    return event


def _quoted(execution_id: str) -> str:
    return urllib.parse.quote(execution_id, safe="")


def _stored(client: _Client, execution_id: str | None) -> list[dict[str, object]]:
    """Return stored events as JSON: one execution's, or all executions' (oldest run first)."""
    if execution_id is not None:
        try:
            items = client.get_json(f"/api/executions/{_quoted(execution_id)}/events")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []
    events: list[dict[str, object]] = []
    executions = client.get_json("/api/executions")
    for summary in reversed(executions) if isinstance(executions, list) else []:
        events.extend(_stored(client, str(summary["execution_id"])))
    return events


def _known(client: _Client, execution_id: str) -> bool:
    """Return whether the receiver stored anything of ``execution_id`` yet."""
    try:
        client.get_json(f"/api/executions/{_quoted(execution_id)}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise
    return True


def _exit_status(view: ProgressView, execution_id: str) -> int:
    return 0 if view.state(execution_id).status == "completed" else 1


def _follow(
    client: _Client,
    url: str,
    execution_id: str | None,
    view: ProgressView,
    terminal: Terminal,
    err: IO[str],
    stop: threading.Event,
) -> int:
    path = (
        "/api/stream" if execution_id is None else f"/api/executions/{_quoted(execution_id)}/stream"
    )
    last = 0
    complained = False
    connected = False
    while not stop.is_set():
        try:
            if execution_id is not None and not last and not _known(client, execution_id):
                print(f"{_PROG}: waiting for execution {execution_id}\u2026", file=err, flush=True)
            with client.open(path, last) as response:
                connected, complained = True, False
                for event_id, data in _sse(response):
                    last = max(last, event_id)
                    _print(view, terminal, json.loads(data))
                    if execution_id is not None and view.state(execution_id).finished:
                        return _exit_status(view, execution_id)
        except (OSError, urllib.error.URLError, ValueError) as exc:
            if not complained:
                reason = getattr(exc, "reason", None) or exc
                terminal.print([])
                if connected:
                    print(f"{_PROG}: lost the receiver ({reason}); reconnecting", file=err)
                else:
                    print(f"{_PROG}: cannot reach {url} ({reason}); retrying", file=err)
                complained = True
        stop.wait(_RECONNECT_DELAY)
    return 0


def tail_main(argv: list[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Run ``otel-stigmer tail``.

    Returns:
        0 on Ctrl-C or when the followed execution completed, 1 when it failed or was
        cancelled or the receiver refused the key, 2 on a configuration error.
    """
    args = build_parser().parse_args(argv)
    out = stdout or sys.stdout
    try:
        key = _api_key()
        ca_file = args.ca_file or os.environ.get(ENV_CA_FILE) or None
        client = _Client(args.url, key, ca_file, args.timeout)
    except (ConfigError, ssl.SSLError, OSError) as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2
    color = use_color(out, disabled=args.no_color)
    view = ProgressView(color=color)
    terminal = Terminal(out, live=color)
    try:
        if args.no_follow:
            stored = _stored(client, args.execution_id)
            for item in stored:
                terminal.print(view.feed(event_from_json(item), late=is_late(item)))
            status = 0
            if args.execution_id is not None and not stored:
                print(
                    f"{_PROG}: no events of execution {args.execution_id} at {args.url}",
                    file=sys.stderr,
                )
                return 1
        else:
            status = _follow(
                client, args.url, args.execution_id, view, terminal, sys.stderr, threading.Event()
            )
    except _AuthError:
        print(
            f"{_PROG}: authentication failed: check {ENV_API_KEY} against the receiver's keys",
            file=sys.stderr,
        )
        return 1
    except (OSError, urllib.error.URLError) as exc:
        print(f"{_PROG}: error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        status = 0
    finally:
        terminal.finish()
    if args.execution_id is not None or args.no_follow:
        for execution_id in view.executions:
            print("", *view.summary(execution_id), sep="\n", file=out)
    out.flush()
    return status
