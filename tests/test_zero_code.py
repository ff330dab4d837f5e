"""The zero-code path: ``opentelemetry-instrument`` with ``OTEL_TRACES_EXPORTER=stigmer``.

Each test runs a real child process under ``opentelemetry-instrument`` (with
``opentelemetry-distro`` and the requests, httpx and sqlite3 instrumentations installed) that
reports to a reference receiver on loopback.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_stigmer.testing import StigmerTestServer

ROOT = Path(__file__).resolve().parent.parent
INSTRUMENT = str(Path(sys.executable).with_name("opentelemetry-instrument"))
EXAMPLE = ROOT / "examples" / "plain_otel.py"
FULL_RUN = [
    ("workflow_started", ""),
    ("task_started", "fetch"),
    ("task_progress", "fetch"),
    ("task_completed", "fetch"),
    ("workflow_completed", ""),
]

pytestmark = pytest.mark.slow


def _env(server: StigmerTestServer | None, **extra: str) -> dict[str, str]:
    """This environment without any OTEL_* / STIGMER_* variable, plus the given ones."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "STIGMER_")) or k == "OTEL_STIGMER_RAISE_INTERNAL_ERRORS"
    }
    env.pop("PYTHONPATH", None)
    if server is not None:
        env.update(server.env())
    env.update(extra)
    return env


def _run(
    script: Path | str, env: dict[str, str], *, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [INSTRUMENT, sys.executable]
    argv += [str(script)] if isinstance(script, Path) else ["-c", script]
    return subprocess.run(
        argv, env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def _pairs(server: StigmerTestServer, execution_id: str) -> list[tuple[str, str]]:
    return [(e.event_type, e.task_name) for e in server.events(execution_id)]


@pytest.fixture
def server() -> Iterator[StigmerTestServer]:
    with StigmerTestServer(api_key="zero-code-key") as running:
        yield running


class _Headers(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def http_peer() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A local HTTP server recording the headers of every request it receives."""
    seen: list[dict[str, str]] = []
    handler = type("Recorder", (_Headers,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    "selection",
    [
        {},
        {"OTEL_PYTHON_DISTRO": "stigmer", "OTEL_PYTHON_CONFIGURATOR": "stigmer"},
        {"OTEL_PYTHON_DISTRO": "distro", "OTEL_PYTHON_CONFIGURATOR": "configurator"},
    ],
    ids=["whichever-found-first", "stigmer-distro", "opentelemetry-distro"],
)
def test_readme_plain_otel_example_reports_workflow_task_and_progress(
    server: StigmerTestServer, selection: dict[str, str]
) -> None:
    """The plain-OTel example, run with only STIGMER_* and OTEL_TRACES_EXPORTER, reports all.

    The task span carries no execution id of its own: the live processor inherits it from the
    parent, whichever distro and configurator OpenTelemetry selects.
    """
    result = _run(EXAMPLE, _env(server, OTEL_TRACES_EXPORTER="stigmer", **selection))
    assert result.returncode == 0, result.stderr
    assert "Failed to auto initialize" not in result.stderr
    assert _pairs(server, "wfexec-123") == FULL_RUN


LIVE_SCRIPT = """
import sqlite3, sys
import httpx, requests
from opentelemetry import trace

tracer = trace.get_tracer("runner")
url = sys.argv[1]
with tracer.start_as_current_span("ingest", attributes={"stigmer.workflow.execution_id": "live-1"}):
    with tracer.start_as_current_span("fetch", attributes={"stigmer.task.name": "fetch"}) as span:
        requests.get(url, timeout=10)
        httpx.get(url, timeout=10)
        sqlite3.connect(":memory:").execute("select 1")
        print("task open", flush=True)
        sys.stdin.readline()  # the test answers once the receiver has stored task_started
        span.add_event("progress", {"stigmer.progress": 50, "stigmer.message": "half way"})
"""


@pytest.mark.parametrize(
    "configurator", ["stigmer", "configurator"], ids=["stigmer", "opentelemetry-distro"]
)
def test_zero_code_reports_starts_live_while_the_task_runs(
    server: StigmerTestServer,
    http_peer: tuple[str, list[dict[str, str]]],
    tmp_path: Path,
    configurator: str,
) -> None:
    """workflow_started and task_started reach the receiver while the task is still running.

    The task also makes instrumented requests, httpx and sqlite3 calls, which keep working.
    """
    url, seen = http_peer
    script = tmp_path / "live.py"
    script.write_text(LIVE_SCRIPT)
    env = _env(server, OTEL_TRACES_EXPORTER="stigmer", OTEL_PYTHON_CONFIGURATOR=configurator)
    proc = subprocess.Popen(
        [INSTRUMENT, sys.executable, str(script), url],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline().strip() == "task open"
        started = server.wait_for_events(2, execution_id="live-1", timeout=20)
        assert [(e.event_type, e.task_name) for e in started] == FULL_RUN[:2]
        proc.stdin.write("go\n")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert _pairs(server, "live-1") == FULL_RUN
    assert len(seen) == 2
    assert all("traceparent" in headers for headers in seen), "instrumentation inactive"


def test_stigmer_distro_turns_metrics_and_logs_off_unless_set(server: StigmerTestServer) -> None:
    """With the stigmer distro, unset OTEL_METRICS_EXPORTER / OTEL_LOGS_EXPORTER mean none."""
    script = (
        "import os; print(os.environ['OTEL_TRACES_EXPORTER'], "
        "os.environ['OTEL_METRICS_EXPORTER'], os.environ['OTEL_LOGS_EXPORTER'])"
    )
    result = _run(script, _env(server, OTEL_PYTHON_DISTRO="stigmer"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["stigmer", "none", "none"]
    kept = _run(script, _env(server, OTEL_PYTHON_DISTRO="stigmer", OTEL_METRICS_EXPORTER="console"))
    assert kept.stdout.split() == ["stigmer", "console", "none"]


def test_missing_metrics_exporter_is_left_out_instead_of_failing_everything(
    server: StigmerTestServer,
) -> None:
    """A metrics exporter that is not installed: one error, and traces are still reported."""
    env = _env(
        server,
        OTEL_TRACES_EXPORTER="stigmer",
        OTEL_METRICS_EXPORTER="otlp_proto_http",  # only the gRPC OTLP exporter is installed
        OTEL_PYTHON_CONFIGURATOR="stigmer",
    )
    result = _run(EXAMPLE, env)
    assert result.returncode == 0, result.stderr
    assert "Failed to auto initialize" not in result.stderr
    assert result.stderr.count("OTEL_METRICS_EXPORTER=otlp_proto_http names an exporter") == 1
    assert _pairs(server, "wfexec-123") == FULL_RUN


@pytest.mark.parametrize(
    "configurator", ["stigmer", "configurator"], ids=["stigmer", "opentelemetry-distro"]
)
def test_stigmer_misconfigured_leaves_other_exporters_on(
    server: StigmerTestServer, configurator: str
) -> None:
    """A missing STIGMER_* variable: one clear error, Stigmer off, the console exporter on."""
    env = _env(
        server,
        OTEL_TRACES_EXPORTER="stigmer,console",
        OTEL_PYTHON_CONFIGURATOR=configurator,
    )
    del env["STIGMER_SERVICE_API_KEY"]
    result = _run(EXAMPLE, env)
    assert result.returncode == 0, result.stderr
    assert "Failed to auto initialize" not in result.stderr
    assert result.stderr.count("otel-stigmer: reporting is off") == 1
    assert "STIGMER_SERVICE_API_KEY is not set. Fix:" in result.stderr
    assert '"name": "fetch"' in result.stdout
    assert '"name": "ingest"' in result.stdout
    assert server.events() == []


COMBINED_SCRIPT = """
import otel_stigmer
from opentelemetry import trace

pipeline = otel_stigmer.configure()
tracer = trace.get_tracer("runner")
with tracer.start_as_current_span("ingest", attributes={"stigmer.workflow.execution_id": "both"}):
    with tracer.start_as_current_span("fetch", attributes={"stigmer.task.name": "fetch"}) as span:
        span.add_event("progress", {"stigmer.progress": 50})
assert pipeline.force_flush(10_000)
"""


@pytest.mark.parametrize(
    "configurator", ["stigmer", "configurator"], ids=["stigmer", "opentelemetry-distro"]
)
def test_configure_in_code_and_entry_point_send_each_event_once(configurator: str) -> None:
    """configure() in code plus OTEL_TRACES_EXPORTER=stigmer: one pipeline, one warning.

    The receiver runs without the batch RPC, so every event costs exactly one call: a second
    pipeline would double the calls.
    """
    with StigmerTestServer(api_key="zero-code-key", batch_enabled=False) as receiver:
        env = _env(receiver, OTEL_TRACES_EXPORTER="stigmer", OTEL_PYTHON_CONFIGURATOR=configurator)
        result = _run(COMBINED_SCRIPT, env)
        assert result.returncode == 0, result.stderr
        stored = _pairs(receiver, "both")
        assert len(stored) == 5
        assert receiver.faults.calls.get("report_progress") == 5
        assert result.stderr.count("set up twice for the same tracer provider") == 1


BAGGAGE_SCRIPT = """
import sys
import requests
from otel_stigmer import task, workflow
from otel_stigmer.propagation import inject_headers

@task
def call(url: str) -> None:
    requests.get(url, timeout=10)
    requests.get(url, headers=inject_headers(), timeout=10)

@workflow(name="billing")
def run(url: str, execution_id: str) -> None:
    call(url)

run(sys.argv[1], execution_id="secret-exec")
"""


@pytest.mark.parametrize("policy", ["", "all"])
def test_identity_baggage_reaches_http_hosts_only_as_the_policy_says(
    server: StigmerTestServer,
    http_peer: tuple[str, list[dict[str, str]]],
    tmp_path: Path,
    policy: str,
) -> None:
    """By default an instrumented HTTP call carries no Stigmer identity; the helpers do.

    ``STIGMER_IDENTITY_BAGGAGE=all`` restores OpenTelemetry's behaviour: every call carries it.
    """
    url, seen = http_peer
    script = tmp_path / "baggage.py"
    script.write_text(BAGGAGE_SCRIPT)
    extra = {"STIGMER_IDENTITY_BAGGAGE": policy} if policy else {}
    env = _env(server, OTEL_TRACES_EXPORTER="stigmer", **extra)
    result = subprocess.run(
        [INSTRUMENT, sys.executable, str(script), url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    plain, helper = seen
    assert "traceparent" in plain
    assert "secret-exec" in helper["baggage"]
    assert "billing" in helper["baggage"]
    if policy == "all":
        assert "secret-exec" in plain["baggage"]
    else:
        assert "secret-exec" not in plain.get("baggage", "")
    assert [e.event_type for e in server.events("secret-exec")][-1] == "workflow_completed"
