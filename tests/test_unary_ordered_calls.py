"""Ordered unary calls started from completion callbacks: suppressed, ordered, all answered."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from opentelemetry import context as otel_context

from otel_stigmer import StigmerConfig
from otel_stigmer.client import CallbackClient
from otel_stigmer.events import ProgressAckResponse, WorkflowProgressEvent
from otel_stigmer.exceptions import CallbackError
from otel_stigmer.server import ReceiverServer

KEY = "ordered-calls-key-93c4"


if TYPE_CHECKING:
    _Interceptor = grpc.UnaryUnaryClientInterceptor[Any, Any]
else:  # grpc's classes are generic only in its type stubs
    _Interceptor = grpc.UnaryUnaryClientInterceptor


class _Watch(_Interceptor):
    """What a gRPC client instrumentation sees: each call's start context and thread."""

    def __init__(self) -> None:
        self.starts: list[tuple[bool, str]] = []
        self._lock = threading.Lock()

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        suppressed = bool(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))
        with self._lock:
            self.starts.append((suppressed, threading.current_thread().name))
        return continuation(details, request)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[ReceiverServer]:
    with ReceiverServer(
        api_keys=[KEY], db_path=tmp_path / "events.db", batch_enabled=False
    ) as server:
        yield server


def _events(executions: int, per_execution: int) -> list[WorkflowProgressEvent]:
    return [
        WorkflowProgressEvent(
            workflow_execution_id=f"exec-{n}",
            event_type="task_progress",
            workflow_name="wf",
            task_name="t",
            status="running",
            sequence_number=seq,
            event_id=f"exec-{n}-{seq}",
        )
        for seq in range(1, per_execution + 1)
        for n in range(executions)
    ]


def test_calls_started_from_callbacks_keep_instrumentation_suppressed(
    receiver: ReceiverServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every call runs with instrumentation suppressed, also those started off the caller.

    The channel factory is wrapped the way a gRPC client instrumentation wraps it; the
    later calls of each execution start on gRPC's callback thread, not the caller's.
    """
    watch = _Watch()
    real_channel = grpc.insecure_channel

    def watched_channel(*args: Any, **kwargs: Any) -> grpc.Channel:
        return grpc.intercept_channel(real_channel(*args, **kwargs), watch)

    monkeypatch.setattr(grpc, "insecure_channel", watched_channel)
    config = StigmerConfig(endpoint=receiver.endpoint, api_key=KEY, use_tls=False)
    events = _events(executions=3, per_execution=20)
    with CallbackClient(config) as client:
        results = client.report_progress_ordered(events, max_in_flight=2)
    assert all(isinstance(r, ProgressAckResponse) and r.accepted for r in results)
    assert len(watch.starts) == len(events)
    assert all(suppressed for suppressed, _ in watch.starts)
    caller = threading.current_thread().name
    assert any(thread != caller for _, thread in watch.starts)


def test_ordered_calls_store_each_execution_in_order_with_few_slots(
    receiver: ReceiverServer,
) -> None:
    """With fewer slots than executions every execution still arrives in send order."""
    config = StigmerConfig(endpoint=receiver.endpoint, api_key=KEY, use_tls=False)
    events = _events(executions=7, per_execution=30)
    with CallbackClient(config) as client:
        results = client.report_progress_ordered(events, max_in_flight=3)
    assert all(isinstance(r, ProgressAckResponse) and r.accepted for r in results)
    for n in range(7):
        stored = [s.event.sequence_number for s in receiver.store.page(f"exec-{n}")]
        assert stored == list(range(1, 31))


def test_a_failed_call_stops_its_execution_and_the_others_go_on(
    receiver: ReceiverServer,
) -> None:
    """A refused call leaves the rest of its execution unsent (None); others are delivered."""
    config = StigmerConfig(endpoint=receiver.endpoint, api_key=KEY, use_tls=False)
    events = _events(executions=2, per_execution=5)
    events[2].event_type = ""  # exec-0, seq 2: refused as invalid
    with CallbackClient(config) as client:
        results = client.report_progress_ordered(events, max_in_flight=4)
    by_event = {e.event_id: r for e, r in zip(events, results, strict=True)}
    assert isinstance(by_event["exec-0-1"], ProgressAckResponse)
    refused = by_event["exec-0-2"]
    assert isinstance(refused, CallbackError)
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [by_event[f"exec-0-{seq}"] for seq in (3, 4, 5)] == [None, None, None]
    assert all(isinstance(by_event[f"exec-1-{seq}"], ProgressAckResponse) for seq in range(1, 6))
    assert [s.event.sequence_number for s in receiver.store.page("exec-0")] == [1]
