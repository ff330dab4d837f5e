"""``STIGMER_SENDER=process``: the sender in a child process, against the reference receiver."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import StatusCode

from otel_stigmer import ConfigError, StigmerConfig, StigmerPipeline, configure
from otel_stigmer import conventions as conv
from otel_stigmer.process_sender import ProcessSender
from otel_stigmer.sinks import MemorySink
from otel_stigmer.testing import StigmerTestServer

CANARY = "canary-procsender-4e1d"  # must never show up in logs, argv or environment
ROOT = Path(__file__).resolve().parent.parent
PARENT_SCRIPT = str(Path(__file__).with_name("process_sender_parent.py"))
FORK_SCRIPT = str(Path(__file__).parent / "reliability" / "child_fork_midcall.py")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX pipes and fork")


@pytest.fixture
def server() -> Iterator[StigmerTestServer]:
    with StigmerTestServer(api_key=CANARY) as srv:
        yield srv


@pytest.fixture
def provider() -> Iterator[TracerProvider]:
    tp = TracerProvider()
    yield tp
    tp.shutdown()


def _config(server: StigmerTestServer, sender: str = "process", **env: str) -> StigmerConfig:
    return StigmerConfig.from_env({**server.env(), "STIGMER_SENDER": sender, **env})


def _sender(pipeline: StigmerPipeline) -> ProcessSender:
    sender = pipeline.processor.sender
    assert isinstance(sender, ProcessSender)
    return sender


def _until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Wait for ``predicate`` with a deadline (a condition, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        if predicate():
            return True
        pause.wait(0.02)
    return predicate()


def _alive(pid: int) -> bool:
    """Whether a thread of process ``pid`` still runs: its pipes close when the last one ends.

    The main thread alone shows a zombie while the others are still exiting.
    """
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError):
        return False
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    return True
        except (FileNotFoundError, ProcessLookupError):  # ended while read
            continue
    return False


class _CountingIds(IdGenerator):
    """Span and trace ids 1, 2, 3...: two runs of one workflow get the same ids."""

    def __init__(self) -> None:
        self._next = 0

    def generate_span_id(self) -> int:
        self._next += 1
        return self._next

    def generate_trace_id(self) -> int:
        return 0xABC


def _fixed_workflow(provider: TracerProvider, execution_id: str) -> None:
    """A workflow with explicit times: tasks, live progress, a retry, a failure, a marker."""
    tracer = provider.get_tracer("fixed")
    t = 1_700_000_000_000_000_000
    workflow = tracer.start_span(
        "ingest",
        attributes={conv.WORKFLOW_EXECUTION_ID: execution_id, conv.WORKFLOW_NAME: "ingest"},
        start_time=t,
    )
    with trace.use_span(workflow, end_on_exit=False):
        for index, name in enumerate(("fetch", "parse", "store")):
            start = t + (index + 1) * 1_000_000_000
            task = tracer.start_span(
                name, attributes={conv.TASK_NAME: name, "rows": [1, 2, 3]}, start_time=start
            )
            task.add_event(
                "progress",
                {conv.PROGRESS: 40, conv.MESSAGE: f"{name} half way"},
                timestamp=start + 1_000,
            )
            if name == "parse":
                task.add_event("task_retry", {conv.TASK_ATTEMPT: 1}, timestamp=start + 2_000)
                try:
                    raise ValueError("bad row 7")
                except ValueError as error:
                    task.record_exception(error, timestamp=start + 3_000)
                task.set_status(StatusCode.ERROR, "bad row 7")
            task.end(end_time=start + 500_000_000)
        workflow.add_event("progress", {conv.PROGRESS: 90}, timestamp=t + 5_000_000_000)
    workflow.end(end_time=t + 6_000_000_000)


def _stored(server: StigmerTestServer, execution_id: str) -> list[bytes]:
    return [event.SerializeToString(deterministic=True) for event in server.events(execution_id)]


def test_process_sender_delivers_the_same_events_as_the_in_process_sender() -> None:
    """Event for event (ids, sequence numbers, types, payloads), byte for byte, both senders."""
    stored: dict[str, list[bytes]] = {}
    for sender in ("thread", "process"):
        with StigmerTestServer(api_key=CANARY) as server:
            provider = TracerProvider(id_generator=_CountingIds())
            pipeline = configure(_config(server, sender), tracer_provider=provider)
            _fixed_workflow(provider, "wf-same")
            assert pipeline.force_flush(20_000)
            stored[sender] = _stored(server, "wf-same")
            pipeline.shutdown(5_000)
            provider.shutdown()
    assert len(stored["thread"]) == 13
    assert stored["process"] == stored["thread"]


def test_force_flush_returns_with_everything_stored_and_counted(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """After force_flush every event is at the receiver and stats() are the child's counters."""
    pipeline = configure(_config(server), tracer_provider=provider)
    tracer = provider.get_tracer("runner")
    for number in range(20):
        with (
            tracer.start_as_current_span(
                "wf", attributes={conv.WORKFLOW_EXECUTION_ID: f"flush-{number}"}
            ),
            tracer.start_as_current_span("t", attributes={conv.TASK_NAME: "t"}) as span,
        ):
            span.add_event("progress", {conv.PROGRESS: 10})
    assert pipeline.force_flush(20_000)
    assert sum(len(server.events(f"flush-{n}")) for n in range(20)) == 20 * 5
    stats = pipeline.stats()
    assert (stats.records, stats.sent, stats.queue_depth) == (100, 100, 0)
    assert sum(stats.dropped.values()) == 0


def test_shutdown_returns_within_its_timeout_against_a_hung_receiver(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """A receiver that never answers in time: shutdown(1 s) returns within its deadline.

    The child exits by its own deadline afterwards (it never outlives the parent's intent).
    """
    pipeline = configure(_config(server, STIGMER_SERVICE_TIMEOUT="30"), tracer_provider=provider)
    tracer = provider.get_tracer("runner")
    with tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "hung-0"}):
        pass
    assert pipeline.force_flush(20_000)  # the child is up and connected
    child = _sender(pipeline).child_pid
    assert child is not None
    server.set_latency(60.0)
    with tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "hung-1"}):
        pass
    began = time.monotonic()
    pipeline.shutdown(1_000)
    assert time.monotonic() - began < 1.0 + 4.0  # generous slack on a loaded machine
    assert _until(lambda: not _alive(child), timeout=15.0)
    server.set_latency(0)


def test_exit_hook_of_a_script_delivers_through_the_sender_process(
    server: StigmerTestServer,
) -> None:
    """A script that ends without flushing has all its events delivered by the exit hook."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **server.env(), "STIGMER_SENDER": "process"}
    done = subprocess.run(
        [sys.executable, PARENT_SCRIPT, "exit"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert CANARY not in done.stdout + done.stderr
    assert len(server.events("exit-run")) == 11


def test_api_key_is_not_in_the_childs_arguments_environment_or_logs(
    server: StigmerTestServer,
    provider: TracerProvider,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The key reaches the child over the pipe only: not in /proc/PID/cmdline nor environ.

    The application's own environment holds the key too (as in production); the child's
    does not inherit it. Logs of a flush that times out and of a killed child omit it.
    """
    caplog.set_level(logging.DEBUG, logger="otel_stigmer")
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STIGMER_SENDER", "process")
    pipeline = configure(tracer_provider=provider)
    tracer = provider.get_tracer("runner")
    with tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "key-0"}):
        pass
    assert pipeline.force_flush(20_000)
    child = _sender(pipeline).child_pid
    assert child is not None
    with open(f"/proc/{child}/cmdline", "rb") as cmdline, open(f"/proc/{child}/environ", "rb") as e:
        seen = cmdline.read() + e.read()
    assert b"otel_stigmer.sender_child" in seen
    assert CANARY.encode() not in seen
    server.set_latency(2.0)
    with tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "key-1"}):
        pass
    assert not pipeline.force_flush(200)
    os.kill(child, signal.SIGKILL)
    assert _until(lambda: "sender process failed" in caplog.text)
    server.set_latency(0)
    pipeline.shutdown(5_000)
    assert "flush timed out" in caplog.text
    out, err = capfd.readouterr()
    assert CANARY not in caplog.text + out + err


def test_a_killed_sender_process_is_restarted_and_logged_once(
    server: StigmerTestServer, provider: TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """Killing the child twice: one warning, no exception in business code, later events arrive."""
    caplog.set_level(logging.WARNING, logger="otel_stigmer")
    pipeline = configure(_config(server), tracer_provider=provider)
    sender = _sender(pipeline)
    tracer = provider.get_tracer("runner")

    def run(execution_id: str) -> None:
        with (
            tracer.start_as_current_span(
                "wf", attributes={conv.WORKFLOW_EXECUTION_ID: execution_id}
            ),
            tracer.start_as_current_span("t", attributes={conv.TASK_NAME: "t"}),
        ):
            pass

    run("before")
    assert pipeline.force_flush(20_000)
    for round_ in range(2):
        child = sender.child_pid
        assert child is not None
        os.kill(child, signal.SIGKILL)
        run(f"meanwhile-{round_}")  # never raises, whatever becomes of these events
        assert _until(lambda: sender.child_pid != child)  # noqa: B023 - its loss is noticed
        run(f"after-{round_}")  # a new child is started for these
        assert pipeline.force_flush(20_000)
        assert len(server.events(f"after-{round_}")) == 4
    warnings = [r for r in caplog.records if "sender process failed" in r.getMessage()]
    assert len(warnings) == 1
    assert len(server.events("before")) == 4


def test_the_child_delivers_what_it_had_after_its_parent_is_killed(
    server: StigmerTestServer,
) -> None:
    """SIGKILL the application: its sender process still delivers what it took in, and exits."""
    server.set_latency(0.3)  # each batch takes a while, so delivery is under way at the kill
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        **server.env(),
        "STIGMER_SENDER": "process",
        "STIGMER_MAX_BATCH_SIZE": "10",
    }
    with subprocess.Popen(
        [sys.executable, PARENT_SCRIPT, "killed"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as parent:
        assert parent.stdout is not None
        line = parent.stdout.readline().split()
        assert line[:1] == ["ready"], line
        assert line[2] == "110", line
        child = int(line[1])
        stored_before = len(server.events())
        parent.kill()
        parent.wait(10)
        assert stored_before < 110  # the kill lands while events are still being delivered
        server.wait_for_events(110, timeout=30)
        assert _until(lambda: not _alive(child), timeout=20.0)
    for number in range(10):
        assert len(server.events(f"killed-{number}")) == 11


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fork", "multiprocessing"])
def test_children_forked_after_configure_deliver_their_own_events(
    server: StigmerTestServer, mode: str
) -> None:
    """Forked children (os.fork, multiprocessing 'fork') start their own sender process.

    They never write into the parent's pipe, all exit, and each delivers its workflow.
    """
    children = 8
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        **server.env(),
        "STIGMER_SENDER": "process",
        "STIGMER_SERVICE_TIMEOUT": "10",
    }
    done = subprocess.run(
        [sys.executable, FORK_SCRIPT, str(children), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert CANARY not in done.stdout + done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {"exited": [0] * children, "hung": 0}
    completed = {
        e.workflow_execution_id for e in server.events() if e.event_type == "workflow_completed"
    }
    assert {f"child-{i}" for i in range(children)} <= completed
    parents = [e for e in server.events() if e.workflow_execution_id.startswith("parent-")]
    assert parents
    assert all(len(server.events(e.workflow_execution_id)) == 2 for e in parents)


def test_unknown_sender_fails_at_configure_time_naming_the_variable(
    server: StigmerTestServer,
) -> None:
    """STIGMER_SENDER=subprocess is refused at configure time with the variable and the fix."""
    with pytest.raises(ConfigError, match=r"STIGMER_SENDER='subprocess'.*Fix: use thread"):
        _config(server, "subprocess")
    assert _config(server, " Process ").sender == "process"
    assert _config(server, "thread").sender == "thread"
    assert StigmerConfig.from_env(server.env()).sender == "thread"


def test_process_sender_with_a_sink_object_fails_at_configure_time(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """A sink object cannot cross into the child: configure() says so and how to fix it."""
    with pytest.raises(ConfigError, match=r"STIGMER_SENDER=process with a custom sink.*Fix"):
        configure(_config(server), tracer_provider=provider, sink=MemorySink())


@pytest.mark.slow
def test_zero_code_path_runs_the_process_sender_without_instrumenting_the_child(
    server: StigmerTestServer,
) -> None:
    """opentelemetry-instrument with STIGMER_SENDER=process delivers the example's events.

    The child gets neither the auto-instrumentation nor a pipeline of its own (which would
    start a child of its own), so the run ends and each event arrives once.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "STIGMER_")) or k == "OTEL_STIGMER_RAISE_INTERNAL_ERRORS"
    }
    env.pop("PYTHONPATH", None)
    env.update(server.env(), OTEL_TRACES_EXPORTER="stigmer", STIGMER_SENDER="process")
    instrument = str(Path(sys.executable).with_name("opentelemetry-instrument"))
    done = subprocess.run(
        [instrument, sys.executable, str(ROOT / "examples" / "plain_otel.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert [(e.event_type, e.task_name) for e in server.events("wfexec-123")] == [
        ("workflow_started", ""),
        ("task_started", "fetch"),
        ("task_progress", "fetch"),
        ("task_completed", "fetch"),
        ("workflow_completed", ""),
    ]
    assert CANARY not in done.stdout + done.stderr


def test_pending_records_are_bounded_terminal_ones_kept_longest_while_no_child_starts(
    server: StigmerTestServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A child that cannot start: nothing raises, one warning, records wait within the bound.

    Past three quarters of the bound only terminal records are taken, up to the bound;
    everything beyond is counted as dropped (queue_full).
    """
    caplog.set_level(logging.WARNING, logger="otel_stigmer")
    sender = ProcessSender(_config(server, STIGMER_MAX_QUEUE_SIZE="8"))
    monkeypatch.setattr(sys, "executable", str(ROOT / "no-such-interpreter"))
    tracer = TracerProvider().get_tracer("bound")
    from otel_stigmer.records import START, Record, snapshot  # noqa: PLC0415

    with tracer.start_as_current_span(
        "w", attributes={conv.WORKFLOW_EXECUTION_ID: "bound"}
    ) as span:
        start = Record(START, snapshot(span), False)
    end = Record.ended(snapshot(span, "all"))
    for _ in range(10):
        sender.submit(start)
    for _ in range(5):
        sender.submit(end)
    assert _until(lambda: "could not be started" in caplog.text)
    stats = sender.stats()
    assert stats.records == 8  # 6 starts (3/4 of 8), then 2 ends up to the bound
    assert stats.dropped["queue_full"] == 4 + 3
    assert stats.queue_depth == 8
    assert len([r for r in caplog.records if "could not be started" in r.getMessage()]) == 1
    assert not sender.force_flush(100)
    monkeypatch.undo()
    assert sender.shutdown(20_000)  # a child starts now and delivers what waited
    assert sender.stats().sent == 8
    assert [e.event_type for e in server.events("bound")] == [  # one of each (same event ids)
        "workflow_started",
        "workflow_completed",
    ]


def test_sigterm_to_the_sender_process_delivers_what_it_has_before_it_exits(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """SIGTERM (a supervisor stopping the process group) ends the child as at end of input.

    What it had taken in is still delivered; later events go to a new child.
    """
    server.set_latency(0.5)  # two batches of five: a second at least
    config = _config(server, STIGMER_MAX_BATCH_SIZE="5")
    pipeline = configure(config, tracer_provider=provider)
    sender = _sender(pipeline)
    tracer = provider.get_tracer("runner")
    for number in range(5):
        with tracer.start_as_current_span(
            "wf", attributes={conv.WORKFLOW_EXECUTION_ID: f"term-{number}"}
        ):
            pass
    assert _until(lambda: sender.stats().enqueued >= 10)  # all in the child, not yet sent
    child = sender.child_pid
    assert child is not None
    os.kill(child, signal.SIGTERM)
    assert len(server.events()) < 10  # delivery was under way at the signal
    server.wait_for_events(10, timeout=30)
    assert _until(lambda: not _alive(child))
    assert _until(lambda: sender.child_pid != child)  # its end is noticed
    server.set_latency(0)
    with tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "term-after"}):
        pass
    assert pipeline.force_flush(20_000)
    assert len(server.events("term-after")) == 2
    assert all(len(server.events(f"term-{n}")) == 2 for n in range(5))


def test_records_written_after_the_child_died_wait_for_the_next_one(
    server: StigmerTestServer, provider: TracerProvider
) -> None:
    """A write that finds the child's pipe closed loses nothing: the records go to its successor."""
    pipeline = configure(_config(server), tracer_provider=provider)
    sender = _sender(pipeline)
    tracer = provider.get_tracer("runner")
    with tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: "alive"}):
        pass
    assert pipeline.force_flush(20_000)  # the child's counters are current
    child = sender.child_pid
    assert child is not None
    os.kill(child, signal.SIGKILL)
    assert _until(lambda: not _alive(child))
    for number in range(20):
        with tracer.start_as_current_span(
            "wf", attributes={conv.WORKFLOW_EXECUTION_ID: f"dead-{number}"}
        ):
            pass
    assert pipeline.force_flush(20_000)
    assert all(len(server.events(f"dead-{n}")) == 2 for n in range(20))
    assert pipeline.stats().dropped.get("sender_exited", 0) == 0
