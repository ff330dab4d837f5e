"""gRPC's own tracing never prints the key: refused while a key is set, in every process.

``GRPC_TRACE`` makes gRPC core print the ``authorization`` header of each call. The runner
(``configure()``), ``otel-stigmer doctor`` and ``otel-stigmer serve`` refuse it with a
message naming the variable and the fix; ``GRPC_VERBOSITY=debug`` alone prints no header.
Each case runs in a child process and reads its stderr, where gRPC core writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from otel_stigmer.testing import StigmerTestServer

from .support import CANARY, CANARY_FRAGMENT, ROOT

_RUNNER = """
from opentelemetry.sdk.trace import TracerProvider
from otel_stigmer import ConfigError, configure
from otel_stigmer import conventions as conv
provider = TracerProvider()
try:
    pipeline = configure(tracer_provider=provider)
except ConfigError as error:
    raise SystemExit(f"ConfigError: {error}")
attributes = {conv.WORKFLOW_EXECUTION_ID: "traced"}
with provider.get_tracer("t").start_as_current_span("wf", attributes=attributes):
    pass
print("flushed" if pipeline.force_flush(20_000) else "stuck", flush=True)
pipeline.shutdown(5_000)
"""


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    full.pop("GRPC_TRACE", None)
    full.pop("GRPC_VERBOSITY", None)
    full.update(env)
    try:
        return subprocess.run(
            [sys.executable, *argv],
            env=full,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        raise AssertionError(f"{argv[:3]} still running after 60 s") from expired


def _no_key(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert CANARY_FRAGMENT not in output, "the API key was printed"


def test_runner_refuses_grpc_trace_and_prints_no_key() -> None:
    """GRPC_TRACE=all + GRPC_VERBOSITY=debug: configure() fails naming GRPC_TRACE; no key."""
    with StigmerTestServer(api_key=CANARY) as server:
        result = _run(
            ["-c", _RUNNER], {**server.env(), "GRPC_TRACE": "all", "GRPC_VERBOSITY": "debug"}
        )
        _no_key(result)
        assert result.returncode != 0
        assert "ConfigError: GRPC_TRACE='all'" in result.stderr
        assert "Fix: unset GRPC_TRACE" in result.stderr
        assert server.events() == []


def test_grpc_verbosity_debug_alone_delivers_and_prints_no_key() -> None:
    """GRPC_VERBOSITY=debug without GRPC_TRACE is allowed: events go out, no key is printed."""
    with StigmerTestServer(api_key=CANARY) as server:
        result = _run(["-c", _RUNNER], {**server.env(), "GRPC_VERBOSITY": "debug"})
        _no_key(result)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip() == "flushed"
        assert [e.event_type for e in server.events()] == [
            "workflow_started",
            "workflow_completed",
        ]


def test_doctor_refuses_grpc_trace_and_prints_no_key() -> None:
    """`otel-stigmer doctor` under GRPC_TRACE=all fails its configuration step, keyless."""
    with StigmerTestServer(api_key=CANARY) as server:
        result = _run(
            ["-m", "otel_stigmer.cli", "doctor"],
            {**server.env(), "GRPC_TRACE": "all", "GRPC_VERBOSITY": "debug"},
        )
        _no_key(result)
        assert result.returncode == 1
        assert "GRPC_TRACE='all'" in result.stdout
        assert "configuration failed" in result.stdout


def test_serve_refuses_grpc_trace_and_prints_no_key(tmp_path: Path) -> None:
    """`otel-stigmer serve` under GRPC_TRACE=all exits 2 with the fix, before it listens."""
    result = _run(
        [
            "-m",
            "otel_stigmer.cli",
            "serve",
            "--port",
            "0",
            "--no-http",
            "--db",
            str(tmp_path / "e.db"),
        ],
        {"STIGMER_SERVER_API_KEYS": CANARY, "GRPC_TRACE": "all", "GRPC_VERBOSITY": "debug"},
    )
    _no_key(result)
    assert result.returncode == 2
    assert "GRPC_TRACE='all'" in result.stderr
    assert "Fix: unset GRPC_TRACE" in result.stderr
