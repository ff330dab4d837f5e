"""The spool under an attacker's and a careless operator's hands.

Forks that never hang on an inherited lock, a lock held past the busy timeout that leaves
no transaction open, a file SQLite may only read, undecodable rows, and a restore bounded
by the queue bound.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerConfig, configure
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.sinks import MemorySink
from otel_stigmer.spool import SqliteSpool

from .support import CANARY, CANARY_FRAGMENT, ROOT, wait_until

FORK_CHILD = str(Path(__file__).with_name("child_fork_spool.py"))


def _event(number: int, execution_id: str = "spooled") -> WorkflowProgressEvent:
    return WorkflowProgressEvent(
        workflow_execution_id=execution_id,
        event_type="task_progress",
        event_id=f"{execution_id}-{number}",
        sequence_number=number + 1,
    )


def _rows(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM spooled_events").fetchone()
    return int(count)


@pytest.mark.slow
def test_children_forked_after_configure_with_a_spool_never_hang(tmp_path: Path) -> None:
    """30 children forked while a parent thread writes the shared spool all deliver and exit."""
    children = 30
    delivered = tmp_path / "delivered"
    delivered.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STIGMER_SERVICE_ENDPOINT": "127.0.0.1:9",
        "STIGMER_SERVICE_API_KEY": CANARY,
        "STIGMER_SERVICE_USE_TLS": "false",
        "STIGMER_SPOOL_PATH": str(tmp_path / "spool.db"),
    }
    result = subprocess.run(
        [sys.executable, FORK_CHILD, str(children), str(delivered)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["hung"] == 0, outcome
    assert outcome["exited"] == [0] * children, outcome
    lines = set()
    for path in delivered.iterdir():
        lines.update(path.read_text().splitlines())
    for index in range(children):
        assert f"child-{index} workflow_completed" in lines
    assert CANARY_FRAGMENT not in result.stdout + result.stderr


def test_a_lock_held_past_the_busy_timeout_leaves_no_transaction_open(tmp_path: Path) -> None:
    """A write that times out on another process's lock is rolled back; later writes work."""
    path = tmp_path / "spool.db"
    spool = SqliteSpool(path, busy_timeout=0.05)
    spool.store([_event(0)])
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock ...
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        spool.store([_event(1)])
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        spool.remove(["spooled-0"])
    blocker.execute("ROLLBACK")  # ... and lets it go
    blocker.close()

    spool.store([_event(2), _event(3)])
    spool.remove(["spooled-0"])
    # Committed, not pending in an open transaction: another connection sees the rows.
    assert _rows(path) == 2
    assert [event.event_id for event in spool.load()] == ["spooled-2", "spooled-3"]
    spool.close()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory an unprivileged user may write (pytest's own is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="stigmer-spool-"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        for item in path.iterdir():
            item.unlink()
        path.rmdir()


def _without_dac_override() -> None:
    """Drop CAP_DAC_OVERRIDE from the bounding set: after exec, root obeys permission bits."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override = 24, 1
    if libc.prctl(pr_capbset_drop, cap_dac_override, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


_CONFIGURE = """
from otel_stigmer import ConfigError, StigmerConfig
try:
    StigmerConfig.from_env()
except ConfigError as error:
    print("ConfigError:", error)
else:
    print("configured")
"""

_OPEN_SPOOL = """
import os
from otel_stigmer import ConfigError
from otel_stigmer.spool import SqliteSpool
try:
    SqliteSpool(os.environ["STIGMER_SPOOL_PATH"])
except ConfigError as error:
    print("ConfigError:", error)
else:
    print("opened")
"""


@pytest.mark.parametrize(
    ("code", "problem"),
    [(_CONFIGURE, "can be read but not written"), (_OPEN_SPOOL, "readonly database")],
    ids=["configure", "SqliteSpool"],
)
def test_spool_file_readable_but_not_writable_fails_at_configure(
    shared_dir: Path, code: str, problem: str
) -> None:
    """A spool SQLite may only read is a ConfigError naming STIGMER_SPOOL_PATH and the fix.

    Checked by ``configure()`` (the file) and by the spool itself (SQLite opened it
    read-only). Permission bits do not bind root, so as root the check runs without the
    capability that lets root write any file (CAP_DAC_OVERRIDE), as a confined service.
    """
    path = shared_dir / "spool.db"
    spool = SqliteSpool(path)
    spool.store([_event(0)])
    spool.close()
    path.chmod(0o444)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            "STIGMER_SERVICE_ENDPOINT": "127.0.0.1:9",
            "STIGMER_SERVICE_API_KEY": CANARY,
            "STIGMER_SERVICE_USE_TLS": "false",
            "STIGMER_SPOOL_PATH": str(path),
        },
        cwd=shared_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=_without_dac_override if os.geteuid() == 0 else None,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ConfigError:"), result.stdout
    assert "STIGMER_SPOOL_PATH" in result.stdout
    assert problem in result.stdout
    assert "Fix:" in result.stdout
    assert CANARY_FRAGMENT not in result.stdout + result.stderr


def _configured(path: Path, max_queue_size: int) -> tuple[MemorySink, TracerProvider, object]:
    config = StigmerConfig(
        "127.0.0.1:9", CANARY, use_tls=False, spool_path=str(path), max_queue_size=max_queue_size
    )
    sink = MemorySink()
    provider = TracerProvider()
    pipeline = configure(config, tracer_provider=provider, sink=sink)
    return sink, provider, pipeline


def test_an_undecodable_spool_row_is_skipped_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two rows that are no event: start-up goes on, the good rows are delivered in order."""
    path = tmp_path / "spool.db"
    spool = SqliteSpool(path)
    spool.store([_event(0)])
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO spooled_events (event_id, payload) VALUES ('bad-1', ?), ('bad-2', ?)",
            (b"\xff\xff\xff\xff not protobuf", b"\x0a\xff\x7f"),
        )
    spool.store([_event(1)])
    spool.close()

    sink, provider, _pipeline = _configured(path, 1000)
    try:
        assert wait_until(lambda: len(sink.events) == 2, timeout=10), sink.events
        assert [event.event_id for event in sink.events] == ["spooled-0", "spooled-1"]
        warnings = [r for r in caplog.records if "could not be decoded" in r.getMessage()]
        assert len(warnings) == 1
        assert warnings[0].levelno == logging.WARNING
        assert "2 spool rows" in warnings[0].getMessage()
    finally:
        provider.shutdown()
    assert _rows(path) == 0  # delivered rows removed, bad rows gone


def test_restore_takes_at_most_half_the_queue_bound(tmp_path: Path) -> None:
    """3,000 spooled events, a bound of 1,000: 500 restored; the rest wait in the file."""
    path = tmp_path / "spool.db"
    spool = SqliteSpool(path)
    spool.store([_event(number) for number in range(3000)])
    spool.close()

    sink, provider, pipeline = _configured(path, 1000)
    try:
        assert wait_until(lambda: len(sink.events) == 500, timeout=10)
        assert pipeline.force_flush(10_000)  # type: ignore[attr-defined]
        assert [event.event_id for event in sink.events] == [
            f"spooled-{number}" for number in range(500)
        ]
    finally:
        provider.shutdown()
    assert _rows(path) == 2500

    # The next start takes the next slice, oldest first.
    sink, provider, pipeline = _configured(path, 1000)
    try:
        assert wait_until(lambda: len(sink.events) == 500, timeout=10)
        assert sink.events[0].event_id == "spooled-500"
    finally:
        provider.shutdown()
