"""Shared parts of the reliability suite: canary key, fast retries, workloads, checks."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from opentelemetry.trace import Tracer

from otel_stigmer import conventions as conv
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.retry import RetryPolicy

#: The API key of every reliability scenario; it must never show up anywhere but the wire.
CANARY = "canary-rel-5d1f0e9b7c3a-secret"
#: A prefix of the key is still a leak.
CANARY_FRAGMENT = CANARY[:18]
#: Short backoff so outages cost tenths of seconds, not tens.
FAST = RetryPolicy(initial_backoff=0.05, max_backoff=0.5)
ROOT = Path(__file__).resolve().parents[2]

Expected = dict[str, list[tuple[str, str]]]


def free_port() -> int:
    """A loopback port nothing listens on (closed again at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; return the last answer."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return condition()
        time.sleep(0.02)  # polling interval of a condition wait, not a synchronisation
    return True


def run_workflows(
    tracer: Tracer, prefix: str, workflows: int, tasks: int, *, progress: bool = True
) -> Expected:
    """Run ``workflows`` workflows of ``tasks`` tasks each; return the events each must yield."""
    expected: Expected = {}
    for index in range(workflows):
        execution_id = f"{prefix}-{index}"
        expected[execution_id] = run_workflow(tracer, execution_id, tasks, progress=progress)
    return expected


def run_workflow(
    tracer: Tracer, execution_id: str, tasks: int, *, progress: bool = True
) -> list[tuple[str, str]]:
    """Run one workflow; return its expected ``(event_type, task_name)`` rows in order."""
    rows = [("workflow_started", "")]
    attributes = {conv.WORKFLOW_EXECUTION_ID: execution_id, conv.WORKFLOW_NAME: "load"}
    with tracer.start_as_current_span("load", attributes=attributes):
        for number in range(tasks):
            name = f"t{number}"
            with tracer.start_as_current_span(name, attributes={conv.TASK_NAME: name}) as span:
                if progress:
                    span.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: 50})
            rows.append(("task_started", name))
            if progress:
                rows.append(("task_progress", name))
            rows.append(("task_completed", name))
    rows.append(("workflow_completed", ""))
    return rows


def rows_by_execution(
    events: Iterable[WorkflowProgressEvent],
) -> dict[str, list[tuple[str, str]]]:
    """Group stored events (already in sequence order) into rows per execution."""
    out: dict[str, list[tuple[str, str]]] = {}
    for event in events:
        out.setdefault(event.workflow_execution_id, []).append((event.event_type, event.task_name))
    return out


def assert_exactly_once_in_order(
    stored: list[WorkflowProgressEvent], expected: Mapping[str, list[tuple[str, str]]]
) -> None:
    """Every expected event is stored once, each execution in sequence order, nothing else."""
    ids = [event.event_id for event in stored]
    assert len(ids) == len(set(ids)), "an event id is stored twice"
    got = rows_by_execution(stored)
    assert sorted(got) == sorted(expected), "executions differ"
    for execution_id, rows in expected.items():
        assert got[execution_id] == rows, f"events of {execution_id} differ or are out of order"
    per_execution: dict[str, list[int]] = {}
    for event in stored:
        per_execution.setdefault(event.workflow_execution_id, []).append(event.sequence_number)
    for execution_id, numbers in per_execution.items():
        assert all(a < b for a, b in itertools.pairwise(numbers)), execution_id


def python_child(code: str, env: Mapping[str, str], **kwargs: object) -> subprocess.Popen[str]:
    """Start ``python -c code`` with the project importable and ``env`` added."""
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", code],
        env=full_env,
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def assert_canary_absent_from_files(*paths: str | os.PathLike[str]) -> None:
    """No byte of these files (nor their SQLite -wal / -journal companions) holds the key."""
    needle = CANARY_FRAGMENT.encode()
    for path in paths:
        for suffix in ("", "-wal", "-journal", "-shm"):
            candidate = Path(f"{os.fspath(path)}{suffix}")
            if candidate.exists():
                assert needle not in candidate.read_bytes(), f"API key stored in {candidate.name}"
