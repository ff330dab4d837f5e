"""The live page in headless Chromium: task calls, timeline, runs list, filters and links.

Events come from real ``@workflow`` / ``@task`` runs (see ``live_runs``), stored in a real
SQLite store and served by the real HTTP side; the page is never reloaded between steps
unless a test says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import NEEDS_CHROMIUM, chromium, expect, open_live_page, tab
from live_runs import failing_run, parallel_run, repeated_calls_run, retried_for_good_run

from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.http import LiveHttpServer
from otel_stigmer.server.store import EventStore

KEY = "live-view-key-5f1e0c2a9d"

pytestmark = NEEDS_CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    s = EventStore(tmp_path / "events.db")
    yield s
    s.close()


@pytest.fixture
def server(store: EventStore) -> Iterator[LiveHttpServer]:
    with LiveHttpServer(store, BearerKeyAuth([KEY]), port=0) as live:
        yield live


@pytest.fixture
def page(browser: Any, server: LiveHttpServer) -> Iterator[Any]:
    with tab(browser) as opened:
        yield opened


def _calls(page: Any, task: str) -> Any:
    return page.locator(f'[data-testid="task-call"][data-task="{task}"]')


def _shifted(events: list[WorkflowProgressEvent], ms: int) -> list[WorkflowProgressEvent]:
    """The same run moved ``ms`` later in time (to order runs by start)."""
    for event in events:
        event.timestamp_ms += ms
        event.sequence_number += ms * 1000
    return events


def test_each_call_of_a_task_is_its_own_row_under_its_task(
    page: Any, server: LiveHttpServer, store: EventStore
) -> None:
    """A task called three times shows three call rows, each completed, under one group."""
    store.add(repeated_calls_run("run-repeat"))
    open_live_page(page, server)
    fetches = _calls(page, "fetch")
    expect(fetches).to_have_count(3)
    for n in range(3):
        expect(fetches.nth(n)).to_have_attribute("data-status", "completed")
        expect(fetches.nth(n).locator(".label")).to_have_text(f"fetch #{n + 1}")
    instances = {fetches.nth(n).get_attribute("data-instance") for n in range(3)}
    assert len(instances) == 3
    group = page.locator('[data-testid="task-group"][data-task="fetch"]')
    expect(group).to_contain_text("3 calls")
    expect(page.locator("#run-count")).to_have_text("4/4 task calls")


def test_parallel_calls_of_one_task_are_separate_rows_and_counted_each(
    page: Any, server: LiveHttpServer, store: EventStore
) -> None:
    """Five parallel calls of one task are five rows (one per instance id) and 5/5 calls."""
    store.add(parallel_run("run-parallel", calls=5, seconds=0.05))
    open_live_page(page, server)
    rows = _calls(page, "resize")
    expect(rows).to_have_count(5)
    assert len({rows.nth(n).get_attribute("data-instance") for n in range(5)}) == 5
    expect(page.locator("#run-count")).to_have_text("5/5 task calls")
    expect(page.locator('[data-testid="task-group"]')).to_have_count(1)


def test_a_call_that_failed_for_good_shows_failed_with_its_retry(
    page: Any, server: LiveHttpServer, store: EventStore
) -> None:
    """A call failing on both attempts is failed, with a retry bar then a failed bar."""
    store.add(retried_for_good_run("run-retried"))
    open_live_page(page, server)
    charge = _calls(page, "charge")
    expect(charge).to_have_count(1)
    expect(charge).to_have_attribute("data-status", "failed")
    expect(charge).to_have_attribute("data-attempts", "2")
    expect(charge.locator(".status")).to_have_text("failed")
    attempts = charge.locator('[data-testid="attempt"]')
    expect(attempts).to_have_count(2)
    assert [attempts.nth(n).get_attribute("data-outcome") for n in range(2)] == [
        "retry",
        "failed",
    ]
    assert attempts.nth(0).bounding_box()["x"] < attempts.nth(1).bounding_box()["x"]
    expect(charge).to_contain_text("card service unreachable (attempt 2)")


def test_a_failed_run_looks_failed_and_a_completed_one_does_not(
    page: Any, server: LiveHttpServer, store: EventStore
) -> None:
    """A failed run has a red bar, mark and list entry; a completed run a green bar."""
    store.add(failing_run("run-failed"))
    store.add(_shifted(repeated_calls_run("run-ok"), 10_000))
    open_live_page(page, server, "#/runs/run-failed")
    expect(page.locator("#run-head")).to_have_attribute("data-status", "failed")
    expect(page.locator("#run-title .status")).to_have_text("failed")
    fill = page.locator("#run-fill")
    expect(fill).to_have_css("background-color", "rgb(161, 34, 27)")
    expect(fill).to_have_attribute("style", "width: 100%;")
    listed = page.locator('[data-testid="run"][data-execution-id="run-failed"]')
    expect(listed).to_have_attribute("data-status", "failed")
    expect(listed.locator(".status")).to_have_text("failed")
    expect(page.locator("#run-error")).to_contain_text("daily e-mail quota reached")
    page.locator('[data-testid="run"][data-execution-id="run-ok"]').click()
    expect(page.locator("#run-head")).to_have_attribute("data-status", "completed")
    expect(fill).to_have_css("background-color", "rgb(27, 110, 44)")


def test_the_newest_run_is_selected_and_a_click_selects_another(
    page: Any, server: LiveHttpServer, store: EventStore
) -> None:
    """Without a link the newest run is shown, listed first; clicking a run shows it."""
    store.add(failing_run("run-older"))
    store.add(_shifted(repeated_calls_run("run-newer"), 60_000))
    open_live_page(page, server)
    runs = page.locator('[data-testid="run"]')
    expect(runs.first).to_have_attribute("data-execution-id", "run-newer")
    expect(runs.first).to_have_attribute("aria-current", "true")
    expect(page.locator("#run-id")).to_have_text("run-newer")
    runs.nth(1).click()
    expect(page.locator("#run-id")).to_have_text("run-older")
    expect(runs.nth(1)).to_have_attribute("aria-current", "true")
    expect(runs.first).to_have_attribute("aria-current", "false")
    assert page.evaluate("location.hash") == "#/runs/run-older"


def test_timeline_bars_follow_the_calls_in_time_with_progress_marked(
    page: Any, server: LiveHttpServer, store: EventStore
) -> None:
    """Bars of successive calls start further right; a progress event is a mark on its bar."""
    store.add(repeated_calls_run("run-timeline", seconds=0.1))
    open_live_page(page, server)
    fetches = _calls(page, "fetch")
    expect(fetches).to_have_count(3)
    bars = [fetches.nth(n).locator('[data-testid="attempt"]') for n in range(3)]
    boxes = [bar.bounding_box() for bar in bars]
    assert boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"]
    # Each call ends before the next one starts (the calls ran one after the other).
    assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"] + 1
    progress = _calls(page, "report-progress")
    mark = progress.locator('[data-testid="progress-mark"]')
    expect(mark).to_have_count(1)
    bar = progress.locator('[data-testid="attempt"]').bounding_box()
    x = mark.bounding_box()["x"]
    assert bar["x"] < x < bar["x"] + bar["width"]
    groups = page.locator('[data-testid="task-group"]')
    assert [groups.nth(n).get_attribute("data-task") for n in range(2)] == [
        "fetch",
        "report-progress",
    ]


def test_status_filter_and_search_narrow_the_runs_list(
    page: Any, server: LiveHttpServer, store: EventStore
) -> None:
    """The status filter and the search box list only the matching runs, newest first."""
    store.add(failing_run("run-a", name="mailer"))
    store.add(_shifted(repeated_calls_run("run-b"), 1_000))
    store.add(_shifted(retried_for_good_run("run-c"), 2_000))
    open_live_page(page, server)
    runs = page.locator('[data-testid="run"]')
    expect(runs).to_have_count(3)
    page.select_option("#status-filter", "failed")
    expect(runs).to_have_count(2)
    assert [runs.nth(n).get_attribute("data-execution-id") for n in range(2)] == [
        "run-c",
        "run-a",
    ]
    page.fill("#search", "checkout")
    expect(runs).to_have_count(1)
    expect(runs.first).to_have_attribute("data-execution-id", "run-c")
    page.select_option("#status-filter", "completed")
    expect(runs).to_have_count(0)
    expect(page.locator("#no-runs")).to_have_text("No run matches.")
    page.select_option("#status-filter", "")
    page.fill("#search", "")
    expect(runs).to_have_count(3)


def test_a_link_opens_that_run(page: Any, server: LiveHttpServer, store: EventStore) -> None:
    """``#/runs/<id>`` and ``?run=<id>`` open that run, even when it is not the newest."""
    store.add(failing_run("run/with space"))
    store.add(_shifted(repeated_calls_run("run-latest"), 5_000))
    open_live_page(page, server, "#/runs/run%2Fwith%20space")
    expect(page.locator("#run-id")).to_have_text("run/with space")
    link = page.locator("#run-link")
    expect(link).to_have_attribute("href", "#/runs/run%2Fwith%20space")
    page.goto(server.url + "?run=run-latest")
    expect(page.locator("#run-id")).to_have_text("run-latest")
    expect(_calls(page, "fetch")).to_have_count(3)


def test_calls_appear_live_and_a_running_call_shows_only_its_own_progress(
    page: Any, server: LiveHttpServer, store: EventStore
) -> None:
    """Arriving events update rows without reload; a new running call shows no leftover 100%."""
    events = repeated_calls_run("run-live")
    second_start = [
        n for n, e in enumerate(events) if e.event_type == "task_started" and e.task_name == "fetch"
    ][1]
    open_live_page(page, server)
    page.evaluate("window.__marker = 'same page'")
    store.add(events[: second_start + 1])
    expect(page.locator("#run-id")).to_have_text("run-live")
    fetches = _calls(page, "fetch")
    expect(fetches).to_have_count(2)
    expect(fetches.nth(0)).to_have_attribute("data-status", "completed")
    expect(fetches.nth(0).locator(".num").nth(2)).to_have_text("100%")
    expect(fetches.nth(1)).to_have_attribute("data-status", "running")
    expect(fetches.nth(1).locator(".num").nth(2)).to_have_text("")
    expect(page.locator("#run-count")).to_have_text("1/2 task calls")
    store.add(events[second_start + 1 :])
    expect(fetches).to_have_count(3)
    expect(page.locator("#run-head")).to_have_attribute("data-status", "completed")
    store.add(_shifted(failing_run("run-next"), 1_000))
    expect(page.locator('[data-testid="run"]').first).to_have_attribute(
        "data-execution-id", "run-next"
    )
    assert page.evaluate("window.__marker") == "same page"


def test_a_task_outcome_after_the_workflow_ended_is_shown_late(
    page: Any, server: LiveHttpServer, store: EventStore
) -> None:
    """An outcome arriving after the workflow's end is marked late; the run is not reopened."""
    events = parallel_run("run-late", calls=2, seconds=0.02)
    outcome = next(e for e in events if e.event_type == "task_completed")
    store.add([e for e in events if e is not outcome])
    store.add([outcome])
    open_live_page(page, server)
    late = page.locator('[data-testid="task-call"][data-late="true"]')
    expect(late).to_have_count(1)
    expect(late).to_have_attribute("data-instance", outcome.task_instance_id)
    expect(late.locator(".late")).to_have_text("late")
    expect(page.locator("#run-head")).to_have_attribute("data-status", "completed")
    expect(page.locator('[data-testid="event"]').first.locator(".late")).to_have_count(1)


def test_a_task_with_many_calls_starts_collapsed_and_expands(
    page: Any, server: LiveHttpServer, store: EventStore
) -> None:
    """A task with more than 50 calls shows one summary row until expanded."""
    store.add(parallel_run("run-many", calls=60, seconds=0.001))
    open_live_page(page, server)
    group = page.locator('[data-testid="task-group"][data-task="resize"]')
    expect(group).to_contain_text("60 calls")
    expect(group).to_contain_text("60 completed")
    expect(_calls(page, "resize")).to_have_count(0)
    group.locator("button").click()
    expect(_calls(page, "resize")).to_have_count(60)
    expect(page.locator("#run-count")).to_have_text("60/60 task calls")


def _luminance(rgb: str) -> float:
    red, green, blue = (int(part) / 255 for part in rgb[rgb.index("(") + 1 : -1].split(",")[:3])

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(red) + 0.7152 * channel(green) + 0.0722 * channel(blue)


def test_every_status_mark_has_an_icon_and_accessible_contrast(
    page: Any, server: LiveHttpServer, store: EventStore
) -> None:
    """Each status badge shows an icon before its word and text contrast of at least 4.5:1."""
    events = retried_for_good_run("run-marks")
    retry_at = next(n for n, e in enumerate(events) if e.event_type == "task_retry")
    store.add(events[: retry_at + 1])  # a call left retrying, the run running
    store.add(_shifted(failing_run("run-failed"), 1_000))
    store.add(_shifted(repeated_calls_run("run-done"), 2_000))
    open_live_page(page, server, "#/runs/run-marks")
    expect(_calls(page, "charge")).to_have_attribute("data-status", "retrying")
    badges = page.locator(".status")
    seen = set()
    for n in range(badges.count()):
        badge = badges.nth(n)
        status = badge.get_attribute("data-status")
        icon = badge.evaluate("b => getComputedStyle(b, '::before').content")
        colors = badge.evaluate(
            "b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]"
        )
        light, dark = sorted((_luminance(c) for c in colors), reverse=True)
        assert (light + 0.05) / (dark + 0.05) >= 4.5, (status, colors)
        assert icon not in ("none", "normal", ""), status
        seen.add(status)
    assert {"completed", "failed", "running", "retrying"} <= seen
