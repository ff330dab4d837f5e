"""Take the README's screenshots of the live page: the demo run and five parallel task calls.

``python scripts/live_page_screenshots.py [OUT_DIR]`` (default ``docs/img``) runs the demo
(``otel-stigmer demo --exit``) and a workflow making five parallel ``@task`` calls in
threads, stores both in one receiver store, and photographs each run on the live page in
headless Chromium (/usr/bin/chromium, Playwright).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from opentelemetry import trace

from otel_stigmer.decorators import task, workflow
from otel_stigmer.propagation import ContextExecutor
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.http import LiveHttpServer
from otel_stigmer.server.store import EventStore
from otel_stigmer.testing import capture_progress

CHROMIUM = "/usr/bin/chromium"
KEY = "screenshot-key-0b6a4c1e"
PARALLEL_ID = "wfexec-parallel-thumbnails"


@task(name="resize-image")
def resize_image(name: str, seconds: float) -> str:
    """Pretend to resize one image, reporting progress half-way."""
    time.sleep(seconds / 2)
    trace.get_current_span().add_event(
        "progress", {"stigmer.progress": 50, "stigmer.message": f"{name}: half done"}
    )
    time.sleep(seconds / 2)
    return name


@task(name="publish-album")
def publish_album(names: list[str]) -> None:
    """Pretend to publish the resized images."""
    time.sleep(0.3)


@workflow(name="make-thumbnails", attributes={"stigmer.metadata.tasks_planned": 6})
def make_thumbnails(execution_id: str) -> None:
    """Five parallel calls of one task, then one more."""
    images = [("beach.jpg", 0.9), ("city.jpg", 1.4), ("forest.jpg", 0.6)]
    images += [("harbour.jpg", 1.8), ("snow.jpg", 1.1)]
    with ContextExecutor(max_workers=5) as pool:
        names = list(pool.map(lambda item: resize_image(*item), images))
    publish_album(names)


def _shoot(server: LiveHttpServer, execution_id: str, path: Path) -> None:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.goto(server.login_url())
            page.goto(f"{server.url}#/runs/{execution_id}")
            page.wait_for_selector(f'body[data-run-ready="{execution_id}"]')
            page.wait_for_timeout(500)  # let the last slice paint
            page.screenshot(path=str(path))
        finally:
            browser.close()


def main(argv: list[str]) -> int:
    """Run both workflows and write ``live-demo.png`` and ``live-parallel.png``."""
    out = Path(argv[0] if argv else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        demo_dir = Path(tmp) / "demo"
        subprocess.run(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "otel_stigmer.cli", "demo", "--exit", "--dir", str(demo_dir)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        store = EventStore(demo_dir / "stigmer-events.db")
        try:
            (demo_id,) = [s.execution_id for s in store.executions()]
            with capture_progress() as events:
                make_thumbnails(execution_id=PARALLEL_ID)
            store.add(sorted(events, key=lambda e: e.sequence_number))
            with LiveHttpServer(store, BearerKeyAuth([KEY]), port=0) as server:
                _shoot(server, demo_id, out / "live-demo.png")
                _shoot(server, PARALLEL_ID, out / "live-parallel.png")
        finally:
            store.close()
    print(f"wrote {out / 'live-demo.png'} and {out / 'live-parallel.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
