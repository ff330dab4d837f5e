"""Durable spool: undelivered events survive SIGKILL; a bad spool fails at configure time."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerConfig, configure
from otel_stigmer import conventions as conv
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.exceptions import CallbackError, ConfigError
from otel_stigmer.processor import StigmerSpanProcessor
from otel_stigmer.sinks import MemorySink
from otel_stigmer.spool import SqliteSpool
from otel_stigmer.testing import StigmerTestServer

from .support import (
    CANARY,
    CANARY_FRAGMENT,
    FAST,
    ROOT,
    assert_canary_absent_from_files,
    assert_exactly_once_in_order,
    wait_until,
)

CHILD = str(Path(__file__).with_name("child_spool.py"))


def _rows(numbers: range) -> list[tuple[str, str]]:
    rows = []
    for number in numbers:
        name = f"t{number}"
        rows += [("task_started", name), ("task_progress", name), ("task_completed", name)]
    return rows


def _whole(numbers: range) -> list[tuple[str, str]]:
    return [("workflow_started", ""), *_rows(numbers), ("workflow_completed", "")]


def _spooled(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            (count,) = db.execute("SELECT COUNT(*) FROM spooled_events").fetchone()
        except sqlite3.OperationalError:  # not created yet
            return 0
    return int(count)


def _child(mode: str, env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, CHILD, mode],
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )


def _close(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        child.kill()
        child.wait()
    for stream in (child.stdin, child.stdout):
        if stream is not None:
            stream.close()


def _line(child: subprocess.Popen[str], log: Path) -> str:
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, log.read_text(errors="replace")[-3000:]
    return line.strip()


def test_sigkilled_runner_delivers_its_spool_on_restart(tmp_path: Path) -> None:
    """SIGKILL while the receiver is down; the next run delivers every event once, in order."""
    spool = tmp_path / "spool.db"
    log = tmp_path / "runner.log"
    with StigmerTestServer(api_key=CANARY) as server:
        env = {**server.env(), "STIGMER_SPOOL_PATH": str(spool), "STIGMER_SERVICE_TIMEOUT": "2"}
        first = _child("first", env, log)
        try:
            assert _line(first, log) == "delivered"
            server.stop()
            assert first.stdin is not None
            first.stdin.write("receiver down\n")
            first.stdin.flush()
            assert _line(first, log) == "produced"
            # Three tasks (three events each) and the workflow's end: ten events, spooled.
            assert wait_until(lambda: _spooled(spool) == 10, timeout=30), _spooled(spool)
            first.send_signal(signal.SIGKILL)
            assert first.wait(timeout=30) == -signal.SIGKILL
        finally:
            _close(first)
        assert_canary_absent_from_files(spool)

        server.restart()
        second = _child("second", env, log)
        try:
            outcome = json.loads(_line(second, log))
            assert second.wait(timeout=60) == 0
        finally:
            _close(second)
        assert outcome["flushed"] is True
        assert not outcome["stats"]["dropped"]
        assert_exactly_once_in_order(
            server.events(),
            {"spool-a": _whole(range(3)), "spool-b": _whole(range(5)), "spool-c": _whole(range(2))},
        )
        assert_canary_absent_from_files(server.server.store.path)
    assert _spooled(spool) == 0
    assert_canary_absent_from_files(spool)
    assert CANARY_FRAGMENT not in log.read_text(errors="replace")


def _configure_with_spool(path: str) -> None:
    env = {
        "STIGMER_SERVICE_ENDPOINT": "127.0.0.1:1",
        "STIGMER_SERVICE_API_KEY": CANARY,
        "STIGMER_SERVICE_USE_TLS": "false",
        "STIGMER_SPOOL_PATH": path,
    }
    provider = TracerProvider()
    try:
        configure(StigmerConfig.from_env(env), tracer_provider=provider)
    finally:
        provider.shutdown()


def _assert_config_error(path: str, *words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _configure_with_spool(path)
    text = str(caught.value)
    assert "STIGMER_SPOOL_PATH" in text
    assert "Fix" in text
    assert CANARY_FRAGMENT not in text
    for word in words:
        assert word in text


def test_garbage_spool_file_fails_at_configure(tmp_path: Path) -> None:
    """A spool file that is not SQLite: ConfigError from configure() naming the variable."""
    path = tmp_path / "spool.db"
    path.write_bytes(b"\x00garbage, not a database\xff" * 512)
    _assert_config_error(str(path), "move the damaged file away")


def test_truncated_spool_file_fails_at_configure(tmp_path: Path) -> None:
    """A spool cut in half (a torn copy): ConfigError at configure time, not later."""
    path = tmp_path / "spool.db"
    spool = SqliteSpool(path)
    spool.store([_event(n) for n in range(2000)])
    spool.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    Path(f"{path}-wal").unlink(missing_ok=True)
    _assert_config_error(str(path))


def test_foreign_sqlite_file_fails_at_configure(tmp_path: Path) -> None:
    """A SQLite file with another table of the same name is refused, not overwritten."""
    path = tmp_path / "spool.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE spooled_events (something_else TEXT)")
    _assert_config_error(str(path))


def test_spool_path_is_a_directory(tmp_path: Path) -> None:
    """A directory as spool path: ConfigError naming the variable and the fix."""
    _assert_config_error(str(tmp_path), "is a directory")


def test_spool_directory_missing(tmp_path: Path) -> None:
    """A spool in a directory that does not exist: ConfigError before anything runs."""
    _assert_config_error(str(tmp_path / "nowhere" / "spool.db"), "does not exist")


def test_spool_directory_not_writable(tmp_path: Path) -> None:
    """A read-only spool directory: ConfigError for a normal user; root may write there."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.geteuid() != 0:
            _assert_config_error(str(locked / "spool.db"), "not writable")
            return
        # Permission bits do not bind root: the directory is writable, so no error, and the
        # spool really works there (the /proc case below covers a place root cannot write).
        spool = SqliteSpool(locked / "spool.db")
        spool.close()
        StigmerConfig(
            endpoint="127.0.0.1:9", api_key="k", use_tls=False, spool_path=str(locked / "s.db")
        )
    finally:
        locked.chmod(0o700)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux procfs")
def test_spool_file_that_cannot_be_created() -> None:
    """A directory where no file can be created, even by root: ConfigError at configure."""
    _assert_config_error("/proc/stigmer-spool.db", "cannot be used as a spool")


class BrokenSpool:
    """A spool whose disk went away after start-up: every write fails."""

    def load(self) -> list[WorkflowProgressEvent]:
        """Nothing left by an earlier run."""
        return []

    def store(self, events: Sequence[WorkflowProgressEvent]) -> None:
        """Fail like a full disk."""
        raise sqlite3.OperationalError("database or disk is full")

    def remove(self, event_ids: Sequence[str]) -> None:
        """Fail like a full disk."""
        raise sqlite3.OperationalError("database or disk is full")

    def close(self) -> None:
        """Nothing to release."""


def test_spool_failing_at_run_time_never_stops_delivery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A spool that starts failing mid-run is logged; events are still delivered."""
    sink = MemorySink()
    processor = StigmerSpanProcessor(sink, spool=BrokenSpool())
    provider = TracerProvider()
    provider.add_span_processor(processor)
    with provider.get_tracer("t").start_as_current_span(
        "wf", attributes={conv.WORKFLOW_EXECUTION_ID: "broken-spool"}
    ):
        pass
    assert processor.force_flush(10_000)
    assert [e.event_type for e in sink.events] == ["workflow_started", "workflow_completed"]
    assert any("spool" in r.getMessage() for r in caplog.records)
    provider.shutdown()


def _event(number: int) -> WorkflowProgressEvent:
    return WorkflowProgressEvent(
        workflow_execution_id="torn",
        event_type="task_progress",
        event_id=f"torn-{number}",
        message="x" * 200,
        sequence_number=number + 1,
    )


class FlakySink(MemorySink):
    """Refuses every send until ``up`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.up = threading.Event()
        self.refused = 0

    def send(self, events: Sequence[WorkflowProgressEvent]) -> None:
        """Keep ``events`` once up; raise UNAVAILABLE before."""
        if not self.up.is_set():
            self.refused += 1
            raise CallbackError(grpc.StatusCode.UNAVAILABLE, "down")
        super().send(events)


def test_failing_spool_and_full_queue_together_keep_the_sender_alive() -> None:
    """An event dropped from a full outbox while the spool fails: the sender lives on."""
    sink = FlakySink()
    config = StigmerConfig("127.0.0.1:1", CANARY, use_tls=False, max_queue_size=2)
    processor = StigmerSpanProcessor(sink, config=config, spool=BrokenSpool(), retry_policy=FAST)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("a", attributes={conv.WORKFLOW_EXECUTION_ID: "a"}):
        assert wait_until(lambda: sink.refused >= 1, timeout=10)
    assert wait_until(lambda: processor.stats().enqueued == 2, timeout=10)  # outbox full
    late = tracer.start_span("b", attributes={conv.WORKFLOW_EXECUTION_ID: "b"})
    assert wait_until(lambda: processor.stats().dropped["queue_full"] == 1, timeout=10)
    sink.up.set()
    assert processor.force_flush(10_000)
    late.end()
    assert processor.force_flush(10_000)
    assert [(e.workflow_execution_id, e.event_type) for e in sink.events] == [
        ("a", "workflow_started"),
        ("a", "workflow_completed"),
        ("b", "workflow_completed"),
    ]
    provider.shutdown()
