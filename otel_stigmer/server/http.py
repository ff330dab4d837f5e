"""The receiver's HTTP side: a live page, a JSON API and Server-Sent Events over the event store.

Routes (all but the login ones need the API key as ``Authorization: Bearer <key>``, or
the session cookie set by logging in):

- ``GET /``: the live page (a login form when not logged in);
- ``POST /login`` (form field ``key``), ``GET /login?token=<one-time token>``, ``POST /logout``;
- ``GET /api/executions``: execution summaries, newest first; ``?limit=`` (default and
  maximum 500), ``?status=`` (``running``, ``completed``, ``failed``, ``cancelled``,
  ``paused``, or ``none`` for runs whose workflow reported no status yet), ``?q=`` (text
  in the id or workflow name) and ``?before=<execution id>`` (the next page after that
  run). The ``X-Last-Event-Id`` header holds the newest arrival id, to start a stream at;
- ``GET /api/executions/{id}``: one execution's summary;
- ``GET /api/executions/{id}/events``: one execution's events, in sequence order; with
  ``?after=<arrival id>`` and/or ``?limit=`` (maximum 5000) a page in arrival order instead,
  with ``?last=N`` its newest N events; ``&format=rows`` answers compact rows (see
  :func:`~otel_stigmer.server.json_view.event_to_row`; pages of up to 20,000);
- ``GET /api/executions/{id}/stream`` and ``GET /api/stream`` (all executions): SSE, one
  ``data:`` JSON event per message with the store's arrival id as ``id:``, resumable with
  ``Last-Event-ID`` (or ``?after=<id>``), keep-alive comments in between;
- ``GET /api/status-runs``: runs reported with ``updateStatus`` (see
  :mod:`~otel_stigmer.server.status_runs`), newest first, with the query of
  ``/api/executions``; the ``X-Last-Status-Id`` header holds the newest update id;
- ``GET /api/status-stream``: SSE, one message per status run changed after the update id
  given as ``Last-Event-ID`` (or ``?after=``), its newest update id as ``id:``;
- ``GET /api/status`` and ``/api/status/{id}``: stored statuses (see
  :mod:`~otel_stigmer.server.status_api`).

Only the standard library is used (``http.server.ThreadingHTTPServer``).
"""

from __future__ import annotations

import html
import json
import logging
import os
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from types import TracebackType
from typing import Any

from otel_stigmer.exceptions import ConfigError
from otel_stigmer.server import status_api
from otel_stigmer.server.app import format_endpoint
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.connections import ClosesConnectionsMixin
from otel_stigmer.server.json_view import event_to_json, event_to_row, execution_to_json
from otel_stigmer.server.sessions import SessionStore
from otel_stigmer.server.status_runs import (
    changed_runs,
    newest_update_id,
    run_to_json,
    status_runs,
)
from otel_stigmer.server.status_store import StatusStore
from otel_stigmer.server.store import EventStore, StoreClosedError, StoredEvent

__all__ = ["SESSION_COOKIE", "LiveHttpServer"]

_log = logging.getLogger(__name__)

#: Name of the session cookie (HttpOnly, SameSite=Strict; holds a random token, never the key).
SESSION_COOKIE = "stigmer_session"

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104 - mapping only
_MAX_FORM_BYTES = 4096
_STREAM_BATCH = 500
_LIST_LIMIT = 500
_PAGE_LIMIT = 5000
_ROWS_PAGE_LIMIT = 20000
_STATUS_FILTERS = {
    "running": "running",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "paused": "paused",
    "pending": "pending",
    "none": "",
}
_WAIT_SLICE = 0.5
_HTML_CSP = (
    "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _static(name: str) -> str:
    return (
        resources.files("otel_stigmer.server").joinpath("static").joinpath(name).read_text("utf-8")
    )


class LiveHttpServer:
    """Serves the live page and the JSON / SSE API of one :class:`EventStore`.

    Args:
        store: The event store the gRPC receiver writes into (shared, so live readers wake
            up as soon as an event is stored).
        auth: The receiver's key check.
        host: Interface to bind.
        port: Port to bind; 0 picks a free one.
        tls_cert_file: PEM certificate chain to serve HTTPS with; needs ``tls_key_file``.
        tls_key_file: Private key of ``tls_cert_file``.
        keepalive: Seconds between SSE keep-alive comments.
        status_store: The receiver's status store, when in this process: status streams
            then wake on each update instead of polling the file twice a second.
    """

    def __init__(
        self,
        store: EventStore,
        auth: BearerKeyAuth,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        tls_cert_file: str | os.PathLike[str] | None = None,
        tls_key_file: str | os.PathLike[str] | None = None,
        keepalive: float = 15.0,
        status_store: StatusStore | None = None,
    ) -> None:
        self.store = store
        self.status_store = status_store
        self.auth = auth
        self.sessions = SessionStore()
        self.keepalive = keepalive
        self.stopping = threading.Event()
        self._host = host
        self._requested_port = port
        self._tls_files = (tls_cert_file, tls_key_file)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "running" if self._httpd is not None else "stopped"
        return f"LiveHttpServer(url={self.url!r}, {state})"

    @property
    def tls(self) -> bool:
        """True when serving HTTPS."""
        return self._tls_files[0] is not None

    @property
    def port(self) -> int:
        """The bound port (the picked one once started with port 0)."""
        if self._httpd is not None:
            return int(self._httpd.server_address[1])
        return self._requested_port

    @property
    def url(self) -> str:
        """The page's base URL, e.g. ``http://127.0.0.1:8080/`` (wildcard hosts as loopback)."""
        scheme = "https" if self.tls else "http"
        host = _WILDCARDS.get(self._host, self._host)
        return f"{scheme}://{format_endpoint(host, self.port)}/"

    def login_url(self) -> str:
        """Return a one-time link that logs a browser in without typing the key."""
        token = self.sessions.issue_login_token()
        return f"{self.url}login?token={token}"

    def start(self) -> LiveHttpServer:
        """Bind and serve on a background thread; returns self.

        Raises:
            OSError: The address cannot be bound.
            ConfigError: Only one of the TLS files is given.
        """
        if self._httpd is not None:
            return self
        cert, key = self._tls_files
        if (cert is None) != (key is None):
            raise ConfigError("HTTPS needs both a certificate and its key, or neither")
        self.stopping.clear()
        if self.status_store is None:
            StatusStore(self.store.path).close()  # the status tables, for the status routes
        httpd = _Server(
            (self._host, self._requested_port), _handler_for(self), ipv6=":" in self._host
        )
        if cert is not None and key is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(os.fspath(cert), os.fspath(key))
            httpd.tls_context = context
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="stigmer-http"
        )
        self._thread.start()
        _log.debug("live page on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving; open streams end within half a second."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._requested_port = int(httpd.server_address[1])
        self.stopping.set()
        httpd.shutdown()
        httpd.server_close()  # joins the request threads, streams included
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> LiveHttpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Server(ClosesConnectionsMixin, ThreadingHTTPServer):
    # Request threads are joined at close, so no stream outlives the server.
    daemon_threads = False
    block_on_close = True
    tls_context: ssl.SSLContext | None = None

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        ipv6: bool,
    ) -> None:
        if ipv6:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.debug("HTTP request from %s failed", client_address, exc_info=True)


def _handler_for(app: LiveHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.app = app
    return Handler


class _Handler(BaseHTTPRequestHandler):
    app: LiveHttpServer
    server_version = "otel-stigmer"
    sys_version = ""
    # A client that stops reading cannot pin a thread forever.
    timeout = 30

    def setup(self) -> None:
        """Run the TLS handshake here, in the request's thread, so a slow client stalls no one."""
        context = getattr(self.server, "tls_context", None)
        if context is not None:
            self.request.settimeout(self.timeout)
            self.request = context.wrap_socket(self.request, server_side=True)
        super().setup()

    def finish(self) -> None:
        """Close the TLS socket too: the server only closes the plain one it accepted."""
        try:
            super().finish()
        finally:
            if isinstance(self.request, ssl.SSLSocket):
                self.request.close()

    def log_message(self, format: str, *args: Any) -> None:
        # Paths never carry the key (logins are POSTed); one-time tokens are cut off.
        _log.debug("%s %s", self.address_string(), (format % args).split("?", 1)[0])

    # -- routing -------------------------------------------------------------------

    def do_GET(self) -> None:
        """Route GET requests."""
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query)
        if path == "/login":
            self._login_with_token(query.get("token", [""])[0])
            return
        if not self._authenticated():
            if path in ("/", "/index.html"):
                self._login_page(HTTPStatus.UNAUTHORIZED, "")
            else:
                self._json_error(HTTPStatus.UNAUTHORIZED, "authentication required")
            return
        route: dict[str, Callable[[], None]] = {
            "/": self._page,
            "/index.html": self._page,
            "/api/executions": lambda: self._executions(query),
            "/api/stream": lambda: self._stream(None, query),
            "/api/status-runs": lambda: self._status_runs(query),
            "/api/status-stream": lambda: self._status_stream(query),
        }
        handler = route.get(path) or self._execution_route(path, query)
        if handler is not None:
            handler()
            return
        status_answer = status_api.answer(self.app.store.path, path)
        if status_answer is not None:
            self._json(*status_answer)
            return
        self._json_error(HTTPStatus.NOT_FOUND, "no such resource")

    def _execution_route(self, path: str, query: dict[str, list[str]]) -> Callable[[], None] | None:
        """The handler of ``/api/executions/<id>[/events|/stream]``, or None."""
        parts = path.split("/")
        if len(parts) not in (4, 5) or parts[:3] != ["", "api", "executions"] or not parts[3]:
            return None
        execution_id = urllib.parse.unquote(parts[3])
        if len(parts) == 4:
            return lambda: self._execution(execution_id)
        if parts[4] == "events":
            return lambda: self._events(execution_id, query)
        if parts[4] == "stream":
            return lambda: self._stream(execution_id, query)
        return None

    def do_POST(self) -> None:
        """Route POST requests (login and logout)."""
        path = urllib.parse.urlsplit(self.path).path
        if not self._same_origin():
            self._json_error(HTTPStatus.FORBIDDEN, "cross-origin form rejected")
            return
        if path == "/login":
            self._login_with_key()
        elif path == "/logout":
            self.app.sessions.close_session(self._cookie())
            self._redirect("/", clear_cookie=True)
        else:
            self._json_error(HTTPStatus.NOT_FOUND, "no such resource")

    # -- authentication ------------------------------------------------------------

    def _cookie(self) -> str | None:
        # Read our cookie alone: a cookie of another app on this host that the strict
        # parser of http.cookies refuses must not hide it (that looped back to the login).
        for header in self.headers.get_all("Cookie") or []:
            for pair in header.split(";"):
                name, sep, value = pair.strip().partition("=")
                if sep and name == SESSION_COOKIE:
                    return value.strip().strip('"')
        return None

    def _authenticated(self) -> bool:
        header = self.headers.get("Authorization")
        if header is not None:
            return self.app.auth.check([("authorization", header)], self.client_address[0]) is None
        return self.app.sessions.is_valid(self._cookie())

    def _same_origin(self) -> bool:
        origin = self.headers.get("Origin")
        if origin is None or origin == "null":
            return origin is None
        return urllib.parse.urlsplit(origin).netloc == self.headers.get("Host", "")

    def _login_with_key(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_FORM_BYTES:
            self._json_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "login form too large")
            return
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        key = form.get("key", [""])[0].strip()
        peer = self.client_address[0]
        if key and self.app.auth.check([("authorization", f"Bearer {key}")], peer) is None:
            self._start_session()
            return
        self._login_page(HTTPStatus.UNAUTHORIZED, "That key was not accepted. Try again.")

    def _login_with_token(self, token: str) -> None:
        if self.app.sessions.redeem_login_token(token):
            self._start_session()
            return
        self._login_page(
            HTTPStatus.UNAUTHORIZED,
            "That login link has expired or was already used. Log in with the API key.",
        )

    def _start_session(self) -> None:
        token = self.app.sessions.open_session()
        self._redirect("/", session=token)

    # -- responses -----------------------------------------------------------------

    def _common_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        # Not no-referrer: under it browsers send "Origin: null", which the login check refuses.
        self.send_header("Referrer-Policy", "same-origin")

    def _redirect(
        self, location: str, *, session: str | None = None, clear_cookie: bool = False
    ) -> None:
        self.send_response(HTTPStatus.SEE_OTHER)
        self._common_headers()
        self.send_header("Location", location)
        secure = "; Secure" if self.app.tls else ""
        if session is not None:
            self.send_header(
                "Set-Cookie",
                f"{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict{secure}",
            )
        elif clear_cookie:
            self.send_header(
                "Set-Cookie",
                f"{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}",
            )
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _html(self, status: HTTPStatus, template: str, message: str = "") -> None:
        nonce = secrets.token_urlsafe(16)
        body = (
            template.replace("{{NONCE}}", nonce)
            .replace("{{MESSAGE}}", html.escape(message))
            .encode("utf-8")
        )
        self.send_response(status)
        self._common_headers()
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Security-Policy", _HTML_CSP.format(nonce=nonce))
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _login_page(self, status: HTTPStatus, message: str) -> None:
        self._html(status, _static("login.html"), message)

    def _page(self) -> None:
        self._html(HTTPStatus.OK, _static("index.html"))

    def _json(
        self, status: HTTPStatus, payload: object, headers: dict[str, str] | None = None
    ) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self._common_headers()
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if status == HTTPStatus.UNAUTHORIZED:
            self.send_header("WWW-Authenticate", 'Bearer realm="otel-stigmer"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json_error(self, status: HTTPStatus, message: str) -> None:
        self._json(status, {"error": message})

    def _executions(self, query: dict[str, list[str]]) -> None:
        limit = _int_param(query, "limit", _LIST_LIMIT)
        status_name = query.get("status", [""])[0]
        if limit is None or (status_name and status_name not in _STATUS_FILTERS):
            self._json_error(
                HTTPStatus.BAD_REQUEST,
                "limit must be a positive number; status one of " + ", ".join(_STATUS_FILTERS),
            )
            return
        store = self.app.store
        try:
            newest = store.last_rowid
            before_id = query.get("before", [""])[0]
            before = store.page_key(before_id) if before_id else None
            summaries = store.executions(
                limit=min(limit, _LIST_LIMIT),
                status=_STATUS_FILTERS[status_name] if status_name else None,
                search=query.get("q", [""])[0].strip(),
                before=before,
            )
        except StoreClosedError:
            self._json_error(HTTPStatus.SERVICE_UNAVAILABLE, "receiver is shutting down")
            return
        self._json(
            HTTPStatus.OK,
            [execution_to_json(s) for s in summaries],
            {"X-Last-Event-Id": str(newest)},
        )

    def _status_runs(self, query: dict[str, list[str]]) -> None:
        limit = _int_param(query, "limit", _LIST_LIMIT)
        status_name = query.get("status", [""])[0]
        if limit is None or (status_name and status_name not in _STATUS_FILTERS):
            self._json_error(
                HTTPStatus.BAD_REQUEST,
                "limit must be a positive number; status one of " + ", ".join(_STATUS_FILTERS),
            )
            return
        try:
            with self.app.store.reading() as conn:
                newest = newest_update_id(conn)
                runs = status_runs(
                    conn,
                    limit=min(limit, _LIST_LIMIT),
                    status=_STATUS_FILTERS[status_name] if status_name else None,
                    search=query.get("q", [""])[0].strip(),
                    before=query.get("before", [""])[0] or None,
                )
        except StoreClosedError:
            self._json_error(HTTPStatus.SERVICE_UNAVAILABLE, "receiver is shutting down")
            return
        self._json(HTTPStatus.OK, [run_to_json(r) for r in runs], {"X-Last-Status-Id": str(newest)})

    def _status_stream(self, query: dict[str, list[str]]) -> None:
        self._event_stream(query, "an update id", self._status_pump)

    def _status_pump(self, last: int) -> None:
        app = self.app
        self._send("retry: 1000\n\n")
        quiet_since = time.monotonic()
        while not app.stopping.is_set():
            with app.store.reading() as conn:
                cursor, changed = changed_runs(conn, last, _STREAM_BATCH)
            if changed:
                self._send(
                    "".join(
                        f"id: {update_id}\ndata: "
                        f"{json.dumps(run_to_json(run), separators=(',', ':'))}\n\n"
                        for update_id, run in changed
                    )
                )
                quiet_since = time.monotonic()
            if cursor > last:
                last = cursor
                continue
            if app.status_store is not None:
                app.status_store.wait_for_change(last, _WAIT_SLICE)
            else:
                app.stopping.wait(_WAIT_SLICE)
            if time.monotonic() - quiet_since >= app.keepalive:
                self._send(": keep-alive\n\n")
                quiet_since = time.monotonic()

    def _execution(self, execution_id: str) -> None:
        try:
            summary = self.app.store.execution(execution_id)
        except StoreClosedError:
            self._json_error(HTTPStatus.SERVICE_UNAVAILABLE, "receiver is shutting down")
            return
        if summary is None:
            self._json_error(HTTPStatus.NOT_FOUND, "no events for this execution")
            return
        self._json(HTTPStatus.OK, execution_to_json(summary))

    def _events(self, execution_id: str, query: dict[str, list[str]]) -> None:
        paged = "after" in query or "limit" in query or "last" in query
        after = _int_param(query, "after", 0, minimum=0)
        limit = _int_param(query, "limit", _PAGE_LIMIT)
        last = _int_param(query, "last", 0, minimum=0)
        rows = query.get("format", [""])[0] == "rows"
        if after is None or limit is None or last is None:
            self._json_error(HTTPStatus.BAD_REQUEST, "after, limit and last must be numbers")
            return
        store = self.app.store
        try:
            if last:
                stored = store.latest(execution_id, min(last, _PAGE_LIMIT))
            elif paged:
                cap = _ROWS_PAGE_LIMIT if rows else _PAGE_LIMIT
                stored = store.page(execution_id, after_rowid=after, limit=min(limit, cap))
            else:
                stored = []
                while page := store.page(execution_id, after_rowid=after, limit=_PAGE_LIMIT):
                    stored += page
                    after = page[-1].rowid
                stored.sort(key=lambda s: (s.event.sequence_number, s.rowid))
        except StoreClosedError:
            self._json_error(HTTPStatus.SERVICE_UNAVAILABLE, "receiver is shutting down")
            return
        if not stored and not (paged and store.execution(execution_id) is not None):
            self._json_error(HTTPStatus.NOT_FOUND, "no events for this execution")
            return
        if rows:
            self._json_parts(
                HTTPStatus.OK, [event_to_row(s.event, s.rowid, s.late) for s in stored]
            )
        else:
            self._json_parts(HTTPStatus.OK, [_event_json(s) for s in stored])

    def _json_parts(self, status: HTTPStatus, items: list[Any]) -> None:
        """Send a JSON list encoded item by item (no long hold of the GIL on big pages)."""
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        body = ("[" + ",".join(dumps(item) for item in items) + "]").encode("utf-8")
        self.send_response(status)
        self._common_headers()
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, execution_id: str | None, query: dict[str, list[str]]) -> None:
        self._event_stream(query, "an arrival id", lambda last: self._pump(execution_id, last))

    def _event_stream(
        self, query: dict[str, list[str]], id_kind: str, pump: Callable[[int], None]
    ) -> None:
        """Answer with a server-sent event stream that ``pump`` feeds from an id on."""
        resume = self.headers.get("Last-Event-ID") or query.get("after", ["0"])[0]
        try:
            last = max(0, int(resume))
        except ValueError:
            self._json_error(HTTPStatus.BAD_REQUEST, f"Last-Event-ID must be {id_kind}")
            return
        self.send_response(HTTPStatus.OK)
        self._common_headers()
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        try:
            pump(last)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, ssl.SSLError):
            _log.debug("SSE client %s went away", self.address_string())
        except StoreClosedError:
            _log.debug("store closed under an SSE stream")

    def _pump(self, execution_id: str | None, last: int) -> None:
        app = self.app
        store = app.store
        self._send("retry: 1000\n\n")
        quiet_since = time.monotonic()
        seen = last
        while not app.stopping.is_set():
            batch = store.stored_since(last, limit=_STREAM_BATCH, execution_id=execution_id)
            if batch:
                last = seen = max(seen, batch[-1].rowid)
                self._send("".join(_sse_message(s) for s in batch))
                quiet_since = time.monotonic()
            if len(batch) == _STREAM_BATCH:
                continue
            # Other executions' events wake us too; the next query skips them by index.
            seen = max(seen, store.wait_for_change(seen, _WAIT_SLICE))
            if time.monotonic() - quiet_since >= app.keepalive:
                self._send(": keep-alive\n\n")
                quiet_since = time.monotonic()

    def _send(self, text: str) -> None:
        self.wfile.write(text.encode("utf-8"))
        self.wfile.flush()


def _event_json(stored: StoredEvent) -> dict[str, Any]:
    return event_to_json(stored.event, stored.rowid, late=stored.late)


def _sse_message(stored: StoredEvent) -> str:
    data = json.dumps(_event_json(stored), separators=(",", ":"))
    return f"id: {stored.rowid}\ndata: {data}\n\n"


def _int_param(
    query: dict[str, list[str]], name: str, default: int, *, minimum: int = 1
) -> int | None:
    """Return a numeric query parameter, ``default`` when absent, None when not valid."""
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        return None
    return value if value >= minimum else None
