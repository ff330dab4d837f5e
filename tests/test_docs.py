"""The documentation cannot rot: every Python snippet of README.md and docs/ runs, and the
README's front door (install, serve, three variables, run, live page) works as written."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from docs_runner import FENCE, python_snippets

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
WITH_SNIPPETS = [page for page in PAGES if python_snippets(page)]
# Fence labels allowed besides `python`: none of them may hide Python code.
OTHER_LABELS = {"", "bash", "text"}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STIGMER_", "OTEL_"))}
    env["OTEL_STIGMER_RAISE_INTERNAL_ERRORS"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.mark.parametrize("page", WITH_SNIPPETS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_python_snippet_of_the_page_runs(page: Path) -> None:
    """The page's snippets run in order, against a real receiver; test functions are called."""
    result = subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "tests" / "docs_runner.py"), str(page)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"{len(python_snippets(page))} snippet(s) ran"


def test_no_python_hides_under_another_fence_label() -> None:
    """Every fenced block is `python` (run by the test above) or bash / text / unlabelled."""
    labels = {
        (page.name, m.group("info").strip())
        for page in PAGES
        for m in FENCE.finditer(page.read_text(encoding="utf-8"))
    }
    assert {label for _, label in labels} - {"python"} <= OTHER_LABELS, labels


def test_readme_plain_otel_example_is_the_file_the_zero_code_test_runs() -> None:
    """The README shows examples/plain_otel.py verbatim (tests/test_zero_code.py runs it)."""
    example = (ROOT / "examples" / "plain_otel.py").read_text()
    body = example.split('"""', 2)[2].lstrip("\n")
    assert body in (ROOT / "README.md").read_text()


def test_readme_first_screen_has_install_lines_for_a_clone_and_an_index() -> None:
    """Before the first section: one sentence on what it is, and install lines that work."""
    first_screen = (ROOT / "README.md").read_text().split("\n## ", 1)[0]
    assert "reports the live progress of your workflow runner to the Stigmer Service" in (
        first_screen
    )
    assert 'pip install -e ".[instrument]"' in first_screen
    assert "@ git+" in first_screen
    assert 'pip install "otel-stigmer[instrument]"' in first_screen


LIST_EXECUTIONS = (
    "import sys, urllib.request; print(urllib.request.urlopen(urllib.request.Request("
    "f'http://127.0.0.1:{sys.argv[1]}/api/executions', "
    "headers={'Authorization': 'Bearer dev-key'}), timeout=10).read().decode())"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _recipe() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your own runner's events on a live page", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.slow
def test_readme_recipe_gets_a_runner_s_events_onto_the_live_page(tmp_path: Path) -> None:
    """The README's recipe, run line by line (free ports instead of 9090/8080), shows the
    runner's execution on the live page's API with the key the recipe uses."""
    grpc_port, http_port = _free_port(), _free_port()
    serve, variables, run, page = _recipe()
    assert serve.startswith("STIGMER_SERVICE_API_KEY=dev-key otel-stigmer serve &")
    assert "STIGMER_SERVICE_USE_TLS=false" in variables
    assert page.startswith("# open http://127.0.0.1:8080/")
    script = "\n".join(
        [
            "set -euo pipefail",
            f'export PATH="{Path(sys.executable).parent}:$PATH"',
            serve.replace("serve &", f"serve --port {grpc_port} --http-port {http_port} &")
            .split("#")[0]
            .rstrip(),
            "serve_pid=$!",
            "trap 'kill \"$serve_pid\"' EXIT",
            # Wait for the receiver's port (a condition, with a deadline), as a reader would.
            f"for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/{grpc_port}) 2>/dev/null"
            " && break; sleep 0.05; done",
            variables.replace("9090", str(grpc_port)),
            run.split("#")[0].rstrip().replace("examples/", f"{ROOT}/examples/"),
            f"python -c {LIST_EXECUTIONS!r} {http_port}",
        ]
    )
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env={**_env(), "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    executions = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(e["execution_id"], e["status"]) for e in executions] == [("wfexec-123", "completed")]
