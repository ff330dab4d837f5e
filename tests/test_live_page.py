"""The live page in a real headless Chromium: tasks appear and change status without reload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import NEEDS_CHROMIUM, TIMEOUT_MS, chromium, expect
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from otel_stigmer import StigmerConfig, StigmerSpanProcessor
from otel_stigmer import conventions as conv
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.http import LiveHttpServer
from otel_stigmer.testing import StigmerTestServer

CANARY = "canary-page-key-2b8f61"
EVIL = "<script>window.__pwned = 1</script><b>bold</b>"

pytestmark = NEEDS_CHROMIUM


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[StigmerTestServer, LiveHttpServer]]:
    with (
        StigmerTestServer(api_key=CANARY, db_path=str(tmp_path / "events.db")) as server,
        LiveHttpServer(server.server.store, BearerKeyAuth([CANARY]), port=0) as page,
    ):
        yield server, page


def test_tasks_appear_and_change_status_live_and_names_render_as_text(
    live: tuple[StigmerTestServer, LiveHttpServer],
) -> None:
    """After logging in, a running workflow's tasks appear, turn completed or failed, no reload."""
    server, page_server = live
    provider = TracerProvider()
    processor = StigmerSpanProcessor(
        config=StigmerConfig(server.endpoint, api_key=CANARY, use_tls=False)
    )
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test-live-page")
    with chromium() as browser:
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(page_server.url)
            page.fill("#key", CANARY)
            page.click("button[type=submit]")
            expect(page.locator("#connection")).to_have_attribute(
                "data-state", "live", timeout=TIMEOUT_MS
            )
            # Survives only if the page is never reloaded.
            page.evaluate("window.__marker = 'same page'")

            tasks = page.locator('[data-testid="task-call"]')
            workflow_attributes = {
                conv.WORKFLOW_EXECUTION_ID: "ex-page",
                conv.WORKFLOW_NAME: "nightly",
            }
            with tracer.start_as_current_span("nightly", attributes=workflow_attributes):
                with tracer.start_as_current_span(EVIL, attributes={conv.TASK_NAME: EVIL}):
                    expect(tasks).to_have_count(1, timeout=TIMEOUT_MS)
                    expect(tasks.first).to_have_attribute(
                        "data-status", "running", timeout=TIMEOUT_MS
                    )
                expect(tasks.first).to_have_attribute(
                    "data-status", "completed", timeout=TIMEOUT_MS
                )
                with tracer.start_as_current_span(
                    "load", attributes={conv.TASK_NAME: "load"}
                ) as span:
                    expect(tasks).to_have_count(2, timeout=TIMEOUT_MS)
                    span.set_attribute(conv.ERROR_CODE, "DISK_FULL")
                    span.record_exception(OSError("no space left on device"))
                    span.set_status(Status(StatusCode.ERROR, "no space left on device"))
                failed = page.locator('[data-testid="task-call"][data-task="load"]')
                expect(failed).to_have_attribute("data-status", "failed", timeout=TIMEOUT_MS)
                expect(failed).to_contain_text("DISK_FULL", timeout=TIMEOUT_MS)
            execution = page.locator('[data-testid="run"][data-execution-id="ex-page"]')
            expect(execution.locator(".status")).to_have_attribute(
                "data-status", "completed", timeout=TIMEOUT_MS
            )

            assert page.evaluate("window.__marker") == "same page"
            # The hostile task name is shown as text: no script ran, no element was made.
            assert page.evaluate("window.__pwned") is None
            assert tasks.first.locator(".label").text_content() == EVIL
            assert page.locator("#groups script, #groups b, #log script, #runs b").count() == 0
            assert CANARY not in page.content()
        finally:
            processor.shutdown()
            provider.shutdown()
