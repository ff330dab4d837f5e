"""``python -m benchmarks.status_runs [--runs N] [--tasks T]``: listing status-protocol runs.

The live page lists runs reported with ``updateStatus`` through ``/api/status-runs``, which
walks an index and decodes only the statuses it returns. This measures it side by side, in
one process and over real HTTP, with the page's own list of progress runs
(``/api/executions``, a summary table) and with ``/api/status``, which decodes every stored
status (a whole-store read: what listing statuses cost before). Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import tempfile
import time
from pathlib import Path

from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.http import LiveHttpServer
from otel_stigmer.server.status_store import StatusStore
from otel_stigmer.server.store import EventStore
from otel_stigmer.status.wire import (
    ExecutionPhase,
    WorkflowExecutionStatus,
    WorkflowTask,
    WorkflowTaskStatus,
)

KEY = "bench-status-runs"
_PHASES = (
    ExecutionPhase.EXECUTION_COMPLETED,
    ExecutionPhase.EXECUTION_FAILED,
    ExecutionPhase.EXECUTION_IN_PROGRESS,
)


def _fill(path: Path, runs: int, tasks: int) -> None:
    events = EventStore(path)
    statuses = StatusStore(path)
    try:
        batch: list[WorkflowProgressEvent] = []
        for n in range(runs):
            for kind, status in (
                ("workflow_started", "running"),
                ("workflow_completed", "completed"),
            ):
                batch.append(
                    WorkflowProgressEvent(
                        workflow_execution_id=f"progress-{n}",
                        event_type=kind,
                        workflow_name="bench",
                        status=status,
                        timestamp_ms=1_700_000_000_000 + n,
                        sequence_number=n * 2 + (kind == "workflow_completed"),
                        event_id=f"{kind}-{n}",
                    )
                )
            if len(batch) >= 5000:
                events.add(batch)
                batch = []
        events.add(batch)
        task_list = [
            WorkflowTask(
                task_id=f"call-{t}",
                task_name=f"task-{t % 7}",
                status=WorkflowTaskStatus.WORKFLOW_TASK_COMPLETED,
                started_at="2026-01-11T14:30:22.000Z",
                completed_at="2026-01-11T14:30:23.000Z",
            )
            for t in range(tasks)
        ]
        for n in range(runs):
            statuses.update(
                f"status-{n}",
                WorkflowExecutionStatus(
                    phase=_PHASES[n % len(_PHASES)],
                    started_at="2026-01-11T14:30:21.000Z",
                    tasks=task_list,
                ),
            )
    finally:
        statuses.close()
        events.close()


def _median_ms(port: int, path: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        started = time.perf_counter()
        conn.request("GET", path, headers={"Authorization": f"Bearer {KEY}"})
        response = conn.getresponse()
        response.read()
        times.append((time.perf_counter() - started) * 1000)
        conn.close()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Fill a store, time the three listings, print medians and ratios."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.status_runs")
    parser.add_argument("--runs", type=int, default=5000, help="runs of each protocol")
    parser.add_argument("--tasks", type=int, default=20, help="tasks per status")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "events.db"
        _fill(path, args.runs, args.tasks)
        store = EventStore(path)
        try:
            with LiveHttpServer(store, BearerKeyAuth([KEY]), port=0) as live:
                rows = {
                    "/api/executions?limit=100": _median_ms(
                        live.port, "/api/executions?limit=100", args.repeat
                    ),
                    "/api/status-runs?limit=100": _median_ms(
                        live.port, "/api/status-runs?limit=100", args.repeat
                    ),
                    "/api/status-runs?limit=100&status=failed": _median_ms(
                        live.port, "/api/status-runs?limit=100&status=failed", args.repeat
                    ),
                    "/api/status (every status)": _median_ms(
                        live.port, "/api/status", max(1, args.repeat // 3)
                    ),
                }
        finally:
            store.close()
    print(f"{args.runs} progress runs and {args.runs} status runs of {args.tasks} tasks each")
    base = rows["/api/executions?limit=100"]
    for name, ms in rows.items():
        print(f"  {name:<44} {ms:9.1f} ms  {ms / base:7.2f}x /api/executions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
