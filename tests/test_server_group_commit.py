"""Group commit in the reference receiver: concurrent calls share transactions, never durability."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from otel_stigmer._proto.ai.stigmer.workflow.runner.v1 import progress_pb2_grpc
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.server import ReceiverServer
from otel_stigmer.server.store import EventStore

KEY = "group-commit-key-5e21"
AUTH = (("authorization", f"Bearer {KEY}"),)
DEADLINE_S = 30.0
POISON_TRIGGER = (
    "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.task_name = 'poison'"
    " BEGIN SELECT RAISE(ABORT, 'poisoned event'); END"
)


def _event(execution_id: str, seq: int, task_name: str = "t") -> WorkflowProgressEvent:
    return WorkflowProgressEvent(
        workflow_execution_id=execution_id,
        event_type="task_started",
        workflow_name="wf",
        task_name=task_name,
        status="running",
        sequence_number=seq,
        timestamp_ms=1_000 + seq,
        event_id=f"{execution_id}-{seq}",
    )


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        pause.wait(0.005)


def _stored_ids(store: EventStore, execution_id: str) -> list[str]:
    return [stored.event.event_id for stored in store.page(execution_id, limit=10_000)]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverServer]:
    with ReceiverServer(api_keys=[KEY], db_path=tmp_path / "events.db") as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    events = EventStore(tmp_path / "events.db")
    yield events
    events.close()


@pytest.fixture
def writer_lock(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A second connection to the store's file that can hold the write lock."""
    conn = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


def test_concurrent_unary_calls_are_all_stored_each_before_its_answer(
    receiver: ReceiverServer,
) -> None:
    """32 threads each send 15 ordered unary calls; every answered event is already stored.

    Right after each answer the thread reads the store (a separate read connection) and
    finds its event there, behind all earlier events of its execution, in send order.
    """
    threads, calls = 32, 15
    problems: list[str] = []

    def run(thread: int) -> None:
        execution_id = f"exec-{thread}"
        with grpc.insecure_channel(receiver.endpoint) as channel:
            stub = progress_pb2_grpc.WorkflowRunnerCommandControllerStub(channel)
            for seq in range(1, calls + 1):
                ack = stub.report_progress(
                    _event(execution_id, seq), metadata=AUTH, timeout=DEADLINE_S
                )
                expected = [f"{execution_id}-{n}" for n in range(1, seq + 1)]
                stored = _stored_ids(receiver.store, execution_id)
                if not ack.accepted or ack.duplicate or stored != expected:
                    problems.append(f"{execution_id} seq {seq}: {ack} stored {stored}")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(threads)))
    assert problems == []
    assert receiver.store.count() == threads * calls
    summary = receiver.store.execution("exec-7")
    assert summary is not None
    assert summary.event_count == calls


def test_calls_that_wait_for_a_transaction_are_committed_together(
    store: EventStore, writer_lock: sqlite3.Connection
) -> None:
    """While one transaction waits for the file, later calls queue and share the next one."""
    writer_lock.execute("BEGIN IMMEDIATE")  # the store's first transaction waits for this
    followers = 8
    with ThreadPoolExecutor(followers + 1) as pool:
        first = pool.submit(store.add, [_event("lead", 1)])
        _wait_until(lambda: store.writing)  # the first call waits in its transaction
        rest = [pool.submit(store.add, [_event(f"exec-{n}", 1)]) for n in range(followers)]
        _wait_until(lambda: store.waiting == followers)
        assert not any(future.done() for future in rest)  # nobody answered before a commit
        writer_lock.execute("COMMIT")
        assert first.result(DEADLINE_S) == (1, 0)
        assert [future.result(DEADLINE_S) for future in rest] == [(1, 0)] * followers
    assert store.transactions == 2  # the first call's, then one for all that waited
    assert store.count() == followers + 1


def test_a_failed_group_fails_every_call_in_it_and_stores_none_of_them(
    store: EventStore, writer_lock: sqlite3.Connection
) -> None:
    """One poisoned call fails its whole group: each call raises, no event of it is stored.

    The calls of the group can be sent again afterwards (their ids were not kept as
    seen), the summaries are those of the committed events only, and the call of the
    transaction before the group is stored.
    """
    store.add([_event("exec-0", 1)])
    writer_lock.execute(POISON_TRIGGER)
    writer_lock.execute("BEGIN IMMEDIATE")
    healthy = [_event(f"exec-{n}", 2) for n in range(4)]
    with ThreadPoolExecutor(len(healthy) + 2) as pool:
        first = pool.submit(store.add, [_event("lead", 1)])
        _wait_until(lambda: store.writing)  # the first call waits in its transaction
        group = [pool.submit(store.add, [event]) for event in healthy[:2]]
        _wait_until(lambda: store.waiting == 2)
        group.append(pool.submit(store.add, [_event("exec-9", 1, task_name="poison")]))
        _wait_until(lambda: store.waiting == 3)
        group += [pool.submit(store.add, [event]) for event in healthy[2:]]
        _wait_until(lambda: store.waiting == 5)
        writer_lock.execute("COMMIT")
        assert first.result(DEADLINE_S) == (1, 0)
        for future in group:
            with pytest.raises(sqlite3.IntegrityError, match="poisoned event"):
                future.result(DEADLINE_S)
    assert store.count() == 2
    assert _stored_ids(store, "exec-9") == []
    for n in range(4):
        assert _stored_ids(store, f"exec-{n}") == (["exec-0-1"] if n == 0 else [])
    summary = store.execution("exec-0")
    assert summary is not None
    assert summary.event_count == 1
    writer_lock.execute("DROP TRIGGER poison")
    assert [store.add([event]) for event in healthy] == [(1, 0)] * len(healthy)
    summary = store.execution("exec-0")
    assert summary is not None
    assert summary.event_count == 2


def test_a_failed_group_answers_its_unary_calls_aborted(
    receiver: ReceiverServer, tmp_path: Path
) -> None:
    """Over gRPC a call whose transaction failed is answered ABORTED (retryable), not stored."""
    with sqlite3.connect(tmp_path / "events.db", isolation_level=None) as conn:
        conn.execute(POISON_TRIGGER)
    with grpc.insecure_channel(receiver.endpoint) as channel:
        stub = progress_pb2_grpc.WorkflowRunnerCommandControllerStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.report_progress(
                _event("exec-1", 1, task_name="poison"), metadata=AUTH, timeout=DEADLINE_S
            )
        assert raised.value.code() == grpc.StatusCode.ABORTED
        assert "none was stored" in (raised.value.details() or "")
        assert stub.report_progress(_event("exec-1", 2), metadata=AUTH, timeout=DEADLINE_S)
    assert _stored_ids(receiver.store, "exec-1") == ["exec-1-2"]


def test_two_stores_on_one_file_keep_ids_and_summaries_right(
    store: EventStore, tmp_path: Path
) -> None:
    """A second writer of the file is noticed: arrival ids stay unique, summaries add up."""
    other = EventStore(tmp_path / "events.db")
    try:
        for seq in range(1, 7):
            writer = store if seq % 2 else other
            assert writer.add([_event("exec-1", seq)]) == (1, 0)
        assert store.add([_event("exec-1", 7), _event("exec-2", 1)]) == (2, 0)
    finally:
        other.close()
    stored = store.page("exec-1")
    assert [s.event.sequence_number for s in stored] == [1, 2, 3, 4, 5, 6, 7]
    assert len({s.rowid for s in stored}) == 7
    summary = store.execution("exec-1")
    assert summary is not None
    assert summary.event_count == 7
    assert summary.last_rowid == stored[-1].rowid
