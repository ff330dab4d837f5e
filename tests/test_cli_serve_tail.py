"""`otel-stigmer serve` with its HTTP side and `otel-stigmer tail`, each in a subprocess."""

from __future__ import annotations

import re
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from line_process import LineProcess, clean_env

from otel_stigmer import CallbackClient, StigmerConfig
from otel_stigmer.events import (
    ErrorDetails,
    WorkflowProgressEvent,
    new_progress_event,
    new_task_progress_event,
)

CANARY = "canary-tail-key-0c3d9e"
PAGE = re.compile(r"live page on (http://\S+)")
GRPC = re.compile(r"receiver listening on (\S+) ")


def _cli(args: list[str], env: dict[str, str], *, merge: bool = True) -> LineProcess:
    """An ``otel-stigmer`` subprocess whose output lines are read as they come."""
    return LineProcess([sys.executable, "-m", "otel_stigmer.cli", *args], env, merge=merge)


_env = clean_env


@pytest.fixture
def procs() -> Iterator[list[LineProcess]]:
    started: list[LineProcess] = []
    yield started
    for proc in started:
        proc.close()


def _serve(db: Path, procs: list[LineProcess]) -> tuple[LineProcess, str, str]:
    serve = _cli(
        ["serve", "--port", "0", "--http-port", "0", "--db", str(db)],
        _env(STIGMER_SERVER_API_KEYS=CANARY),
    )
    procs.append(serve)
    url = serve.wait_for(PAGE).group(1)
    endpoint = serve.wait_for(GRPC).group(1)
    return serve, url, endpoint


def _run_events(execution_id: str) -> list[WorkflowProgressEvent]:
    failed = new_task_progress_event(
        execution_id, "task_failed", "nightly", "<b>load</b>", "failed", "no disk", 4
    )
    failed.error.CopyFrom(ErrorDetails(code="DISK_FULL", message="no space left"))
    return [
        new_task_progress_event(
            execution_id, "task_started", "nightly", "extract", "running", "", 2
        ),
        new_task_progress_event(
            execution_id, "task_completed", "nightly", "extract", "completed", "", 3
        ),
        failed,
        new_progress_event(execution_id, "workflow_completed", "nightly", "completed", "done", 5),
    ]


def test_tail_follows_an_execution_live_and_survives_a_restart(
    tmp_path: Path, procs: list[LineProcess]
) -> None:
    """tail shows events as they arrive and exits 0 at the end; after a restart they are kept."""
    db = tmp_path / "events.db"
    serve, url, endpoint = _serve(db, procs)
    config = StigmerConfig(endpoint, api_key=CANARY, use_tls=False)
    with CallbackClient(config) as client:
        tail = _cli(
            ["tail", "ex-tail", "--url", url, "--no-color"], _env(STIGMER_SERVICE_API_KEY=CANARY)
        )
        procs.append(tail)
        client.report_progress(
            new_progress_event("ex-tail", "workflow_started", "nightly", "running", "go", 1)
        )
        tail.wait_for(re.compile(r"> workflow nightly\s+started"))
        # The rest is sent only once tail has shown the start: it must follow live.
        for event in _run_events("ex-tail"):
            client.report_progress(event)
    assert tail.finish() == 0, tail.text()
    out = tail.text()
    assert re.search(r"\+ extract\s+completed", out)
    assert re.search(r"x <b>load</b>\s+failed .*DISK_FULL: no space left", out)
    assert "Summary: workflow nightly completed" in out
    assert CANARY not in out

    serve.proc.terminate()
    assert serve.finish() == 0
    _, url, _ = _serve(db, procs)
    again = _cli(
        ["tail", "--no-follow", "--url", url, "--no-color"], _env(STIGMER_SERVICE_API_KEY=CANARY)
    )
    procs.append(again)
    assert again.finish() == 0, again.text()
    assert re.search(
        r"Summary: workflow nightly completed .*\(5 events, execution ex-tail\)", again.text()
    )
    assert CANARY not in serve.text()


def test_tail_with_a_wrong_key_says_authentication_failed(
    tmp_path: Path, procs: list[LineProcess]
) -> None:
    """A key the receiver does not accept makes tail exit 1 naming the key variable."""
    _, url, _ = _serve(tmp_path / "events.db", procs)
    tail = _cli(["tail", "--url", url], _env(STIGMER_SERVICE_API_KEY="wrong-key"))
    procs.append(tail)
    assert tail.finish() == 1
    assert "authentication failed: check STIGMER_SERVICE_API_KEY" in tail.text()


def test_tail_without_a_key_fails_fast(procs: list[LineProcess]) -> None:
    """Without STIGMER_SERVICE_API_KEY tail exits 2 and says which variable to set."""
    tail = _cli(["tail"], _env())
    procs.append(tail)
    assert tail.finish() == 2
    assert "STIGMER_SERVICE_API_KEY is not set" in tail.text()


def test_tail_reconnects_after_a_receiver_restart_without_repeating_events(
    tmp_path: Path, procs: list[LineProcess]
) -> None:
    """When the receiver restarts, tail reconnects and resumes after the last event it showed."""
    db = tmp_path / "events.db"
    serve, url, endpoint = _serve(db, procs)
    tail = _cli(["tail", "--url", url, "--no-color"], _env(STIGMER_SERVICE_API_KEY=CANARY))
    procs.append(tail)
    config = StigmerConfig(endpoint, api_key=CANARY, use_tls=False)
    with CallbackClient(config) as client:
        client.report_progress(
            new_progress_event("ex-a", "workflow_started", "first", "running", "go", 1)
        )
    tail.wait_for(re.compile(r"> workflow first\s+started"))
    serve.proc.terminate()
    assert serve.finish() == 0
    tail.wait_for(re.compile(r"lost the receiver .*reconnecting"))
    port = url.rstrip("/").rsplit(":", 1)[1]
    again = _cli(
        ["serve", "--port", "0", "--http-port", port, "--db", str(db)],
        _env(STIGMER_SERVER_API_KEYS=CANARY),
    )
    procs.append(again)
    endpoint = again.wait_for(GRPC).group(1)
    with CallbackClient(StigmerConfig(endpoint, api_key=CANARY, use_tls=False)) as client:
        client.report_progress(
            new_progress_event("ex-b", "workflow_started", "second", "running", "go", 1)
        )
    tail.wait_for(re.compile(r"> workflow second\s+started"))
    tail.proc.send_signal(signal.SIGINT)
    assert tail.finish() == 0
    assert tail.text().count("workflow first") == 1


def test_tail_says_it_waits_for_an_unknown_execution_then_follows_it(
    tmp_path: Path, procs: list[LineProcess]
) -> None:
    """Following an execution nothing is stored of yet says so, then shows it when it comes."""
    _, url, endpoint = _serve(tmp_path / "events.db", procs)
    tail = _cli(
        ["tail", "ex-later", "--url", url, "--no-color"], _env(STIGMER_SERVICE_API_KEY=CANARY)
    )
    procs.append(tail)
    tail.wait_for(re.compile(r"waiting for execution ex-later\u2026"))
    with CallbackClient(StigmerConfig(endpoint, api_key=CANARY, use_tls=False)) as client:
        client.report_progress(
            new_progress_event("ex-later", "workflow_started", "nightly", "running", "go", 1)
        )
        for event in _run_events("ex-later"):
            client.report_progress(event)
    assert tail.finish() == 0, tail.text()
    assert "Summary: workflow nightly completed" in tail.text()


def test_tail_says_cannot_reach_before_the_first_connection(procs: list[LineProcess]) -> None:
    """A receiver that was never reached is reported as unreachable, not as lost."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    tail = _cli(["tail", "--url", url, "--no-color"], _env(STIGMER_SERVICE_API_KEY=CANARY))
    procs.append(tail)
    tail.wait_for(re.compile(rf"cannot reach {re.escape(url)} .*retrying"))
    tail.proc.send_signal(signal.SIGINT)
    assert tail.finish() == 0
    assert "lost the receiver" not in tail.text()


def test_tail_no_follow_reports_an_unknown_execution(
    tmp_path: Path, procs: list[LineProcess]
) -> None:
    """``--no-follow`` of an execution the receiver has no events of exits 1 saying so."""
    _, url, _ = _serve(tmp_path / "events.db", procs)
    tail = _cli(
        ["tail", "nope", "--no-follow", "--url", url, "--no-color"],
        _env(STIGMER_SERVICE_API_KEY=CANARY),
    )
    procs.append(tail)
    assert tail.finish() == 1
    assert f"no events of execution nope at {url}" in tail.text()
