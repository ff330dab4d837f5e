"""Fault injection against the reference receiver: every event arrives once, in order.

Each scenario runs real spans through ``configure()`` into the reference receiver on
loopback and ends with the same checks: every expected event is stored exactly once
(after the receiver's de-duplication by event id), each execution's events are in
sequence order, nothing was dropped, and no exception reached the code that made the
spans (the suite re-raises internal errors, so one would fail the test).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerConfig, StigmerPipeline, configure
from otel_stigmer.server.faults import Fault, FaultInjector
from otel_stigmer.server.store import EventStore
from otel_stigmer.testing import StigmerTestServer

from .support import (
    CANARY,
    FAST,
    ROOT,
    Expected,
    assert_canary_absent_from_files,
    assert_exactly_once_in_order,
    free_port,
    run_workflows,
    wait_until,
)


class RandomFaults(FaultInjector):
    """Fails a seeded random share of calls with UNAVAILABLE, on top of the usual faults."""

    def __init__(self, ratio: float, seed: int, *, batch_enabled: bool = True) -> None:
        super().__init__(batch_enabled=batch_enabled)
        self._ratio = ratio
        self._rng = random.Random(seed)
        self.injected = 0

    def next_fault(self) -> Fault | None:
        """Answer the configured faults first, then fail ``ratio`` of the calls."""
        fault = super().next_fault()
        if fault is None and self._rng.random() < self._ratio:
            self.injected += 1
            return Fault(grpc.StatusCode.UNAVAILABLE, "injected random fault")
        return fault


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    tp = TracerProvider()
    yield tp
    tp.shutdown()


@pytest.fixture
def server() -> Iterator[StigmerTestServer]:
    with StigmerTestServer(api_key=CANARY) as srv:
        yield srv


def _pipeline(endpoint_env: dict[str, str], provider: TracerProvider) -> StigmerPipeline:
    config = StigmerConfig.from_env({**endpoint_env, "STIGMER_SERVICE_TIMEOUT": "5"})
    return configure(config, tracer_provider=provider, retry_policy=FAST)


def _finish(pipeline: StigmerPipeline, server: StigmerTestServer, expected: Expected) -> None:
    assert pipeline.force_flush(60_000), pipeline.stats().as_dict()
    assert_exactly_once_in_order(server.events(), expected)
    stats = pipeline.stats()
    assert not stats.dropped, stats.as_dict()
    assert stats.queue_depth == 0
    assert_canary_absent_from_files(server.server.store.path)


@pytest.mark.parametrize("batch_enabled", [True, False], ids=["batch", "unary"])
def test_thirty_percent_of_calls_unavailable(provider: TracerProvider, batch_enabled: bool) -> None:
    """(a) With a seeded 30% of calls failing UNAVAILABLE, every event arrives once, in order."""
    srv = StigmerTestServer(api_key=CANARY, batch_enabled=batch_enabled)
    faults = RandomFaults(0.3, seed=7, batch_enabled=batch_enabled)
    srv.server.faults = faults
    with srv:
        pipeline = _pipeline(srv.env(), provider)
        tracer = provider.get_tracer("runner")
        expected: Expected = {}
        for round_ in range(4):
            # Several rounds, so failures hit calls made with a half-full outbox too.
            expected |= run_workflows(tracer, f"flaky{round_}", workflows=5, tasks=6)
            wait_until(lambda: pipeline.stats().queue_depth == 0, timeout=0.2)
        _finish(pipeline, srv, expected)
        assert faults.injected >= 1
        assert pipeline.stats().failed_calls >= 1


def test_five_second_outage_mid_run(server: StigmerTestServer, provider: TracerProvider) -> None:
    """(b) A 5 s full outage in the middle of a run loses and duplicates nothing."""
    pipeline = _pipeline(server.env(), provider)
    tracer = provider.get_tracer("runner")
    expected = run_workflows(tracer, "before", workflows=3, tasks=5)
    assert pipeline.force_flush(30_000)
    server.stop()
    outage_ends = time.monotonic() + 5.0
    expected |= run_workflows(tracer, "during", workflows=3, tasks=5)
    assert wait_until(lambda: pipeline.stats().failed_calls >= 2, timeout=30)
    assert pipeline.stats().queue_depth > 0  # kept, not dropped
    # The outage lasts its full five seconds; this wait is the scenario, not a sync point.
    wait_until(lambda: time.monotonic() >= outage_ends, timeout=10)
    server.restart()
    expected |= run_workflows(tracer, "after", workflows=3, tasks=5)
    _finish(pipeline, server, expected)


def test_slow_receiver(server: StigmerTestServer, provider: TracerProvider) -> None:
    """(c) A receiver taking 500 ms per call slows delivery, never the spans themselves."""
    server.set_latency(0.5)
    pipeline = _pipeline(server.env(), provider)
    tracer = provider.get_tracer("runner")
    started = time.monotonic()
    expected = run_workflows(tracer, "slow", workflows=6, tasks=8)
    # 300 events at 500 ms per call would take minutes if the spans waited for the network.
    assert time.monotonic() - started < 10
    _finish(pipeline, server, expected)
    calls = sum(server.faults.calls.values())
    assert calls >= 1


def _start_receiver(port: int, db: Path) -> subprocess.Popen[bytes]:
    log = db.with_suffix(".log")
    with log.open("ab") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "otel_stigmer.server", "--port", str(port), "--db", str(db)],
            # The key goes through the environment: arguments are visible to other users.
            env={**os.environ, "STIGMER_SERVER_API_KEYS": CANARY, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            process.kill()
            process.wait()
            pytest.fail(f"receiver did not start: {log.read_text(errors='replace')}")
    return process


def test_receiver_process_killed_and_restarted(provider: TracerProvider, tmp_path: Path) -> None:
    """(d) A receiver killed with SIGKILL and restarted on the same port and database."""
    port = free_port()
    db = tmp_path / "events.db"
    env = {
        "STIGMER_SERVICE_ENDPOINT": f"127.0.0.1:{port}",
        "STIGMER_SERVICE_API_KEY": CANARY,
        "STIGMER_SERVICE_USE_TLS": "false",
    }
    receiver = _start_receiver(port, db)
    try:
        pipeline = _pipeline(env, provider)
        tracer = provider.get_tracer("runner")
        expected = run_workflows(tracer, "first", workflows=3, tasks=5)
        assert pipeline.force_flush(30_000)
        expected |= run_workflows(tracer, "racing", workflows=2, tasks=5)
        receiver.send_signal(signal.SIGKILL)
        receiver.wait(timeout=30)
        expected |= run_workflows(tracer, "down", workflows=2, tasks=5)
        assert wait_until(lambda: pipeline.stats().failed_calls >= 1, timeout=30)
        receiver = _start_receiver(port, db)
        expected |= run_workflows(tracer, "back", workflows=2, tasks=5)
        assert pipeline.force_flush(60_000), pipeline.stats().as_dict()
    finally:
        receiver.terminate()
        receiver.wait(timeout=30)
    store = EventStore(db)
    try:
        assert_exactly_once_in_order(store.events(), expected)
    finally:
        store.close()
    assert not pipeline.stats().dropped
    assert_canary_absent_from_files(db, db.with_suffix(".log"))


def test_resource_exhausted_honours_server_retry_delay(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """(e) RESOURCE_EXHAUSTED with a RetryInfo delay: the sender waits at least that long."""
    server.fail_next(3, grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=0.4)
    pipeline = _pipeline(server.env(), provider)
    started = time.monotonic()
    expected = run_workflows(provider.get_tracer("runner"), "quota", workflows=2, tasks=3)
    _finish(pipeline, server, expected)
    # Three refusals, each followed by >= 0.4 s: the fast policy alone would wait ~0.35 s.
    assert time.monotonic() - started >= 3 * 0.4 - 0.05
    assert server.faults.pending == 0
    assert pipeline.stats().failed_calls == 3


@pytest.mark.slow
def test_overload_burst_of_100k_events(server: StigmerTestServer, provider: TracerProvider) -> None:
    """(f) A burst of 100 000 events from real spans is delivered in full, nothing dropped."""
    pipeline = _pipeline(server.env(), provider)
    expected = run_workflows(
        provider.get_tracer("runner"), "burst", workflows=1000, tasks=49, progress=False
    )
    assert sum(len(rows) for rows in expected.values()) == 100_000
    assert pipeline.force_flush(240_000), pipeline.stats().as_dict()
    assert server.server.store.count() == 100_000
    _finish(pipeline, server, expected)
