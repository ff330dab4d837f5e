"""``scripts/demo.sh``: installs on the first run, and again only when pyproject.toml changed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import otel_stigmer

REPO_ROOT = Path(otel_stigmer.__file__).resolve().parent.parent


def _tree(tmp_path: Path) -> Path:
    """A copy of the script beside a bootstrap stand-in that logs its runs and makes .venv."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO_ROOT / "scripts" / "demo.sh", tmp_path / "scripts" / "demo.sh")
    (tmp_path / "scripts" / "bootstrap.sh").write_text(
        'set -e\ncd "$(dirname "$0")/.."\necho bootstrap >> installs.log\n'
        "mkdir -p .venv/bin\nprintf '#!/bin/sh\\necho demo \"$@\"\\n' > .venv/bin/otel-stigmer\n"
        "chmod +x .venv/bin/otel-stigmer\n"
    )
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    return tmp_path


def _demo(tree: Path) -> str:
    done = subprocess.run(
        ["bash", str(tree / "scripts" / "demo.sh"), "--exit"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_demo_script_installs_once_until_the_project_file_changes(tmp_path: Path) -> None:
    """A second run skips the install; editing pyproject.toml installs again."""
    tree = _tree(tmp_path)
    assert _demo(tree) == "demo demo --exit\n"
    assert _demo(tree) == "demo demo --exit\n"
    assert (tree / "installs.log").read_text() == "bootstrap\n"
    (tree / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '2'\n")
    _demo(tree)
    assert (tree / "installs.log").read_text() == "bootstrap\nbootstrap\n"
