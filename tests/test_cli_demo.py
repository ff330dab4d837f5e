"""`otel-stigmer demo` in a subprocess: exit 0, a live run, a summary with the retry and failure."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import otel_stigmer
from otel_stigmer.server.store import EventStore

REPO_ROOT = str(Path(otel_stigmer.__file__).resolve().parent.parent)
LOGIN_LINK = re.compile(r"log in:\s+(http://\S+)")


def _env() -> dict[str, str]:
    # A fresh user's environment: nothing of ours set.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STIGMER_", "OTEL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    return env


def _demo(*args: str) -> list[str]:
    return [sys.executable, "-m", "otel_stigmer.cli", "demo", "--pace", "0.05", *args]


def test_demo_runs_the_workflow_and_summarises_retry_and_failure() -> None:
    """The demo exits 0 and its output shows live task lines and a summary of retry and failure."""
    done = subprocess.run(
        _demo("--exit"),
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "live page  http://127.0.0.1:" in out
    assert re.search(r"> fetch-orders\s+started", out)
    assert re.search(r"~ check-inventory\s+retry\s+attempt 1 .* INVENTORY_TIMEOUT:", out)
    assert re.search(r"\. enrich-orders\s+progress\s+50%", out)
    assert "Summary: workflow ingest-orders completed" in out
    assert "tasks:   5 (4 completed, 1 failed)" in out
    assert "retried: check-inventory: attempt 1 failed with INVENTORY_TIMEOUT" in out
    assert "succeeded on attempt 2" in out
    assert "failed:  send-notifications: NOTIFICATION_QUOTA: daily e-mail quota reached" in out
    assert "[########################] 100%  5/5 task calls" in out
    # Not a terminal: no color codes, no status line redraws.
    assert "\x1b[" not in out


def test_demo_serves_the_page_until_interrupted(tmp_path: Path) -> None:
    """By default the page stays up after the run; Enter prints a new login link; SIGINT ends it."""
    proc = subprocess.Popen(
        _demo("--dir", str(tmp_path), "--no-color"),
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60

    def next_link(after: str) -> str:
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            match = LOGIN_LINK.search(line)
            if match and after in "".join(output):
                return match.group(1)

    def log_in(link: str) -> str:
        url = urllib.parse.urlsplit(link)
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        try:
            conn.request("GET", f"{url.path}?{url.query}")
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        assert response.status == 303
        return response.getheader("Set-Cookie", "").split(";", 1)[0]

    try:
        first = next_link("stay up")
        log_in(first)
        # The first link is used up: Enter prints another one, which logs in too.
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        second = next_link("Press Ctrl-C")
        assert second != first
        cookie = log_in(second)
        url = urllib.parse.urlsplit(second)
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        conn.request("GET", "/api/executions", headers={"Cookie": cookie})
        executions = json.loads(conn.getresponse().read())
        conn.close()
        assert [(e["workflow_name"], e["status"]) for e in executions] == [
            ("ingest-orders", "completed")
        ]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stdin is not None:
            proc.stdin.close()
    store = EventStore(tmp_path / "stigmer-events.db")
    try:
        kinds = [e.event_type for e in store.events()]
    finally:
        store.close()
    assert kinds[0] == "workflow_started"
    assert kinds[-1] == "workflow_completed"
    assert kinds.count("task_retry") == 1
    assert kinds.count("task_failed") == 1
    assert "Press Ctrl-C to stop." in "".join(output)
    assert "to log in again" in "".join(output)
