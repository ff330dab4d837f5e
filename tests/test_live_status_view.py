"""The live page shows runs reported with ``updateStatus``, in headless Chromium.

Statuses are folded from real ``@workflow`` / ``@task`` runs (see ``live_runs``) by the
status sink's own fold and sent over gRPC with the real ``StatusClient`` to the reference
receiver, which merges and stores them; the page reads them through the real HTTP side.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import NEEDS_CHROMIUM, chromium, expect, open_live_page, tab
from live_runs import failing_run, repeated_calls_run

from otel_stigmer import StigmerConfig
from otel_stigmer.server.app import ReceiverServer
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.http import LiveHttpServer
from otel_stigmer.status import StatusClient, fold_events
from otel_stigmer.status.wire import (
    ExecutionPhase,
    WorkflowExecutionStatus,
    WorkflowTask,
    WorkflowTaskStatus,
)

KEY = "live-status-key-9b7c1e"
EVIL = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'

pytestmark = NEEDS_CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverServer]:
    with ReceiverServer(api_keys=[KEY], db_path=tmp_path / "events.db") as server:
        yield server


@pytest.fixture
def server(receiver: ReceiverServer) -> Iterator[LiveHttpServer]:
    with LiveHttpServer(
        receiver.store, BearerKeyAuth([KEY]), port=0, status_store=receiver.status_store
    ) as live:
        yield live


@pytest.fixture
def client(receiver: ReceiverServer) -> Iterator[StatusClient]:
    config = StigmerConfig(receiver.endpoint, api_key=KEY, use_tls=False, protocol="status")
    with StatusClient(config) as status_client:
        yield status_client


@pytest.fixture
def page(browser: Any, server: LiveHttpServer) -> Iterator[Any]:
    with tab(browser) as opened:
        yield opened


def _send_folded(client: StatusClient, events: list[Any]) -> WorkflowExecutionStatus:
    """Fold a run's events as the status sink does and send the status; return it."""
    ((execution_id, status),) = fold_events(events).items()
    client.update_status(execution_id, status)
    return status


def _tasks(page: Any) -> Any:
    return page.locator('[data-testid="status-task"]')


def test_a_status_protocol_run_is_listed_and_shows_its_tasks_with_their_marks(
    page: Any, server: LiveHttpServer, receiver: ReceiverServer, client: StatusClient
) -> None:
    """A failed status run is listed as failed, marked "status protocol"; its tasks show."""
    receiver.store.add(repeated_calls_run("run-progress"))
    status = _send_folded(client, failing_run("run-status"))
    open_live_page(page, server, "#/runs/run-status")
    listed = page.locator('[data-testid="run"][data-execution-id="run-status"]')
    expect(listed).to_have_attribute("data-protocol", "status")
    expect(listed).to_have_attribute("data-status", "failed")
    expect(listed.locator(".status")).to_have_text("failed")
    expect(listed.locator('[data-testid="protocol"]')).to_have_text("status protocol")
    expect(listed.locator(".meta")).to_contain_text("2 tasks")
    progress_run = page.locator('[data-testid="run"][data-execution-id="run-progress"]')
    expect(progress_run).to_have_attribute("data-protocol", "progress")
    expect(progress_run.locator('[data-testid="protocol"]')).to_be_hidden()

    expect(page.locator("#run-head")).to_have_attribute("data-status", "failed")
    expect(page.locator('#run-title [data-testid="protocol"]')).to_have_text("status protocol")
    expect(page.locator("#status-section")).to_be_visible()
    expect(page.locator("#calls-section")).to_be_hidden()
    expect(page.locator("#log-section")).to_be_hidden()
    expect(page.locator("#run-error")).to_have_text(status.error)
    expect(page.locator("#run-count")).to_have_text("2/2 tasks")
    tasks = _tasks(page)
    expect(tasks).to_have_count(2)
    assert [tasks.nth(n).get_attribute("data-task") for n in range(2)] == ["prepare", "notify"]
    assert [tasks.nth(n).get_attribute("data-status") for n in range(2)] == [
        "completed",
        "failed",
    ]
    assert [tasks.nth(n).get_attribute("data-task-id") for n in range(2)] == [
        t.task_id for t in status.tasks
    ]
    expect(tasks.nth(1).locator(".status")).to_have_text("failed")
    expect(tasks.nth(1).locator(".msg")).to_have_text(status.tasks[1].error)
    assert "daily e-mail quota reached" in status.tasks[1].error
    bars = [tasks.nth(n).locator('[data-testid="task-bar"]') for n in range(2)]
    assert [bar.get_attribute("data-outcome") for bar in bars] == ["completed", "failed"]
    first, second = (bar.bounding_box() for bar in bars)
    assert first["x"] < second["x"]  # notify started after prepare

    progress_run.click()
    expect(page.locator("#calls-section")).to_be_visible()
    expect(page.locator("#status-section")).to_be_hidden()
    expect(page.locator('[data-testid="task-call"][data-task="fetch"]')).to_have_count(3)


def test_status_updates_appear_live_and_the_status_filter_applies(
    page: Any, server: LiveHttpServer, client: StatusClient
) -> None:
    """A new status run appears live as running, then turns completed; filters apply to it."""
    open_live_page(page, server)
    page.evaluate("window.__marker = 'same page'")
    running = WorkflowTask(
        task_id="call-1",
        task_name="fetch",
        status=WorkflowTaskStatus.WORKFLOW_TASK_IN_PROGRESS,
        started_at="2026-01-11T14:30:22.000Z",
    )
    client.update_status(
        "run-live",
        WorkflowExecutionStatus(
            phase=ExecutionPhase.EXECUTION_IN_PROGRESS,
            started_at="2026-01-11T14:30:21.000Z",
            tasks=[running],
        ),
    )
    listed = page.locator('[data-testid="run"][data-execution-id="run-live"]')
    expect(listed).to_have_attribute("data-status", "running")
    expect(page.locator("#run-id")).to_have_text("run-live")
    expect(_tasks(page)).to_have_count(1)
    expect(_tasks(page).first).to_have_attribute("data-status", "running")
    done = WorkflowTask()
    done.CopyFrom(running)
    done.status = WorkflowTaskStatus.WORKFLOW_TASK_COMPLETED
    done.completed_at = "2026-01-11T14:30:23.500Z"
    skipped = WorkflowTask(
        task_id="call-2", task_name="notify", status=WorkflowTaskStatus.WORKFLOW_TASK_SKIPPED
    )
    client.update_status(
        "run-live",
        WorkflowExecutionStatus(
            phase=ExecutionPhase.EXECUTION_COMPLETED,
            completed_at="2026-01-11T14:30:24.000Z",
            tasks=[done, skipped],
        ),
    )
    expect(listed).to_have_attribute("data-status", "completed")
    expect(page.locator("#run-head")).to_have_attribute("data-status", "completed")
    tasks = _tasks(page)
    expect(tasks).to_have_count(2)
    expect(tasks.first).to_have_attribute("data-status", "completed")
    expect(tasks.first.locator(".num").nth(2)).to_have_text("1.50 s")
    expect(tasks.nth(1)).to_have_attribute("data-status", "skipped")
    expect(tasks.nth(1).locator(".status")).to_have_text("skipped")
    icon = tasks.nth(1).locator(".status").evaluate("b => getComputedStyle(b, '::before').content")
    assert icon == '"\u21b7 "'
    expect(page.locator("#run-facts")).to_contain_text("duration 3.00 s")
    assert page.evaluate("window.__marker") == "same page"

    client.update_status(
        "run-failing", WorkflowExecutionStatus(phase=ExecutionPhase.EXECUTION_FAILED, error="boom")
    )
    runs = page.locator('[data-testid="run"]')
    expect(runs).to_have_count(2)
    page.select_option("#status-filter", "failed")
    expect(runs).to_have_count(1)
    expect(runs.first).to_have_attribute("data-execution-id", "run-failing")
    page.select_option("#status-filter", "completed")
    expect(runs).to_have_count(1)
    expect(runs.first).to_have_attribute("data-execution-id", "run-live")


def test_a_hostile_task_name_and_id_render_as_text(
    page: Any, server: LiveHttpServer, client: StatusClient
) -> None:
    """Markup in a status run's id, task name, task id and error is shown as text, never run."""
    client.update_status(
        EVIL,
        WorkflowExecutionStatus(
            phase=ExecutionPhase.EXECUTION_FAILED,
            error=EVIL,
            tasks=[
                WorkflowTask(
                    task_id=EVIL,
                    task_name=EVIL,
                    status=WorkflowTaskStatus.WORKFLOW_TASK_FAILED,
                    error=EVIL,
                    started_at="2026-01-11T14:30:22.000Z",
                )
            ],
        ),
    )
    open_live_page(page, server)
    task = _tasks(page).first
    expect(task.locator(".label")).to_have_text(EVIL)
    expect(task.locator(".msg")).to_have_text(EVIL)
    expect(page.locator("#run-id")).to_have_text(EVIL)
    expect(page.locator("#run-error")).to_have_text(EVIL)
    expect(page.locator('[data-testid="run"] .id')).to_have_text(EVIL)
    assert page.locator("#status-tasks img, #runs img, #run-head img").count() == 0
    assert page.evaluate("window.__pwned") is None
