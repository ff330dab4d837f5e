"""The `otel-stigmer` dispatcher: usage, version, unknown commands and per-command help."""

from __future__ import annotations

import pytest

from otel_stigmer.cli import main


def test_without_a_command_it_prints_usage_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """No command prints the command list and exits 2; --help does the same with 0."""
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("demo", "serve", "tail", "doctor"):
        assert f"  {command} " in out


def test_unknown_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command names itself on stderr and exits 2."""
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["demo", "serve", "tail", "doctor"])
def test_each_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`otel-stigmer COMMAND --help` exits 0 with the command's own usage."""
    assert main([command, "--help"]) == 0
    assert f"otel-stigmer {command}" in capsys.readouterr().out


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A bad option is reported by the command and exits 2 instead of raising SystemExit."""
    assert main(["doctor", "--no-such-option"]) == 2
    assert "--no-such-option" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the installed version."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("otel-stigmer ")
