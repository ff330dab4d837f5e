"""configure() at module level in a workflow file does nothing in the workflow sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from otel_stigmer.contrib.temporal import in_workflow_sandbox

from .conftest import CANARY_KEY, Harness

pytestmark = pytest.mark.temporal

RUNS = 30


def test_module_level_configure_in_the_sandbox_leaves_nothing_behind(harness: Harness) -> None:
    """A worker whose workflow module calls configure() at module level (the samples'
    layout): every run sees the sandbox, and runs leave no provider, exit hook or thread."""
    script = Path(__file__).with_name("sandbox_worker.py")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")}
    done = subprocess.run(
        [sys.executable, str(script), harness.address, str(RUNS)],
        env={**env, **harness.receiver.env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert CANARY_KEY not in done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["results"] == [True] * (RUNS + 1)
    assert report["growth"]["providers"] < RUNS // 3
    assert report["growth"]["exit_hooks"] == 0
    assert report["growth"]["threads"] <= 0


def test_outside_the_sandbox_nothing_is_sandboxed() -> None:
    """The test process itself is not a workflow sandbox."""
    assert in_workflow_sandbox() is False
