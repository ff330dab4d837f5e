"""Secret hygiene across the failure modes: the key is in no exception text and no repr.

Logs are checked for every test of this folder by ``conftest.canary_never_logged``; spool
files, the receiver's database and child-process output by the scenarios themselves.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Iterator, Sequence

import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerConfig, configure
from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.sinks import GrpcSink, Refused
from otel_stigmer.testing import StigmerTestServer

from .hostile_receiver import GarbageReceiver, RawSocketReceiver
from .support import CANARY, CANARY_FRAGMENT, FAST, free_port, run_workflows, wait_until

WRONG = "wrong-canary-5a0c77e1d2b9-secret"


class RecordingSink:
    """Wraps the gRPC sink and keeps every exception it raised."""

    def __init__(self, inner: GrpcSink) -> None:
        self.inner = inner
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def send(self, events: Sequence[WorkflowProgressEvent]) -> list[Refused]:
        """Forward to the gRPC sink, keeping what it raises."""
        try:
            return self.inner.send(events)
        except Exception as error:
            with self._lock:
                self.errors.append(error)
            raise

    def close(self) -> None:
        """Close the gRPC sink."""
        self.inner.close()


def _texts(value: object) -> list[str]:
    texts = [str(value), repr(value)]
    if isinstance(value, BaseException):
        texts.append("".join(traceback.format_exception(value)))
        texts.append(repr(vars(value)))
    return texts


def _assert_clean(*values: object) -> None:
    for value in values:
        for text in _texts(value):
            assert CANARY_FRAGMENT not in text
            assert WRONG[:16] not in text


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    tp = TracerProvider()
    yield tp
    tp.shutdown()


def _run(provider: TracerProvider, endpoint: str, key: str) -> RecordingSink:
    env = {
        "STIGMER_SERVICE_ENDPOINT": endpoint,
        "STIGMER_SERVICE_API_KEY": key,
        "STIGMER_SERVICE_USE_TLS": "false",
        "STIGMER_SERVICE_TIMEOUT": "1",
    }
    config = StigmerConfig.from_env(env)
    sink = RecordingSink(GrpcSink(config))
    pipeline = configure(config, tracer_provider=provider, sink=sink, retry_policy=FAST)
    run_workflows(provider.get_tracer("t"), "hygiene", workflows=1, tasks=2)
    assert wait_until(lambda: len(sink.errors) >= 1, timeout=30)
    stats = pipeline.stats()
    _assert_clean(
        config, sink.inner, pipeline, pipeline.processor, pipeline.processor.sender, stats
    )
    _assert_clean(stats.as_dict())
    pipeline.shutdown(300)
    _assert_clean(*sink.errors)
    return sink


def test_wrong_key_errors_hide_both_keys(provider: TracerProvider) -> None:
    """UNAUTHENTICATED: neither the sent key nor the receiver's key is in any error text."""
    with StigmerTestServer(api_key=CANARY) as server:
        sink = _run(provider, server.endpoint, WRONG)
    assert sink.errors[0].__class__.__name__ == "CallbackError"


def test_unreachable_receiver_errors_hide_the_key(provider: TracerProvider) -> None:
    """UNAVAILABLE (nothing listening): error texts and reprs hold no key."""
    _run(provider, f"127.0.0.1:{free_port()}", CANARY)


def test_garbage_answers_errors_hide_the_key(provider: TracerProvider) -> None:
    """Undecodable answers: error texts and reprs hold no key."""
    with GarbageReceiver() as receiver:
        _run(provider, receiver.endpoint, CANARY)


def test_silent_receiver_errors_hide_the_key(provider: TracerProvider) -> None:
    """DEADLINE_EXCEEDED: error texts and reprs hold no key."""
    with RawSocketReceiver("silent") as receiver:
        _run(provider, receiver.endpoint, CANARY)
