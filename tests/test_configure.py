"""``configure()`` never surprises: repeated calls, disabled SDK, misuse, provider order, hints."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import baggage, context, propagate, trace
from opentelemetry.sdk.trace import TracerProvider

from otel_stigmer import StigmerConfig, _baggage_policy, _tls_hint, configure
from otel_stigmer import conventions as conv
from otel_stigmer.exceptions import ConfigError
from otel_stigmer.propagation import inject_headers
from otel_stigmer.testing import StigmerTestServer

ROOT = Path(__file__).resolve().parent.parent


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_SDK", "STIGMER_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _run_workflow(provider: TracerProvider, execution_id: str) -> None:
    tracer = provider.get_tracer("runner")
    with (
        tracer.start_as_current_span("wf", attributes={conv.WORKFLOW_EXECUTION_ID: execution_id}),
        tracer.start_as_current_span("t", attributes={conv.TASK_NAME: "t"}),
    ):
        pass


@pytest.fixture
def two_servers() -> Iterator[tuple[StigmerTestServer, StigmerTestServer]]:
    with StigmerTestServer(api_key="k-one") as one, StigmerTestServer(api_key="k-two") as two:
        yield one, two


def test_second_configure_with_other_settings_replaces_the_first(
    two_servers: tuple[StigmerTestServer, StigmerTestServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A second configure() with another endpoint reports there, and says so; never both."""
    one, two = two_servers
    provider = TracerProvider()
    first = configure(StigmerConfig.from_env(one.env()), tracer_provider=provider)
    _run_workflow(provider, "before")
    assert first.force_flush(10_000)
    with caplog.at_level(logging.WARNING, logger="otel_stigmer"):
        second = configure(StigmerConfig.from_env(two.env()), tracer_provider=provider)
    assert second is not first
    assert "the new settings replace the old ones" in caplog.text
    _run_workflow(provider, "after")
    assert second.force_flush(10_000)
    assert len(one.events("before")) == 4
    assert len(two.events("after")) == 4
    assert one.events("after") == []
    assert two.events("before") == []
    provider.shutdown()


def test_second_configure_with_the_same_settings_returns_the_same_pipeline(
    two_servers: tuple[StigmerTestServer, StigmerTestServer],
) -> None:
    """Same settings again (e.g. from the same environment): the same pipeline, no swap."""
    one, _ = two_servers
    provider = TracerProvider()
    first = configure(StigmerConfig.from_env(one.env()), tracer_provider=provider)
    assert configure(StigmerConfig.from_env(one.env()), tracer_provider=provider) is first
    provider.shutdown()


def test_sdk_disabled_needs_no_stigmer_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_SDK_DISABLED=true: configure() is a no-op even with no STIGMER_* set at all."""
    for name in list(os.environ):
        if name.startswith("STIGMER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    pipeline = configure()
    assert not pipeline.active
    assert pipeline.reason == "OTEL_SDK_DISABLED=true"
    assert pipeline.force_flush(1_000)
    assert pipeline.stats().sent == 0
    with pytest.raises(RuntimeError, match="inactive: OTEL_SDK_DISABLED=true"):
        _ = pipeline.processor


def test_missing_endpoint_outside_a_test_session_is_still_an_error() -> None:
    """Outside pytest, configure() without STIGMER_SERVICE_ENDPOINT raises the ConfigError."""
    result = _python(
        """
        import otel_stigmer
        try:
            otel_stigmer.configure()
        except otel_stigmer.ConfigError as exc:
            print("ConfigError:", exc)
        """,
        _clean_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ConfigError: STIGMER_SERVICE_ENDPOINT is not set. Fix:")


def test_misuse_gives_clear_type_errors() -> None:
    """Wrong argument types raise TypeErrors that say what was expected."""
    with pytest.raises(TypeError, match=r"ProxyTracerProvider \(the API's placeholder"):
        configure(tracer_provider=trace.ProxyTracerProvider())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes a StigmerConfig, got dict"):
        configure({"endpoint": "x:1"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes an EventSink"):
        configure(sink=object(), tracer_provider=TracerProvider())  # type: ignore[arg-type]


def test_force_flush_none_is_a_clear_type_error() -> None:
    """force_flush(None) and shutdown("5") say they take milliseconds."""
    from otel_stigmer.sinks import MemorySink  # noqa: PLC0415

    provider = TracerProvider()
    pipeline = configure(sink=MemorySink(), tracer_provider=provider)
    with pytest.raises(TypeError, match=r"force_flush\(timeout_millis=...\) takes a number"):
        pipeline.force_flush(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got '5'"):
        pipeline.shutdown("5")  # type: ignore[arg-type]
    pipeline.shutdown(1_000)


def test_configure_after_the_users_provider_attaches_to_it() -> None:
    """set_tracer_provider(mine) then configure(): both the user's exporter and Stigmer get it."""
    with StigmerTestServer(api_key="k-order") as server:
        result = _python(
            """
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                InMemorySpanExporter,
            )
            import otel_stigmer

            mine = TracerProvider()
            exporter = InMemorySpanExporter()
            mine.add_span_processor(SimpleSpanProcessor(exporter))
            trace.set_tracer_provider(mine)
            pipeline = otel_stigmer.configure()
            assert pipeline.tracer_provider is mine
            tracer = trace.get_tracer("t")
            with tracer.start_as_current_span(
                "wf", attributes={"stigmer.workflow.execution_id": "order-1"}
            ):
                pass
            assert pipeline.force_flush(10_000)
            print(len(exporter.get_finished_spans()))
            """,
            _clean_env(**server.env()),
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "1"
        assert [e.event_type for e in server.events("order-1")] == [
            "workflow_started",
            "workflow_completed",
        ]


def test_configure_before_the_users_provider_says_exactly_what_happened() -> None:
    """configure() then set_tracer_provider(mine): one error naming the refusal and the fix."""
    with StigmerTestServer(api_key="k-order") as server:
        result = _python(
            """
            import logging
            from opentelemetry import trace
            from opentelemetry.sdk.trace import TracerProvider
            import otel_stigmer

            logging.basicConfig()
            otel_stigmer.configure()
            trace.set_tracer_provider(TracerProvider())
            """,
            _clean_env(**server.env()),
        )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("trace.set_tracer_provider(...) was refused because") == 1
    assert "Fix: call trace.set_tracer_provider(yours) before otel_stigmer.configure()" in (
        result.stderr
    )


def test_configure_at_import_in_a_test_module_without_endpoint(tmp_path: Path) -> None:
    """The README's first example at import in a test module, no STIGMER_*: one warning, the
    module is collected and the stigmer_events fixture captures the events."""
    (tmp_path / "test_ingest.py").write_text(
        textwrap.dedent(
            """
            import otel_stigmer
            from otel_stigmer import task, workflow

            otel_stigmer.configure()

            @task
            def fetch(url: str) -> str:
                return url

            @workflow(name="ingest")
            def ingest(urls: list[str], execution_id: str) -> None:
                for url in urls:
                    fetch(url)

            def test_ingest(stigmer_events):
                ingest(["a"], execution_id="wf-1")
                stigmer_events.assert_sequence(
                    ["workflow_started", "task_started", "task_completed", "workflow_completed"]
                )
            """
        )
    )
    env = _clean_env()
    env.pop("PYTHONPATH")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "log_cli=true",
            "--log-cli-level=WARNING",
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert result.stdout.count("configure() in a pytest session with no STIGMER_SERVICE_") == 1


def test_no_pipeline_configured_warns_once_when_a_workflow_starts() -> None:
    """Forgetting configure(): one warning at the first workflow, not one per run."""
    result = _python(
        """
        import logging
        from otel_stigmer import task, workflow

        logging.basicConfig()

        @task
        def step() -> None:
            pass

        @workflow
        def flow() -> None:
            step()

        flow()
        flow()
        """,
        _clean_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("a workflow started but nothing reports its progress") == 1


def test_no_warning_when_configured() -> None:
    """With configure() done, starting workflows logs no 'nothing reports' warning."""
    with StigmerTestServer(api_key="k-warn") as server:
        result = _python(
            """
            import logging
            import otel_stigmer
            from otel_stigmer import workflow

            logging.basicConfig()
            otel_stigmer.configure()

            @workflow
            def flow() -> None:
                pass

            flow()
            """,
            _clean_env(**server.env()),
        )
    assert result.returncode == 0, result.stderr
    assert "nothing reports its progress" not in result.stderr


def test_tls_left_on_against_a_plaintext_local_receiver_gives_a_one_line_hint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """TLS on, loopback receiver in plaintext: one warning naming STIGMER_SERVICE_USE_TLS=false."""
    with StigmerTestServer(api_key="k-tls") as server:
        config = StigmerConfig(server.endpoint, api_key="k-tls", use_tls=True)
        assert _tls_hint.speaks_tls(config.host, config.port) is False
        with caplog.at_level(logging.WARNING, logger="otel_stigmer"):
            probe = _tls_hint.check_in_background(config)
            assert probe is not None
            probe.join(10)
            assert _tls_hint.check_in_background(config) is None  # once per endpoint
    hints = [r.getMessage() for r in caplog.records if "does not answer in TLS" in r.getMessage()]
    assert len(hints) == 1
    assert "set STIGMER_SERVICE_USE_TLS=false" in hints[0]
    assert "\n" not in hints[0]


def test_tls_receiver_gets_no_hint() -> None:
    """A receiver that does speak TLS is recognised as such (no hint)."""
    with StigmerTestServer(api_key="k-tls", tls=True) as server:
        host, port = server.endpoint.rsplit(":", 1)
        assert _tls_hint.speaks_tls(host, int(port)) is True


def test_tls_hint_never_probes_a_remote_host() -> None:
    """Only loopback endpoints are probed: configure() opens no extra connection elsewhere."""
    config = StigmerConfig("stigmer.example.com:443", api_key="k")
    assert _tls_hint.check_in_background(config) is None
    assert not any(t.name == "otel-stigmer-tls-check" for t in threading.enumerate())


def test_identity_baggage_filter_leaves_other_entries_and_helpers_keep_identity(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The global propagator drops only the Stigmer entries; inject_headers() keeps them."""
    monkeypatch.delenv(_baggage_policy.ENV_IDENTITY_BAGGAGE, raising=False)
    original = propagate.get_global_textmap()
    try:
        _baggage_policy.install()
        ctx = baggage.set_baggage(conv.BAGGAGE_EXECUTION_ID, "exec-9")
        ctx = baggage.set_baggage("tenant", "acme", ctx)
        token = context.attach(ctx)
        try:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            helpers = inject_headers()
        finally:
            context.detach(token)
        assert carrier["baggage"] == "tenant=acme"
        assert "exec-9" in helpers["baggage"]
        assert "tenant=acme" in helpers["baggage"]
    finally:
        propagate.set_global_textmap(original)


def test_identity_baggage_policy_rejects_unknown_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """A typo in STIGMER_IDENTITY_BAGGAGE is a ConfigError naming the variable and the values,
    raised by configure() before anything is attached."""
    from otel_stigmer._configure import has_pipeline  # noqa: PLC0415
    from otel_stigmer.sinks import MemorySink  # noqa: PLC0415

    monkeypatch.setenv(_baggage_policy.ENV_IDENTITY_BAGGAGE, "everywhere")
    with pytest.raises(ConfigError, match=r"STIGMER_IDENTITY_BAGGAGE='everywhere'.*'helpers'"):
        _baggage_policy.install()
    provider = TracerProvider()
    with pytest.raises(ConfigError, match="STIGMER_IDENTITY_BAGGAGE"):
        configure(sink=MemorySink(), tracer_provider=provider)
    assert not has_pipeline(provider)


def test_configure_with_tls_against_a_plaintext_local_receiver_logs_the_hint() -> None:
    """configure() itself starts the probe: the hint is in the runner's output, once."""
    with StigmerTestServer(api_key="k-tls") as server:
        env = _clean_env(**{**server.env(), "STIGMER_SERVICE_USE_TLS": "true"})
        result = _python(
            """
            import logging, threading
            import otel_stigmer

            logging.basicConfig()
            otel_stigmer.configure()
            otel_stigmer.configure()
            for thread in threading.enumerate():
                if thread.name == "otel-stigmer-tls-check":
                    thread.join(10)
            """,
            env,
        )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("does not answer in TLS") == 1
    assert "set STIGMER_SERVICE_USE_TLS=false" in result.stderr
    assert "k-tls" not in result.stderr
