"""A receiver shaped like the real Stigmer Service: ``report_progress`` only, fields 1-11.

It is built without the project's generated classes: the message types come from a
``FileDescriptorProto`` written here with only the upstream contract's fields, so any
field of ours (12 and up) is an unknown field to it, as it is to the real Service. A
generic gRPC handler serves ``report_progress`` with Bearer auth; ``report_progress_batch``
does not exist (UNIMPLEMENTED). Faults: a share of calls answered UNAVAILABLE, a share of
answers lost after storing, ``accepted = false`` for chosen events, or no answer at all.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "ai.stigmer.workflow.runner.v1.WorkflowRunnerCommandController"
_F = descriptor_pb2.FieldDescriptorProto


def _message_classes() -> tuple[type[Any], type[Any]]:
    """The event and ack message classes of the upstream contract (fields 1-11 only)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="upstream_progress.proto", package="ai.stigmer.workflow.runner.v1", syntax="proto3"
    )
    error = file.message_type.add(name="ErrorDetails")
    for number, name in enumerate(("code", "message", "stack_trace"), start=1):
        error.field.add(name=name, number=number, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    event = file.message_type.add(name="WorkflowProgressEvent")
    entry = event.nested_type.add(name="MetadataEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    strings = {1: "workflow_execution_id", 2: "event_type", 3: "workflow_name", 4: "task_name"}
    strings.update({5: "status", 6: "message"})
    for number, name in strings.items():
        event.field.add(name=name, number=number, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    event.field.add(name="timestamp_ms", number=7, type=_F.TYPE_INT64, label=_F.LABEL_OPTIONAL)
    event.field.add(
        name="metadata",
        number=8,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_REPEATED,
        type_name=".ai.stigmer.workflow.runner.v1.WorkflowProgressEvent.MetadataEntry",
    )
    event.field.add(
        name="error",
        number=9,
        type=_F.TYPE_MESSAGE,
        label=_F.LABEL_OPTIONAL,
        type_name=".ai.stigmer.workflow.runner.v1.ErrorDetails",
    )
    event.field.add(name="sequence_number", number=10, type=_F.TYPE_INT64, label=_F.LABEL_OPTIONAL)
    event.field.add(name="task_progress", number=11, type=_F.TYPE_INT32, label=_F.LABEL_OPTIONAL)
    ack = file.message_type.add(name="ProgressAckResponse")
    ack.field.add(name="accepted", number=1, type=_F.TYPE_BOOL, label=_F.LABEL_OPTIONAL)
    ack.field.add(name="message", number=2, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("ai.stigmer.workflow.runner.v1.WorkflowProgressEvent")
        ),
        message_factory.GetMessageClass(
            pool.FindMessageTypeByName("ai.stigmer.workflow.runner.v1.ProgressAckResponse")
        ),
    )


Event, Ack = _message_classes()


@dataclass(frozen=True)
class Arrival:
    """One call that reached the receiver's store: the raw request and what it said."""

    payload: bytes
    execution_id: str
    sequence_number: int
    event_type: str
    task_name: str
    task_progress: int
    received_ns: int


class UpstreamReceiver:
    """A ``report_progress``-only receiver on a free loopback port.

    Args:
        api_key: The accepted Bearer key.
        unavailable: Share of calls answered UNAVAILABLE before storing.
        lost: Share of calls whose answer is lost after storing (the client sees an error).
        refuse: Events answered ``accepted = false`` (not stored), with :data:`REFUSAL`.
        hang: Never answer (until the receiver stops).
        seed: Seed of the fault dice.
    """

    REFUSAL = "event type not allowed for this runner"

    def __init__(
        self,
        api_key: str,
        *,
        unavailable: float = 0.0,
        lost: float = 0.0,
        refuse: Callable[[Any], bool] | None = None,
        hang: bool = False,
        seed: int = 12,
    ) -> None:
        self.api_key = api_key
        self.arrivals: list[Arrival] = []
        self.refused: list[Arrival] = []
        self.calls = 0
        self._unavailable = unavailable
        self._lost = lost
        self._refuse = refuse
        self._hang = hang
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"report_progress": grpc.unary_unary_rpc_method_handler(self._report)}
        )
        self._server = grpc.server(ThreadPoolExecutor(max_workers=32), handlers=[handler])
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def env(self) -> dict[str, str]:
        """The ``STIGMER_SERVICE_*`` variables that reach this receiver."""
        return {
            "STIGMER_SERVICE_ENDPOINT": f"127.0.0.1:{self.port}",
            "STIGMER_SERVICE_API_KEY": self.api_key,
            "STIGMER_SERVICE_USE_TLS": "false",
        }

    def _report(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = dict(context.invocation_metadata())
        if metadata.get("authorization") != f"Bearer {self.api_key}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid API key")
        if self._hang:
            self._stopped.wait()
            context.abort(grpc.StatusCode.UNAVAILABLE, "stopping")
        event = Event.FromString(request)
        arrival = Arrival(
            request,
            event.workflow_execution_id,
            event.sequence_number,
            event.event_type,
            event.task_name,
            event.task_progress,
            time.time_ns(),
        )
        with self._lock:
            self.calls += 1
            fail, lose = self._rng.random() < self._unavailable, self._rng.random() < self._lost
            if fail:
                context.abort(grpc.StatusCode.UNAVAILABLE, "injected: try again")
            if self._refuse is not None and self._refuse(event):
                self.refused.append(arrival)
                return bytes(Ack(accepted=False, message=self.REFUSAL).SerializeToString())
            self.arrivals.append(arrival)
        if lose:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "injected: answer lost")
        return bytes(Ack(accepted=True).SerializeToString())

    def __enter__(self) -> UpstreamReceiver:
        self._server.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopped.set()
        self._server.stop(None).wait()
