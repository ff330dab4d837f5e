"""The workflow of ``scripts/temporal_screenshot.py`` reports what its picture shows."""

from __future__ import annotations

import importlib
import uuid
from pathlib import Path

import pytest

from .conftest import Harness, new_worker

pytestmark = pytest.mark.temporal

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def test_screenshot_workflow_reports_five_parallel_calls_and_one_retry(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five ``resize_image`` calls (one retried once) then ``publish_album``, then the end."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    script = importlib.import_module("temporal_screenshot")
    queue = f"screenshot-{uuid.uuid4().hex[:8]}"
    workflow_id = f"thumbnails-{uuid.uuid4().hex[:8]}"
    worker = harness.loop.run(
        new_worker(
            harness.client,
            task_queue=queue,
            workflows=[script.MakeThumbnailsWorkflow],
            activities=[script.resize_image, script.publish_album],
            max_cached_workflows=0,
        )
    )
    running = harness.loop.submit(worker.run())
    try:
        handle = harness.loop.run(
            harness.client.start_workflow(
                script.MakeThumbnailsWorkflow.run, script.IMAGES, id=workflow_id, task_queue=queue
            )
        )
        assert harness.loop.run(handle.result(), timeout=60) == len(script.IMAGES)
        events = harness.events_until_end(workflow_id)
    finally:
        harness.loop.run(worker.shutdown())
        running.result(10)

    resizes = [e for e in events if e.task_name == "resize_image"]
    assert len({e.task_instance_id for e in resizes}) == 5
    assert sum(e.event_type == "task_completed" for e in resizes) == 5
    assert [(e.event_type, e.attempt) for e in resizes if e.event_type == "task_retry"] == [
        ("task_retry", 1)
    ]
    publish = [e.event_type for e in events if e.task_name == "publish_album"]
    assert publish == ["task_started", "task_completed"]
    last_resize = max(events.index(e) for e in resizes)
    assert events.index(next(e for e in events if e.task_name == "publish_album")) > last_resize
    assert events[-1].event_type == "workflow_completed"
