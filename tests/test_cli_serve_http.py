"""The receiver's HTTP side: auth by key or session cookie, JSON API, SSE stream and resume."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import queue
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_stigmer.events import (
    new_error_progress_event,
    new_progress_event,
    new_task_progress_event,
)
from otel_stigmer.server import cli as serve_cli
from otel_stigmer.server.app import ReceiverServer
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.http import SESSION_COOKIE, LiveHttpServer
from otel_stigmer.server.store import EventStore
from otel_stigmer.testing._certs import make_test_certificates

CANARY = "canary-http-key-5f0e7a"
AUTH = {"Authorization": f"Bearer {CANARY}"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    events = EventStore(tmp_path / "events.db")
    yield events
    events.close()


@pytest.fixture
def live(store: EventStore) -> Iterator[LiveHttpServer]:
    with LiveHttpServer(store, BearerKeyAuth([CANARY]), port=0, keepalive=0.5) as server:
        yield server


def _request(
    server: LiveHttpServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _login(server: LiveHttpServer, key: str) -> tuple[int, dict[str, str]]:
    form = urllib.parse.urlencode({"key": key})
    status, headers, _ = _request(
        server,
        "POST",
        "/login",
        {"Content-Type": "application/x-www-form-urlencoded"},
        form,
    )
    return status, headers


def _session(headers: dict[str, str]) -> str:
    cookie = headers["Set-Cookie"]
    return cookie.split(";", 1)[0].split("=", 1)[1]


def _stream_lines(
    server: LiveHttpServer, path: str, headers: dict[str, str], count: int
) -> list[str]:
    """Read an SSE stream until ``count`` data lines arrived; return them."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        data: list[str] = []
        while len(data) < count:
            line = response.readline().decode("utf-8")
            assert line, f"stream ended after {data}"
            if line.startswith(("data:", "id:", ":")):
                data.append(line.strip())
        return data
    finally:
        conn.close()


def test_api_needs_the_key_or_a_session(live: LiveHttpServer, store: EventStore) -> None:
    """Without credentials the API answers 401 and the page a login form; the key opens both."""
    store.add([new_progress_event("ex-1", "workflow_started", "wf", "running", "go", 1)])
    status, headers, _ = _request(live, "GET", "/api/executions")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert _request(live, "GET", "/api/executions", {"Authorization": "Bearer wrong"})[0] == 401
    status, _, body = _request(live, "GET", "/")
    assert status == 401
    assert b'action="/login"' in body
    status, _, body = _request(live, "GET", "/api/executions", AUTH)
    assert status == 200
    assert [e["execution_id"] for e in json.loads(body)] == ["ex-1"]


def test_login_sets_a_strict_httponly_cookie_that_is_not_the_key(live: LiveHttpServer) -> None:
    """A correct key in the login form sets a random session cookie that opens the page."""
    status, _ = _login(live, "not-the-key")
    assert status == 401
    status, headers = _login(live, CANARY)
    assert status == 303
    assert headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    token = _session(headers)
    assert CANARY not in token
    status, page_headers, body = _request(live, "GET", "/", {"Cookie": f"{SESSION_COOKIE}={token}"})
    assert status == 200
    assert b"EventSource" in body
    assert "nonce-" in page_headers["Content-Security-Policy"]
    assert _request(live, "POST", "/logout", {"Cookie": f"{SESSION_COOKIE}={token}"})[0] == 303
    assert (
        _request(live, "GET", "/api/executions", {"Cookie": f"{SESSION_COOKIE}={token}"})[0] == 401
    )


def test_cross_origin_login_is_rejected(live: LiveHttpServer) -> None:
    """A login form posted from another origin is refused even with the right key."""
    form = urllib.parse.urlencode({"key": CANARY})
    status, headers, _ = _request(
        live,
        "POST",
        "/login",
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"},
        form,
    )
    assert status == 403
    assert "Set-Cookie" not in headers


def test_one_time_login_link_works_once(live: LiveHttpServer) -> None:
    """The login link sets a session cookie the first time and is refused afterwards."""
    path = live.login_url().removeprefix(live.url.rstrip("/"))
    status, headers, _ = _request(live, "GET", path)
    assert status == 303
    token = _session(headers)
    assert (
        _request(live, "GET", "/api/executions", {"Cookie": f"{SESSION_COOKIE}={token}"})[0] == 200
    )
    assert _request(live, "GET", path)[0] == 401


def test_events_come_in_sequence_order_with_errors(live: LiveHttpServer, store: EventStore) -> None:
    """The events endpoint lists one execution's events by sequence number, errors included."""
    late = new_error_progress_event("ex-1", "wf", "BOOM", "it broke", "trace", 3)
    early = new_progress_event("ex-1", "workflow_started", "wf", "running", "go", 1)
    middle = new_task_progress_event("ex-1", "task_started", "wf", "t", "running", "t", 2)
    other = new_progress_event("ex-2", "workflow_started", "wf2", "running", "go", 1)
    store.add([late, other, early, middle])
    status, _, body = _request(live, "GET", "/api/executions/ex-1/events", AUTH)
    assert status == 200
    events = json.loads(body)
    assert [e["sequence_number"] for e in events] == [1, 2, 3]
    assert events[2]["error"] == {"code": "BOOM", "message": "it broke", "stack_trace": "trace"}
    assert events[1]["task_name"] == "t"
    assert _request(live, "GET", "/api/executions/nope/events", AUTH)[0] == 404


def test_stream_delivers_live_events_and_resumes_after_last_event_id(
    live: LiveHttpServer, store: EventStore
) -> None:
    """The SSE stream replays, then delivers new events live; Last-Event-ID resumes after it."""
    store.add([new_progress_event("ex-1", "workflow_started", "wf", "running", "go", 1)])
    lines: queue.Queue[str] = queue.Queue()
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    try:
        conn.request("GET", "/api/executions/ex-1/stream", headers=AUTH)
        response = conn.getresponse()

        def read() -> None:
            # Ends with an error once the test closes the connection; that is expected.
            with contextlib.suppress(Exception):
                for raw in response:
                    lines.put(raw.decode("utf-8").strip())

        threading.Thread(target=read, daemon=True).start()

        def next_data() -> dict[str, object]:
            while True:
                line = lines.get(timeout=10)
                if line.startswith("data:"):
                    return dict(json.loads(line.removeprefix("data: ")))

        assert next_data()["event_type"] == "workflow_started"
        # Stored only now, while the stream is open: it must arrive live.
        store.add([new_task_progress_event("ex-1", "task_started", "wf", "t", "running", "t", 2)])
        live_event = next_data()
        assert live_event["event_type"] == "task_started"
        assert live_event["rowid"] == 2
    finally:
        conn.close()
    resumed = _stream_lines(live, "/api/stream", {**AUTH, "Last-Event-ID": "1"}, 2)
    assert resumed[0] == "id: 2"


def test_stream_of_one_execution_skips_others_and_sends_keepalives(
    live: LiveHttpServer, store: EventStore
) -> None:
    """A per-execution stream carries only that execution, with keep-alive comments between."""
    store.add(
        [
            new_progress_event("ex-2", "workflow_started", "wf2", "running", "go", 1),
            new_progress_event("ex-1", "workflow_started", "wf", "running", "go", 1),
        ]
    )
    lines = _stream_lines(live, "/api/executions/ex-1/stream", AUTH, 3)
    assert lines[0] == "id: 2"
    assert json.loads(lines[1].removeprefix("data: "))["execution_id"] == "ex-1"
    assert lines[2] == ": keep-alive"


def test_the_key_never_reaches_the_logs(
    live: LiveHttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Logins, API calls and login links leave no key and no token in the log records."""
    caplog.set_level(logging.DEBUG, logger="otel_stigmer")
    _login(live, CANARY)
    _request(live, "GET", "/api/executions", AUTH)
    link = live.login_url()
    token = link.rsplit("=", 1)[1]
    _request(live, "GET", link.removeprefix(live.url.rstrip("/")))
    assert caplog.records
    text = caplog.text + repr(live) + repr(live.sessions)
    assert CANARY not in text
    assert token not in text


def _serve_args(**overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "no_http": False,
        "http_port": None,
        "http_host": None,
        "host": "127.0.0.1",
        "tls_cert": None,
        "tls_key": None,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def test_serve_keeps_grpc_when_the_default_http_port_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A taken default port only costs the page (with a warning); an explicit one is an error."""
    with (
        socket.socket() as busy,
        ReceiverServer(api_keys=[CANARY], db_path=tmp_path / "e.db") as server,
    ):
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setattr(serve_cli, "DEFAULT_HTTP_PORT", port)
        assert serve_cli._start_http(_serve_args(), server, [CANARY]) is None
        assert f"port {port} is in use" in caplog.text
        with pytest.raises(OSError, match=f"cannot bind the live page to port {port}"):
            serve_cli._start_http(_serve_args(http_port=port), server, [CANARY])
        assert serve_cli._start_http(_serve_args(no_http=True), server, [CANARY]) is None


def test_https_with_the_receiver_certificate(store: EventStore, tmp_path: Path) -> None:
    """Given a certificate, the HTTP side serves HTTPS and marks the session cookie Secure."""
    certs = make_test_certificates(tmp_path / "tls")
    with LiveHttpServer(
        store,
        BearerKeyAuth([CANARY]),
        port=0,
        tls_cert_file=certs.server_cert_path,
        tls_key_file=certs.server_key_path,
    ) as server:
        assert server.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(certs.ca_cert_path))
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=10, context=context)
        try:
            conn.request("GET", "/api/executions", headers=AUTH)
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read()) == []
            form = urllib.parse.urlencode({"key": CANARY})
            conn.request(
                "POST",
                "/login",
                body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            response = conn.getresponse()
            response.read()
            assert "; Secure" in response.getheader("Set-Cookie", "")
        finally:
            conn.close()
