"""The ``otel-stigmer`` command: ``demo``, ``serve``, ``tail`` and ``doctor``."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Callable

__all__ = ["main"]

_USAGE = """\
usage: otel-stigmer COMMAND [options]

Report workflow and task progress from OpenTelemetry spans to the Stigmer Service.

commands:
  demo     run an example workflow against an embedded receiver and show its progress live
  serve    run the reference receiver (gRPC) with its live page (HTTP)
  tail     follow the progress events of a receiver in the terminal
  doctor   check configuration, DNS, TCP, TLS and authentication against the endpoint
  temporal-watch  report terminated and timed-out Temporal runs

Run `otel-stigmer COMMAND --help` for the options of a command.
"""

# Module and function of each command, imported on use so `--help` stays fast.
_COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("otel_stigmer.cli.demo", "demo_main"),
    "serve": ("otel_stigmer.server.cli", "serve_main"),
    "tail": ("otel_stigmer.cli.tail", "tail_main"),
    "doctor": ("otel_stigmer.cli.doctor", "doctor_main"),
    "temporal-watch": ("otel_stigmer.cli.temporal_watch", "temporal_watch_main"),
}


def _version() -> str:
    try:
        return importlib.metadata.version("otel-stigmer")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "0+unknown"


def main(argv: list[str] | None = None) -> int:
    """Run the ``otel-stigmer`` command line with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status of the command (2 for an unknown command).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_USAGE)
        return 0 if args else 2
    if args[0] == "--version":
        print(f"otel-stigmer {_version()}")
        return 0
    command = _COMMANDS.get(args[0])
    if command is None:
        sys.stderr.write(f"otel-stigmer: unknown command {args[0]!r}\n\n{_USAGE}")
        return 2
    module, function = command
    run: Callable[[list[str]], int] = getattr(importlib.import_module(module), function)
    try:
        return run(args[1:])
    except SystemExit as exc:
        # argparse exits on --help and on bad arguments; report its status instead.
        return exc.code if isinstance(exc.code, int) else 1
