"""The status sink under a flaky receiver: ordered, coalesced, never regressing, complete.

Twenty executions run at once and report through both protocols into one reference
receiver that fails a seeded 30 % of all calls with UNAVAILABLE. The receiver keeps every
``updateStatus`` it accepted, in arrival order, and counts every call it received.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
from status_oracle import expected_outcome, stored_outcome

from benchmarks.status_coalescing import RandomFaults, main, run_workload
from otel_stigmer.server.status_merge import merge_status
from otel_stigmer.status.wire import (
    TERMINAL_PHASES,
    TERMINAL_TASK_STATUSES,
    WorkflowExecutionStatus,
)
from otel_stigmer.testing import StigmerTestServer

KEY = "status-faults-key-91aa"


def _rank(value: int, terminal: frozenset[int]) -> int:
    return 2 if value in terminal else (1 if value else 0)


def assert_never_regresses(updates: Sequence[WorkflowExecutionStatus]) -> None:
    """Each update keeps every task of the one before, no status or phase goes back."""
    phase = 0
    tasks: dict[str, int] = {}
    for index, update in enumerate(updates):
        where = f"update {index + 1} of {len(updates)}"
        if update.phase:
            assert _rank(update.phase, TERMINAL_PHASES) >= _rank(phase, TERMINAL_PHASES), where
            phase = update.phase
        if not update.tasks:
            continue
        current = {task.task_id: int(task.status) for task in update.tasks}
        assert tasks.keys() <= current.keys(), f"{where} lost tasks"
        for task_id, before in tasks.items():
            after = current[task_id]
            assert _rank(after, TERMINAL_TASK_STATUSES) >= _rank(before, TERMINAL_TASK_STATUSES)
            if before in TERMINAL_TASK_STATUSES:
                assert after == before, f"{where}: task {task_id} changed its outcome"
        tasks = current


@pytest.mark.slow
def test_twenty_executions_thirty_percent_unavailable() -> None:
    """No state regresses, the final state is complete, calls per execution <= events."""
    server = StigmerTestServer(api_key=KEY)
    faults = RandomFaults(0.3, seed=5)
    server.server.faults = faults
    with server:
        run = run_workload(server, prefix="flaky", executions=20, pace=0.01)
        for execution_id in run.execution_ids:
            updates = [status for _, status in server.status_store.updates(execution_id)]
            assert updates, execution_id
            assert_never_regresses(updates)
            merged = WorkflowExecutionStatus()
            for update in updates:
                merged = merge_status(merged, update)
            stored = server.status(execution_id)
            assert stored == merged  # the receiver applied the upstream merge rules
            events = server.events(execution_id)
            assert stored_outcome(stored) == expected_outcome(events)
            assert len(stored.tasks) == 6
            assert run.calls[execution_id] <= run.events[execution_id], execution_id
    assert faults.injected >= 10
    assert sum(run.calls.values()) > sum(run.stored_updates.values())  # failures were retried
    assert run.open_executions == 0  # every finished execution's state was dropped


def test_coalescing_benchmark_runs_and_prints_both_rows(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks.status_coalescing` runs end to end (tiny sizes) and prints a ratio."""
    level = logging.getLogger("otel_stigmer").level
    assert main(["--executions", "2", "--fault-ratio", "0", "--paces", "0"]) == 0
    out = capsys.readouterr().out
    assert (
        "| baseline: one call per event, tasks work 0 ms | 23.0 | 23.0 | 1.00 (1.00-1.00) |" in out
    )
    assert "| coalescing (as shipped), tasks work 0 ms | 23.0 |" in out
    assert "calls with coalescing = " in out
    assert logging.getLogger("otel_stigmer").level == level  # restored
