"""The live page shows runs reported with ``updateStatus``, in headless Chromium.

Statuses are folded from real ``@workflow`` / ``@task`` runs (see ``live_runs``) by the
status sink's own fold and sent over gRPC with the real ``StatusClient`` to the reference
receiver, which merges and stores them; the page reads them through the real HTTP side.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
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

CHROMIUM = "/usr/bin/chromium"
KEY = "live-status-key-9b7c1e"
TIMEOUT_MS = 20_000
EVIL = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)",
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


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
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert errors == []


def _open(page: Any, server: LiveHttpServer, fragment: str = "") -> None:
    """Log in with a one-time link, then open the page (at ``fragment``)."""
    page.goto(server.login_url())
    if fragment:
        page.goto(server.url + fragment)
    _expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def _expect(locator: Any) -> Any:
    from playwright.sync_api import expect  # noqa: PLC0415 - optional

    return expect(locator)


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
    _open(page, server, "#/runs/run-status")
    listed = page.locator('[data-testid="run"][data-execution-id="run-status"]')
    _expect(listed).to_have_attribute("data-protocol", "status")
    _expect(listed).to_have_attribute("data-status", "failed")
    _expect(listed.locator(".status")).to_have_text("failed")
    _expect(listed.locator('[data-testid="protocol"]')).to_have_text("status protocol")
    _expect(listed.locator(".meta")).to_contain_text("2 tasks")
    progress_run = page.locator('[data-testid="run"][data-execution-id="run-progress"]')
    _expect(progress_run).to_have_attribute("data-protocol", "progress")
    _expect(progress_run.locator('[data-testid="protocol"]')).to_be_hidden()

    _expect(page.locator("#run-head")).to_have_attribute("data-status", "failed")
    _expect(page.locator('#run-title [data-testid="protocol"]')).to_have_text("status protocol")
    _expect(page.locator("#status-section")).to_be_visible()
    _expect(page.locator("#calls-section")).to_be_hidden()
    _expect(page.locator("#log-section")).to_be_hidden()
    _expect(page.locator("#run-error")).to_have_text(status.error)
    _expect(page.locator("#run-count")).to_have_text("2/2 tasks")
    tasks = _tasks(page)
    _expect(tasks).to_have_count(2)
    assert [tasks.nth(n).get_attribute("data-task") for n in range(2)] == ["prepare", "notify"]
    assert [tasks.nth(n).get_attribute("data-status") for n in range(2)] == [
        "completed",
        "failed",
    ]
    assert [tasks.nth(n).get_attribute("data-task-id") for n in range(2)] == [
        t.task_id for t in status.tasks
    ]
    _expect(tasks.nth(1).locator(".status")).to_have_text("failed")
    _expect(tasks.nth(1).locator(".msg")).to_have_text(status.tasks[1].error)
    assert "daily e-mail quota reached" in status.tasks[1].error
    bars = [tasks.nth(n).locator('[data-testid="task-bar"]') for n in range(2)]
    assert [bar.get_attribute("data-outcome") for bar in bars] == ["completed", "failed"]
    first, second = (bar.bounding_box() for bar in bars)
    assert first["x"] < second["x"]  # notify started after prepare

    progress_run.click()
    _expect(page.locator("#calls-section")).to_be_visible()
    _expect(page.locator("#status-section")).to_be_hidden()
    _expect(page.locator('[data-testid="task-call"][data-task="fetch"]')).to_have_count(3)


def test_status_updates_appear_live_and_the_status_filter_applies(
    page: Any, server: LiveHttpServer, client: StatusClient
) -> None:
    """A new status run appears live as running, then turns completed; filters apply to it."""
    _open(page, server)
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
    _expect(listed).to_have_attribute("data-status", "running")
    _expect(page.locator("#run-id")).to_have_text("run-live")
    _expect(_tasks(page)).to_have_count(1)
    _expect(_tasks(page).first).to_have_attribute("data-status", "running")
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
    _expect(listed).to_have_attribute("data-status", "completed")
    _expect(page.locator("#run-head")).to_have_attribute("data-status", "completed")
    tasks = _tasks(page)
    _expect(tasks).to_have_count(2)
    _expect(tasks.first).to_have_attribute("data-status", "completed")
    _expect(tasks.first.locator(".num").nth(2)).to_have_text("1.50 s")
    _expect(tasks.nth(1)).to_have_attribute("data-status", "skipped")
    _expect(tasks.nth(1).locator(".status")).to_have_text("skipped")
    icon = tasks.nth(1).locator(".status").evaluate("b => getComputedStyle(b, '::before').content")
    assert icon == '"\u21b7 "'
    _expect(page.locator("#run-facts")).to_contain_text("duration 3.00 s")
    assert page.evaluate("window.__marker") == "same page"

    client.update_status(
        "run-failing", WorkflowExecutionStatus(phase=ExecutionPhase.EXECUTION_FAILED, error="boom")
    )
    runs = page.locator('[data-testid="run"]')
    _expect(runs).to_have_count(2)
    page.select_option("#status-filter", "failed")
    _expect(runs).to_have_count(1)
    _expect(runs.first).to_have_attribute("data-execution-id", "run-failing")
    page.select_option("#status-filter", "completed")
    _expect(runs).to_have_count(1)
    _expect(runs.first).to_have_attribute("data-execution-id", "run-live")


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
    _open(page, server)
    task = _tasks(page).first
    _expect(task.locator(".label")).to_have_text(EVIL)
    _expect(task.locator(".msg")).to_have_text(EVIL)
    _expect(page.locator("#run-id")).to_have_text(EVIL)
    _expect(page.locator("#run-error")).to_have_text(EVIL)
    _expect(page.locator('[data-testid="run"] .id')).to_have_text(EVIL)
    assert page.locator("#status-tasks img, #runs img, #run-head img").count() == 0
    assert page.evaluate("window.__pwned") is None
