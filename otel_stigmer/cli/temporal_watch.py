"""``otel-stigmer temporal-watch``: report terminated and timed-out Temporal runs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys

__all__ = ["build_parser", "temporal_watch_main"]

_DESCRIPTION = """\
Report the outcome of Temporal runs that ended where no workflow code runs: terminated
(workflow_cancelled, with the reason) and timed out (workflow_failed, code
WorkflowRunTimeout or WorkflowExecutionTimeout). Events go to the Stigmer Service
configured by STIGMER_SERVICE_*. Event ids are derived from the run ids, so several
watchers, or a restarted one, store each outcome once at a receiver that de-duplicates
by event id. Needs `pip install 'otel-stigmer[temporal]'`.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command's argument parser."""
    parser = argparse.ArgumentParser(prog="otel-stigmer temporal-watch", description=_DESCRIPTION)
    parser.add_argument("--address", default="localhost:7233", help="Temporal frontend host:port")
    parser.add_argument("--namespace", default="default", help="Temporal namespace to watch")
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between polls (default 2)"
    )
    parser.add_argument(
        "--lookback",
        type=float,
        default=600.0,
        help="seconds of closed runs the first poll looks back over (default 600)",
    )
    parser.add_argument("--once", action="store_true", help="poll once, report, and exit")
    return parser


def temporal_watch_main(argv: list[str]) -> int:
    """Run the watcher until interrupted (or once with ``--once``)."""
    args = build_parser().parse_args(argv)
    if args.interval <= 0 or args.lookback <= 0:
        print(
            "otel-stigmer temporal-watch: --interval and --lookback must be positive",
            file=sys.stderr,
        )
        return 2
    import otel_stigmer  # noqa: PLC0415 - keep --help fast

    pipeline = otel_stigmer.configure()
    try:
        code = asyncio.run(_watch(args))
    finally:
        pipeline.shutdown(10_000)
    # Events are delivered by now. Skip interpreter teardown: temporalio's core threads
    # can abort it ("PyGILState_Release", sdk-python issue 300).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def _watch(args: argparse.Namespace) -> int:
    from datetime import timedelta  # noqa: PLC0415 - keep --help fast

    from temporalio.client import Client  # noqa: PLC0415 - optional extra

    from otel_stigmer.contrib.temporal import ClosedRunWatcher  # noqa: PLC0415

    client = await Client.connect(args.address, namespace=args.namespace)
    watcher = ClosedRunWatcher(
        client, interval=args.interval, lookback=timedelta(seconds=args.lookback)
    )
    if args.once:
        print(f"reported {await watcher.poll()}", flush=True)
        return 0
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"watching {args.namespace} at {args.address} every {args.interval:g} s", flush=True)
    await watcher.run(stop)
    return 0
