"""EventStore: SQLite storage, de-duplication, ordering, summaries and live waits."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.server.store import EventStore, ExecutionSummary, StoreClosedError


def _event(
    execution_id: str = "exec-1",
    seq: int = 1,
    event_type: str = "task_started",
    *,
    event_id: str | None = None,
    task_name: str = "t",
    status: str = "running",
    timestamp_ms: int = 1_000,
    workflow_name: str = "wf",
) -> WorkflowProgressEvent:
    return WorkflowProgressEvent(
        workflow_execution_id=execution_id,
        event_type=event_type,
        workflow_name=workflow_name,
        task_name=task_name,
        status=status,
        sequence_number=seq,
        timestamp_ms=timestamp_ms,
        event_id=event_id if event_id is not None else f"{execution_id}-{seq}-{event_type}",
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    s = EventStore(tmp_path / "events.db")
    yield s
    s.close()


def test_add_counts_accepted_and_duplicates(store: EventStore) -> None:
    """A batch reports new events as accepted and known event ids as duplicates."""
    assert store.add([_event(seq=1), _event(seq=2)]) == (2, 0)
    assert store.add([_event(seq=2), _event(seq=3)]) == (1, 1)
    assert store.count() == 3


def test_duplicates_inside_one_batch_are_dropped(store: EventStore) -> None:
    """The same event id twice in one batch is stored once."""
    assert store.add([_event(seq=1), _event(seq=1)]) == (1, 1)
    assert [e.sequence_number for e in store.events()] == [1]


def test_events_without_event_id_are_always_stored(store: EventStore) -> None:
    """An empty event_id never counts as a duplicate."""
    assert store.add([_event(event_id=""), _event(event_id="")]) == (2, 0)
    assert store.add([_event(event_id="")]) == (1, 0)
    assert store.count() == 3


def test_add_nothing_is_a_no_op(store: EventStore) -> None:
    """An empty batch stores nothing and does not move the arrival id."""
    assert store.add([]) == (0, 0)
    assert store.last_rowid == 0


def test_events_are_in_sequence_order_per_execution(store: EventStore) -> None:
    """Events come back by sequence number, then arrival, whatever the arrival order."""
    store.add([_event(seq=3), _event("exec-2", seq=1), _event(seq=1)])
    store.add([_event(seq=2), _event(seq=2, event_type="task_progress")])
    got = [(e.sequence_number, e.event_type) for e in store.events("exec-1")]
    assert got == [
        (1, "task_started"),
        (2, "task_started"),
        (2, "task_progress"),
        (3, "task_started"),
    ]


def test_all_events_are_grouped_by_execution(store: EventStore) -> None:
    """Without an execution id, events are ordered by execution, then sequence."""
    store.add([_event("b", seq=2), _event("a", seq=2), _event("b", seq=1), _event("a", seq=1)])
    got = [(e.workflow_execution_id, e.sequence_number) for e in store.events()]
    assert got == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]


def test_events_after_rowid_and_events_since(store: EventStore) -> None:
    """after_rowid filters by arrival; events_since returns arrival ids in arrival order."""
    store.add([_event(seq=5)])
    mark = store.last_rowid
    store.add([_event(seq=9), _event(seq=7)])
    assert [e.sequence_number for e in store.events("exec-1", after_rowid=mark)] == [7, 9]
    since = store.events_since(mark)
    assert [(rowid - mark, e.sequence_number) for rowid, e in since] == [(1, 9), (2, 7)]
    assert [e.sequence_number for _, e in store.events_since(0, limit=1)] == [5]


def test_stored_event_round_trips_every_field(store: EventStore) -> None:
    """The stored payload is the full event, including metadata and error details."""
    event = _event(seq=4, event_type="task_failed", status="failed")
    event.metadata["k"] = "v"
    event.error.code = "ValueError"
    event.error.stack_trace = "trace"
    event.trace_id, event.span_id, event.attempt, event.task_progress = "ab" * 16, "cd" * 8, 2, 50
    store.add([event])
    assert store.events() == [event]


def test_executions_summarise_each_run(store: EventStore) -> None:
    """A summary has the latest workflow-level status, the event count and time bounds."""
    store.add(
        [
            _event("a", 1, "workflow_started", task_name="", status="running", timestamp_ms=10),
            _event("a", 2, "task_started", timestamp_ms=20),
            _event("b", 1, "task_started", workflow_name="other", timestamp_ms=5),
        ]
    )
    store.add(
        [_event("a", 3, "workflow_completed", task_name="", status="completed", timestamp_ms=30)]
    )
    assert store.executions() == [
        ExecutionSummary("a", "wf", "completed", 3, 10, 30, last_rowid=4),
        ExecutionSummary("b", "other", "", 1, 5, 5, last_rowid=3),
    ]


def _run(store: EventStore, execution_id: str, start_ms: int, status: str, name: str) -> None:
    end_type = {"completed": "workflow_completed", "failed": "workflow_failed"}
    events = [
        _event(
            execution_id,
            1,
            "workflow_started",
            task_name="",
            workflow_name=name,
            timestamp_ms=start_ms,
        )
    ]
    if status in end_type:
        events.append(
            _event(
                execution_id,
                2,
                end_type[status],
                task_name="",
                status=status,
                workflow_name=name,
                timestamp_ms=start_ms + 5,
            )
        )
    store.add(events)


def test_executions_are_newest_first_filtered_searched_and_paged(store: EventStore) -> None:
    """Runs list newest first; status, text search and a before-key narrow and page it."""
    _run(store, "run-old", 100, "completed", "nightly")
    _run(store, "run-mid", 200, "failed", "nightly")
    _run(store, "run-new", 300, "running", "hourly_50%")
    assert [s.execution_id for s in store.executions()] == ["run-new", "run-mid", "run-old"]
    assert [s.execution_id for s in store.executions(status="failed")] == ["run-mid"]
    assert [s.execution_id for s in store.executions(search="NIGHT")] == ["run-mid", "run-old"]
    # LIKE wildcards in the search are taken literally.
    assert [s.execution_id for s in store.executions(search="_50%")] == ["run-new"]
    assert [s.execution_id for s in store.executions(search="y%5")] == []
    first = store.executions(limit=2)
    assert [s.execution_id for s in first] == ["run-new", "run-mid"]
    key = store.page_key(first[-1].execution_id)
    assert [s.execution_id for s in store.executions(limit=2, before=key)] == ["run-old"]
    assert store.execution("run-mid") == store.executions(status="failed")[0]
    assert store.execution("nope") is None


def test_a_late_task_outcome_is_marked_and_never_reopens_the_workflow(store: EventStore) -> None:
    """Task events arriving after the workflow's terminal event are stored as late; status stays."""
    store.add([_event("a", 1, "workflow_started", task_name="", status="running")])
    store.add(
        [
            _event("a", 2, "task_started"),
            _event("a", 9, "workflow_failed", task_name="", status="failed"),
        ]
    )
    store.add(
        [
            _event("a", 3, "task_failed", status="failed"),
            _event("a", 4, "workflow_progress", task_name="", status="running"),
        ]
    )
    page = store.page("a")
    assert [(p.event.event_type, p.late) for p in page] == [
        ("workflow_started", False),
        ("task_started", False),
        ("workflow_failed", False),
        ("task_failed", True),
        ("workflow_progress", False),
    ]
    summary = store.execution("a")
    assert summary is not None
    assert summary.status == "failed"
    assert [s.execution_id for s in store.executions(status="failed")] == ["a"]


def test_pages_of_one_run_follow_arrival_order(store: EventStore) -> None:
    """A run is read page by page after the last arrival id, other runs skipped."""
    store.add([_event("a", n) for n in range(1, 6)] + [_event("b", 1)] + [_event("a", 9)])
    first = store.page("a", limit=4)
    assert [p.event.sequence_number for p in first] == [1, 2, 3, 4]
    rest = store.page("a", after_rowid=first[-1].rowid, limit=4)
    assert [p.event.sequence_number for p in rest] == [5, 9]
    assert [p.event.workflow_execution_id for p in store.stored_since(0, execution_id="b")] == ["b"]


def test_a_file_of_an_older_version_gets_its_summaries_built(tmp_path: Path) -> None:
    """Opening a file without the summary table builds it from the stored events once."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE events (id INTEGER PRIMARY KEY, event_id TEXT, execution_id TEXT NOT NULL,"
        " sequence_number INTEGER NOT NULL, event_type TEXT NOT NULL, workflow_name TEXT NOT NULL,"
        " task_name TEXT NOT NULL, status TEXT NOT NULL, timestamp_ms INTEGER NOT NULL,"
        " payload BLOB NOT NULL);"
    )
    old = [
        _event("a", 1, "workflow_started", task_name="", timestamp_ms=7),
        _event("a", 2, "workflow_completed", task_name="", status="completed", timestamp_ms=9),
    ]
    conn.executemany(
        "INSERT INTO events (event_id, execution_id, sequence_number, event_type, workflow_name,"
        " task_name, status, timestamp_ms, payload) VALUES (?,?,?,?,?,?,?,?,?)",
        [
            (
                e.event_id,
                e.workflow_execution_id,
                e.sequence_number,
                e.event_type,
                e.workflow_name,
                e.task_name,
                e.status,
                e.timestamp_ms,
                e.SerializeToString(),
            )
            for e in old
        ],
    )
    conn.commit()
    conn.close()
    store = EventStore(path)
    try:
        assert store.executions() == [ExecutionSummary("a", "wf", "completed", 2, 7, 9, 2)]
        assert store.add(old) == (0, 2)
    finally:
        store.close()


def test_data_survives_reopening_the_file(tmp_path: Path) -> None:
    """Events and de-duplication persist across a close and reopen."""
    first = EventStore(tmp_path / "events.db")
    first.add([_event(seq=1)])
    first.close()
    second = EventStore(tmp_path / "events.db")
    try:
        assert [e.sequence_number for e in second.events()] == [1]
        assert second.last_rowid == 1
        assert second.add([_event(seq=1)]) == (0, 1)
    finally:
        second.close()


def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    """The store switches the SQLite file to write-ahead logging."""
    EventStore(tmp_path / "events.db").close()
    conn = sqlite3.connect(tmp_path / "events.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_wait_for_change_wakes_up_on_add(store: EventStore) -> None:
    """A waiter wakes as soon as another thread stores an event."""
    started = threading.Event()
    result: list[int] = []

    def waiter() -> None:
        started.set()
        result.append(store.wait_for_change(0, timeout=30.0))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert started.wait(10.0)
    begin = time.monotonic()
    store.add([_event()])
    thread.join(timeout=10.0)
    assert not thread.is_alive()
    assert result == [1]
    assert time.monotonic() - begin < 10.0


def test_wait_for_change_returns_at_once_when_newer_rows_exist(store: EventStore) -> None:
    """No wait happens when rows newer than the caller's mark already exist."""
    store.add([_event()])
    begin = time.monotonic()
    assert store.wait_for_change(0, timeout=30.0) == 1
    assert time.monotonic() - begin < 5.0


def test_wait_for_change_times_out_without_news(store: EventStore) -> None:
    """With nothing new, the wait ends at the timeout and returns the same arrival id."""
    store.add([_event()])
    assert store.wait_for_change(1, timeout=0.05) == 1


def test_close_wakes_waiters_and_blocks_later_use(tmp_path: Path) -> None:
    """Closing wakes a blocked waiter; later use raises StoreClosedError."""
    store = EventStore(tmp_path / "events.db")
    done = threading.Event()

    def waiter() -> None:
        store.wait_for_change(0, 60.0)
        done.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    store.close()
    assert done.wait(10.0)
    thread.join(10.0)
    with pytest.raises(StoreClosedError):
        store.add([_event()])
    with pytest.raises(StoreClosedError):
        store.events()
    store.close()


def test_concurrent_writers_lose_nothing(store: EventStore) -> None:
    """Eight threads adding batches at once store every event exactly once."""

    def writer(n: int) -> None:
        for b in range(10):
            store.add([_event(f"exec-{n}", seq=b * 10 + i) for i in range(10)])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30.0)
    assert store.count() == 800
    assert [e.sequence_number for e in store.events("exec-3")] == list(range(100))


def test_run_summaries_are_kept_on_insert_not_computed_from_the_events(tmp_path: Path) -> None:
    """Listing runs reads the summary table: it still answers when the events are gone."""
    store = EventStore(tmp_path / "events.db")
    try:
        store.add([_event("a", 1, "workflow_started", task_name=""), _event("a", 2)])
        other = sqlite3.connect(tmp_path / "events.db")
        other.execute("DELETE FROM events")
        other.commit()
        other.close()
        assert [(s.execution_id, s.event_count) for s in store.executions()] == [("a", 2)]
    finally:
        store.close()


def test_a_read_in_progress_does_not_hold_up_a_write(store: EventStore) -> None:
    """A write completes while a read is stuck half-way (reads use their own connection)."""
    store.add([_event("a", n) for n in range(1, 50)])
    gate = threading.Event()
    reading = threading.Event()

    def wait_gate() -> bool:
        reading.set()
        return gate.wait(10)

    def slow_read() -> None:
        with store._reader() as conn:
            conn.create_function("wait_gate", 0, wait_gate)
            conn.execute("SELECT wait_gate() FROM events LIMIT 1").fetchall()

    reader = threading.Thread(target=slow_read)
    reader.start()
    try:
        assert reading.wait(10)
        writer = threading.Thread(target=store.add, args=([_event("b", 1)],))
        writer.start()
        writer.join(10)
        assert not writer.is_alive()
        assert store.execution("b") is not None
    finally:
        gate.set()
        reader.join(10)
