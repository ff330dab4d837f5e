"""``otel-stigmer demo``: a receiver, its live page and an instrumented workflow, end to end.

Starts the reference receiver (SQLite in a temporary or given directory) and its live
page, runs :mod:`otel_stigmer.demo.workflow` in a child process that reports to it,
shows the progress in the terminal as it is stored, and ends with a summary. The page
stays up until Ctrl-C (``--exit`` stops at once). Needs no network beyond loopback and
no environment variable.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO

import otel_stigmer
from otel_stigmer.cli._render import ProgressView, Terminal, use_color
from otel_stigmer.decorators import new_execution_id
from otel_stigmer.demo.workflow import WORKFLOW_NAME
from otel_stigmer.server.app import ReceiverServer
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.http import LiveHttpServer
from otel_stigmer.server.store import EventStore

__all__ = ["build_parser", "demo_main"]

_PROG = "otel-stigmer demo"
_DB_NAME = "stigmer-events.db"
# Variables of the parent that would redirect or disable the child's reporting.
_CHILD_ENV_PREFIXES = ("STIGMER_", "OTEL_")
_EXIT_GRACE = 5.0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``otel-stigmer demo``."""
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description=(
            "Start the reference receiver and its live page, run an example workflow "
            "(instrumented only with @workflow and @task) in a child process, and show "
            "its progress live."
        ),
    )
    parser.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="keep the SQLite file in DIR (default: a temporary directory, removed at exit)",
    )
    parser.add_argument("--port", type=int, default=0, help="gRPC port (default: any free one)")
    parser.add_argument(
        "--http-port", type=int, default=0, help="live page port (default: any free one)"
    )
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument(
        "--keep",
        action="store_true",
        default=True,
        help="keep the receiver and the live page up after the run, until Ctrl-C (default)",
    )
    keep.add_argument(
        "--exit",
        dest="keep",
        action="store_false",
        help="stop the receiver and the live page as soon as the run is summarised",
    )
    parser.add_argument("--no-color", action="store_true", help="plain output, no ANSI colors")
    parser.add_argument(
        "--pace",
        type=float,
        default=0.4,
        metavar="SECONDS",
        help="how long each simulated task works (default 0.4)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="give up on the workflow after this long (default 60)",
    )
    return parser


@contextmanager
def _data_dir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="otel-stigmer-demo-") as tmp:
        yield Path(tmp)


def _child_env(endpoint: str, api_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CHILD_ENV_PREFIXES)}
    package_root = str(Path(otel_stigmer.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(
        {
            "STIGMER_SERVICE_ENDPOINT": endpoint,
            "STIGMER_SERVICE_API_KEY": api_key,
            "STIGMER_SERVICE_USE_TLS": "false",
            "OTEL_SERVICE_NAME": "otel-stigmer-demo",
        }
    )
    # A proxy configured for the outside world must not catch the loopback receiver.
    bypass = ",".join(filter(None, [env.get("no_grpc_proxy"), "localhost,127.0.0.1,::1"]))
    env["no_grpc_proxy"] = bypass
    return env


def _follow(
    store: EventStore,
    child: subprocess.Popen[bytes],
    execution_id: str,
    view: ProgressView,
    terminal: Terminal,
    timeout: float,
) -> bool:
    """Show events as they are stored until the workflow ends; False on timeout."""
    deadline = time.monotonic() + timeout
    exited_at: float | None = None
    last = 0
    while True:
        for stored in store.stored_since(last, execution_id=execution_id):
            last = stored.rowid
            terminal.print(view.feed(stored.event, late=stored.late))
            terminal.status(view.bar(execution_id))
        state = view.state(execution_id)
        now = time.monotonic()
        if child.poll() is not None:
            exited_at = exited_at or now
            # Events are flushed before the child exits; a short grace covers in-flight calls.
            if state.finished or now - exited_at > _EXIT_GRACE:
                return True
        if now > deadline:
            return False
        store.wait_for_change(last, 0.2)


def _offer_login_links(http: LiveHttpServer, out: IO[str], stopping: threading.Event) -> None:
    """Print a fresh one-time login link for every line typed on stdin, until EOF or stop."""
    for _line in sys.stdin:
        if stopping.is_set():
            return
        print(f"  log in:  {http.login_url()}  (one-time link)", file=out, flush=True)


def _wait_for_signal(http: LiveHttpServer, out: IO[str]) -> None:
    stopping = threading.Event()
    if sys.stdin is not None:
        threading.Thread(target=_offer_login_links, args=(http, out, stopping), daemon=True).start()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _tail_of(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_text("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def demo_main(argv: list[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Run ``otel-stigmer demo``.

    Returns:
        0 when the workflow ran to completion and was reported, 1 otherwise, 2 on bad
        arguments, 130 when interrupted.
    """
    args = build_parser().parse_args(argv)
    out = stdout or sys.stdout
    color = use_color(out, disabled=args.no_color)
    # The key exists only in this process and the child's environment; it is never printed.
    api_key = secrets.token_urlsafe(24)
    with _data_dir(args.dir) as data_dir:
        receiver = ReceiverServer(
            api_keys=[api_key], db_path=data_dir / _DB_NAME, port=args.port, max_workers=4
        )
        http = LiveHttpServer(receiver.store, BearerKeyAuth([api_key]), port=args.http_port)
        try:
            receiver.start()
            http.start()
        except OSError as exc:
            http.stop()
            receiver.stop(None)
            print(f"{_PROG}: error: {exc}", file=sys.stderr)
            return 1
        try:
            return _run(args, out, color, receiver, http, data_dir, api_key)
        except KeyboardInterrupt:
            print("\ninterrupted", file=out)
            return 130
        finally:
            http.stop()
            receiver.stop(grace=1.0)


def _run(
    args: argparse.Namespace,
    out: IO[str],
    color: bool,
    receiver: ReceiverServer,
    http: LiveHttpServer,
    data_dir: Path,
    api_key: str,
) -> int:
    execution_id = new_execution_id()
    print("otel-stigmer demo", file=out)
    print(
        f"  receiver   {receiver.endpoint} (gRPC, plaintext, SQLite {data_dir / _DB_NAME})",
        file=out,
    )
    print(f"  live page  {http.login_url()}  (one-time login link)", file=out)
    print(
        f"  workflow   {WORKFLOW_NAME}, execution {execution_id}, in a child process "
        "instrumented only with @workflow and @task",
        file=out,
    )
    print(file=out, flush=True)
    log_path = data_dir / "workflow.log"
    view = ProgressView(color=color)
    terminal = Terminal(out, live=color)
    with log_path.open("wb") as log:
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [
                sys.executable,
                "-m",
                "otel_stigmer.demo.workflow",
                "--execution-id",
                execution_id,
                "--pace",
                str(args.pace),
            ],
            env=_child_env(receiver.endpoint, api_key),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            in_time = _follow(receiver.store, child, execution_id, view, terminal, args.timeout)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
    terminal.finish()
    print(file=out)
    for line in view.summary(execution_id):
        print(line, file=out)
    state = view.state(execution_id)
    ok = in_time and child.returncode == 0 and state.status == "completed"
    if not in_time:
        print(f"  the workflow did not finish within {args.timeout:g} s", file=out)
    if child.returncode != 0:
        print(f"  the workflow process exited with {child.returncode}:", file=out)
        print(_tail_of(log_path), file=out)
    if args.keep:
        print(
            f"\nThe receiver ({receiver.endpoint}) and the live page ({http.url}) stay up.",
            file=out,
        )
        print(f"  log in:  {http.login_url()}  (one-time link)", file=out)
        print(
            "  to log in again (another browser, or after logging out): press Enter here for "
            "a new one-time link; a browser stays logged in for 12 hours",
            file=out,
        )
        print("Press Ctrl-C to stop.", file=out, flush=True)
        _wait_for_signal(http, out)
    out.flush()
    return 0 if ok else 1
