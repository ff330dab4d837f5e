"""Run every Python snippet of one Markdown page, in order, as a reader would (``test_docs.py``).

Usage: ``python tests/docs_runner.py PAGE.md``. The snippets of a page share one namespace,
like a reader's session. Before the first snippet a reference receiver starts on loopback and
its ``STIGMER_SERVICE_*`` variables are set, so ``configure()`` and the client really report;
a page that imports ``temporalio`` also gets a Temporal dev server (``TEMPORAL_ADDRESS``).
A snippet that defines ``test_*`` functions has them called as pytest would, with the
``stigmer_events`` and ``monkeypatch`` fixtures and the ``stigmer_deterministic`` marker.
``examples/`` is importable. Exit status 0 when every snippet ran; otherwise the traceback
names the page and its line.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_stigmer.testing import StigmerTestServer, capture_progress

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<code>.*?)^```", re.S | re.M)


def python_snippets(page: Path) -> list[tuple[int, str]]:
    """The ``python`` fences of ``page``: (line of the first code line, code)."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        if match.group("info").strip() == "python":
            found.append((text.count("\n", 0, match.start("code")) + 1, match.group("code")))
    return found


def _deterministic(fn: Callable[..., Any]) -> bool:
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "stigmer_deterministic":
            return bool(mark.args[0]) if mark.args else True
    return False


def _call_test(fn: Callable[..., Any]) -> None:
    with contextlib.ExitStack() as stack:
        kwargs: dict[str, Any] = {}
        for name in inspect.signature(fn).parameters:
            if name == "stigmer_events":
                kwargs[name] = stack.enter_context(
                    capture_progress(deterministic=_deterministic(fn))
                )
            elif name == "monkeypatch":
                kwargs[name] = stack.enter_context(pytest.MonkeyPatch.context())
            else:
                raise RuntimeError(f"{fn.__name__}: no fixture {name!r} in the docs runner")
        result = fn(**kwargs)
        if inspect.iscoroutine(result):
            asyncio.run(result)


@contextlib.contextmanager
def _temporal_dev_server() -> Iterator[str]:
    from temporalio.testing import WorkflowEnvironment  # noqa: PLC0415

    binary = shutil.which("temporal", path=str(Path(sys.executable).parent)) or "temporal"
    loop = asyncio.new_event_loop()
    env = loop.run_until_complete(WorkflowEnvironment.start_local(dev_server_existing_path=binary))
    try:
        yield env.client.service_client.config.target_host
    finally:
        loop.run_until_complete(env.shutdown())
        loop.close()


def run_page(page: Path) -> int:
    """Run the snippets of ``page``; return how many ran."""
    snippets = python_snippets(page)
    sys.path.insert(0, str(ROOT / "examples"))
    namespace: dict[str, Any] = {"__name__": "docs_snippets"}
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(StigmerTestServer(api_key="docs-key"))
        os.environ.update(server.env())
        if any("temporalio" in code for _, code in snippets):
            os.environ["TEMPORAL_ADDRESS"] = stack.enter_context(_temporal_dev_server())
        for line, code in snippets:
            before = set(namespace)
            # Leading newlines keep the page's line numbers in tracebacks.
            compiled = compile("\n" * (line - 1) + code, str(page), "exec")
            exec(compiled, namespace)
            for name in sorted(set(namespace) - before):
                if name.startswith("test_") and callable(namespace[name]):
                    _call_test(namespace[name])
        pipeline_flush = namespace.get("otel_stigmer")
        if pipeline_flush is not None:
            from opentelemetry import trace  # noqa: PLC0415

            provider = trace.get_tracer_provider()
            flush = getattr(provider, "force_flush", None)
            if flush is not None:
                flush(10_000)
    return len(snippets)


if __name__ == "__main__":
    count = run_page(Path(sys.argv[1]))
    print(f"{count} snippet(s) ran")
