"""The live page's JSON API: paged and filtered runs, paged events, late marks, cookies."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_stigmer.events import new_progress_event, new_task_progress_event
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.http import SESSION_COOKIE, LiveHttpServer
from otel_stigmer.server.json_view import ROW_COLUMNS
from otel_stigmer.server.store import EventStore

KEY = "live-api-key-03c9e1b7"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    events = EventStore(tmp_path / "events.db")
    yield events
    events.close()


@pytest.fixture
def live(store: EventStore) -> Iterator[LiveHttpServer]:
    with LiveHttpServer(store, BearerKeyAuth([KEY]), port=0) as server:
        yield server


def _get(
    server: LiveHttpServer, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], object]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", path, headers=AUTH if headers is None else headers)
        response = conn.getresponse()
        body = response.read()
        kind = response.getheader("Content-Type", "")
        return (
            response.status,
            dict(response.getheaders()),
            json.loads(body) if kind.startswith("application/json") else body,
        )
    finally:
        conn.close()


def _run(store: EventStore, execution_id: str, start_ms: int, end: str | None) -> None:
    events = [new_progress_event(execution_id, "workflow_started", "etl", "running", "go", 1)]
    if end is not None:
        events.append(new_progress_event(execution_id, f"workflow_{end}", "etl", end, "end", 2))
    for n, event in enumerate(events):
        event.timestamp_ms = start_ms + n
    store.add(events)


def _ids(body: object) -> list[str]:
    assert isinstance(body, list)
    return [str(item["execution_id"]) for item in body]


def test_runs_are_newest_first_filtered_searched_and_paged(
    live: LiveHttpServer, store: EventStore
) -> None:
    """``/api/executions`` takes limit, status, q and before, and names the newest arrival id."""
    _run(store, "r1", 1_000, "completed")
    _run(store, "r2", 2_000, "failed")
    _run(store, "r3", 3_000, None)
    status, headers, body = _get(live, "/api/executions")
    assert status == 200
    assert _ids(body) == ["r3", "r2", "r1"]
    assert headers["X-Last-Event-Id"] == str(store.last_rowid)
    assert _ids(_get(live, "/api/executions?status=failed")[2]) == ["r2"]
    assert _ids(_get(live, "/api/executions?status=running")[2]) == ["r3"]
    assert _ids(_get(live, "/api/executions?q=R2")[2]) == ["r2"]
    assert _ids(_get(live, "/api/executions?limit=2")[2]) == ["r3", "r2"]
    assert _ids(_get(live, "/api/executions?limit=2&before=r2")[2]) == ["r1"]
    assert _get(live, "/api/executions?status=bogus")[0] == 400
    assert _get(live, "/api/executions?limit=0")[0] == 400
    status, _, summary = _get(live, "/api/executions/r2")
    assert status == 200
    assert isinstance(summary, dict)
    assert (summary["status"], summary["event_count"]) == ("failed", 2)
    assert _get(live, "/api/executions/unknown")[0] == 404


def test_events_come_in_pages_in_arrival_order_with_late_marks(
    live: LiveHttpServer, store: EventStore
) -> None:
    """``?after=&limit=`` pages a run by arrival id; a task outcome after the end is late."""
    store.add([new_progress_event("ex", "workflow_started", "wf", "running", "go", 1)])
    store.add(
        [
            new_task_progress_event("ex", "task_started", "wf", "t", "running", "t", 2),
            new_progress_event("ex", "workflow_completed", "wf", "completed", "done", 4),
        ]
    )
    store.add([new_task_progress_event("ex", "task_completed", "wf", "t", "completed", "t", 3)])
    _, _, first = _get(live, "/api/executions/ex/events?limit=2")
    assert isinstance(first, list)
    assert [e["event_type"] for e in first] == ["workflow_started", "task_started"]
    _, _, rest = _get(live, f"/api/executions/ex/events?after={first[-1]['rowid']}&limit=2")
    assert isinstance(rest, list)
    assert [(e["event_type"], e["late"]) for e in rest] == [
        ("workflow_completed", False),
        ("task_completed", True),
    ]
    _, _, empty = _get(live, f"/api/executions/ex/events?after={rest[-1]['rowid']}")
    assert empty == []
    _, _, everything = _get(live, "/api/executions/ex/events")
    assert isinstance(everything, list)
    assert [e["sequence_number"] for e in everything] == [1, 2, 3, 4]
    assert _get(live, "/api/executions/ex")[2]["status"] == "completed"  # type: ignore[index]
    assert _get(live, "/api/executions/ex/events?after=x")[0] == 400


def test_an_unparseable_cookie_of_another_app_does_not_hide_the_session(
    live: LiveHttpServer,
) -> None:
    """A foreign cookie that http.cookies refuses still lets the session cookie through."""
    status, headers, _ = _get(live, live.login_url().removeprefix(live.url.rstrip("/")), {})
    assert status == 303
    token = headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]
    for cookie in (
        f'other_app="{{\\"a\\":1}}"x; {SESSION_COOKIE}={token}',
        f"theme=dark mode; {SESSION_COOKIE}={token}; broken=a\\b",
        f"{SESSION_COOKIE}={token}; weird[]=1",
    ):
        assert _get(live, "/api/executions", {"Cookie": cookie})[0] == 200, cookie
    assert _get(live, "/", {"Cookie": f'other_app="x"y; {SESSION_COOKIE}={token}'})[0] == 200
    assert _get(live, "/api/executions", {"Cookie": "other_app=1; stigmer_session=nope"})[0] == 401


def test_compact_rows_and_the_latest_events(live: LiveHttpServer, store: EventStore) -> None:
    """``format=rows`` answers compact rows in arrival order; ``last=N`` the newest N events."""
    started = new_progress_event("ex", "workflow_started", "wf", "running", "go", 1)
    started.metadata["tasks_planned"] = "2"
    task_event = new_task_progress_event("ex", "task_failed", "wf", "t", "failed", "boom", 2)
    task_event.task_instance_id = "call-1"
    task_event.attempt = 2
    task_event.error.code, task_event.error.message = "E", "broke"
    store.add([started, task_event])
    _, _, rows = _get(live, "/api/executions/ex/events?format=rows&after=0")
    assert isinstance(rows, list)
    assert [dict(zip(ROW_COLUMNS, row, strict=True)) for row in rows] == [
        {
            "rowid": 1,
            "event_type": "workflow_started",
            "status": "running",
            "task_name": "",
            "task_instance_id": "",
            "attempt": 0,
            "timestamp_ms": started.timestamp_ms,
            "sequence_number": 1,
            "task_progress": 0,
            "message": "go",
            "late": False,
            "error": None,
            "workflow": {"workflow_name": "wf", "trace_id": "", "metadata": {"tasks_planned": "2"}},
        },
        {
            "rowid": 2,
            "event_type": "task_failed",
            "status": "failed",
            "task_name": "t",
            "task_instance_id": "call-1",
            "attempt": 2,
            "timestamp_ms": task_event.timestamp_ms,
            "sequence_number": 2,
            "task_progress": 0,
            "message": "boom",
            "late": False,
            "error": ["E", "broke"],
            "workflow": None,
        },
    ]
    _, _, latest = _get(live, "/api/executions/ex/events?last=1")
    assert isinstance(latest, list)
    assert [(e["rowid"], e["task_instance_id"]) for e in latest] == [(2, "call-1")]
