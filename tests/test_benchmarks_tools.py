"""The profiler (the process sender among its configurations) and the batch concatenation."""

from __future__ import annotations

import gc
import json
import threading
from pathlib import Path

import pytest

from benchmarks.micro import _events
from benchmarks.profile import CONFIGS
from benchmarks.profile import main as profile_main
from benchmarks.threads import GcMeter, thread_cpu_ns
from otel_stigmer._proto.ai.stigmer.workflow.runner.v1.progress_pb2 import (
    ReportProgressBatchRequest,
)
from otel_stigmer._wire import encode_batch as batch_request_bytes
from otel_stigmer.events import WorkflowProgressEvent


@pytest.mark.parametrize("count", [0, 1, 3, 500])
def test_concatenated_events_are_the_serialized_batch_request(count: int) -> None:
    """Concatenating serialized events gives the same bytes as building the batch request."""
    payloads = _events(count)
    events = [WorkflowProgressEvent.FromString(p) for p in payloads]

    expected = ReportProgressBatchRequest(events=events).SerializeToString()

    assert batch_request_bytes(payloads) == expected


def test_concatenation_handles_an_event_longer_than_a_one_byte_length() -> None:
    """A payload of 16 KiB (a three-byte length prefix) still round-trips byte for byte."""
    event = WorkflowProgressEvent(event_id="e", message="x" * 16_000)
    payload = event.SerializeToString()

    request = ReportProgressBatchRequest.FromString(batch_request_bytes([payload, payload]))

    assert [e.message for e in request.events] == [event.message, event.message]


def test_gc_meter_charges_collections_to_the_thread_that_ran_them() -> None:
    """An explicit collection in this thread is counted and timed under its thread name."""
    with GcMeter() as meter:
        gc.collect()

    mine = meter.snapshot()[threading.current_thread().name]
    assert mine["collections"][2] >= 1
    assert mine["wall_ns"] > 0


def test_thread_cpu_names_the_calling_thread() -> None:
    """Per-thread CPU comes back keyed by thread name, the calling thread included."""
    assert threading.current_thread().name in thread_cpu_ns()


@pytest.mark.slow
def test_profiler_accounts_every_configuration_and_delivers_every_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tiny profile run measures each configuration, stores every event, prints the tables.

    The Stigmer pipeline and the process sender both deliver all events (two per
    task call plus the workflow's, for the warm-up and the measured loop) to a real
    reference receiver, and the profile names the library's modules per thread.
    """
    raw_path = tmp_path / "profile.json"
    # Enough calls for the child's CPU to span several clock ticks (/proc counts in ticks).
    calls = 2_000

    assert (
        profile_main(
            ["--calls", str(calls), "--reps", "1", "--variants", "plain", "--json", str(raw_path)]
        )
        == 0
    )

    out = capsys.readouterr().out
    assert "the calling thread's CPU by subtraction" in out
    raw = json.loads(raw_path.read_text())["plain"]
    assert set(raw["runs"]) == set(CONFIGS)
    expected = 2 * (calls + 1)  # the measured loop's tasks and its workflow, two events each
    for config in ("stigmer", "stigmer-gc-off", "process"):
        run = raw["runs"][config][0]
        assert run["stored"] >= expected, config
        assert run["cpu_ns"] > 0
    assert raw["runs"]["process"][0]["dropped"] == 0
    assert raw["runs"]["process"][0]["child_cpu_ns"] > 0
    profiles = raw["profile"]["profiles"]
    assert "MainThread" in profiles
    modules = {name for summary in profiles.values() for name in summary["categories"]}
    assert any(name.startswith("otel_stigmer.") for name in modules)
