"""A receiver slow per event: batches shrink until they fit its deadline, never a livelock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerConfig, configure
from otel_stigmer.events import (
    ProgressAckResponse,
    ReportProgressBatchRequest,
    ReportProgressBatchResponse,
    WorkflowProgressEvent,
)

from .support import CANARY, FAST, run_workflows, wait_until

SERVICE = "ai.stigmer.workflow.runner.v1.WorkflowRunnerCommandController"
#: Time the receiver spends per event of a batch: 500 events take 2 s, over the 0.5 s deadline.
PER_EVENT_S = 0.004


class SlowPerEventReceiver:
    """Stores each event id once, taking :data:`PER_EVENT_S` per event of a call."""

    def __init__(self) -> None:
        self.stored: dict[str, WorkflowProgressEvent] = {}
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()
        handlers = {
            "report_progress_batch": grpc.unary_unary_rpc_method_handler(
                self._batch,
                request_deserializer=ReportProgressBatchRequest.FromString,
                response_serializer=ReportProgressBatchResponse.SerializeToString,
            ),
            "report_progress": grpc.unary_unary_rpc_method_handler(
                self._one,
                request_deserializer=WorkflowProgressEvent.FromString,
                response_serializer=ProgressAckResponse.SerializeToString,
            ),
        }
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=8),
            handlers=[grpc.method_handlers_generic_handler(SERVICE, handlers)],
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    def _store(self, events: list[WorkflowProgressEvent]) -> int:
        time.sleep(PER_EVENT_S * len(events))  # the receiver's own work per event
        with self._lock:
            self.batch_sizes.append(len(events))
            new = [e for e in events if e.event_id not in self.stored]
            self.stored.update((e.event_id, e) for e in new)
            return len(new)

    def _batch(
        self, request: ReportProgressBatchRequest, context: grpc.ServicerContext
    ) -> ReportProgressBatchResponse:
        accepted = self._store(list(request.events))
        return ReportProgressBatchResponse(accepted=accepted)

    def _one(
        self, event: WorkflowProgressEvent, context: grpc.ServicerContext
    ) -> ProgressAckResponse:
        self._store([event])
        return ProgressAckResponse(accepted=True)

    def __enter__(self) -> SlowPerEventReceiver:
        self._server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.stop(None).wait()


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    tp = TracerProvider()
    yield tp
    tp.shutdown()


@pytest.mark.slow
def test_slow_receiver_gets_smaller_batches_and_everything(provider: TracerProvider) -> None:
    """Row 7: a batch that cannot finish within the deadline is halved until one does."""
    with SlowPerEventReceiver() as receiver:
        config = StigmerConfig(
            f"127.0.0.1:{receiver.port}", CANARY, use_tls=False, timeout=0.5, max_batch_size=500
        )
        pipeline = configure(config, tracer_provider=provider, retry_policy=FAST)
        expected = run_workflows(provider.get_tracer("slow"), "slow", workflows=40, tasks=12)
        total = sum(len(rows) for rows in expected.values())
        assert wait_until(lambda: len(receiver.stored) >= total, timeout=60), (
            f"{len(receiver.stored)} of {total} stored; batch sizes {receiver.batch_sizes[-5:]}"
        )
        assert pipeline.force_flush(10_000)
        stats = pipeline.stats()
        assert stats.failed_calls >= 1  # the first, full batches did miss the deadline
        assert min(receiver.batch_sizes) * PER_EVENT_S < config.timeout
        pipeline.shutdown(1_000)
