"""``python -m benchmarks.receiver_load``: where the time goes on both sides of a burst.

Two sections, each side by side in one run:

* ``unary``: the Stigmer pipeline (20 executions) against the reference receiver with the
  batch RPC answered UNIMPLEMENTED, next to the naive and the raw client against the same
  receiver. Per run: events/s stored [wall], the receiver's process CPU per event and the
  producer's process CPU per event [CPU], the receiver's store calls (transactions) per
  event, the CPU and wall time per store call, and how many calls were inside the store at
  once (the calls in flight the receiver actually reached). ``--against REV`` adds the
  pipeline and the receiver of git revision REV, each client against the receiver of its
  revision, the naive and raw clients against both.
* ``ceiling``: the receiver fed pre-serialized batches by raw clients at full speed
  (several processes, several calls in flight each), so only the receiver bounds the
  rate; and the store alone (``EventStore.add`` in this process, no gRPC).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.profile import _library_at
from benchmarks.receivers import API_KEY, ReceiverProcess, StoreMeter

_ROOT = Path(__file__).resolve().parent.parent
_BATCH_METHOD = (
    "/ai.stigmer.workflow.runner.v1.WorkflowRunnerCommandController/report_progress_batch"
)
_EXECUTIONS = 20
_WAIT_S = 300.0

Result = dict[str, Any]


def _run(module: str, params: dict[str, Any], library: Path | None = None) -> Result:
    """Run ``python -m module '<json>'`` with ``library`` first on the path; its JSON result."""
    env = dict(os.environ)
    paths = [str(library)] if library is not None else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(_ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", module, json.dumps(params)],
        capture_output=True,
        text=True,
        cwd=_ROOT,
        env=env,
        timeout=900,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{module} {params} failed:\n{done.stderr[-4000:]}")
    result: Result = json.loads(lines[-1])
    return result


def _measured(receiver: ReceiverProcess, expected: int, run: Any, warmup: int = 0) -> Result:
    """Run ``run()``, wait until ``expected`` events are stored; rate and both sides' costs.

    ``warmup`` events of the ``expected`` are stored before the run's clock starts: they
    count as stored, not in the rate.
    """
    receiver.reset()
    before = receiver.meter()
    result: Result = run()
    stored = receiver.wait_for(expected, _WAIT_S)
    after = receiver.meter()
    start = result["start_ns"]
    events = stored.count
    meter: StoreMeter = after
    return {
        "events": events,
        "expected": expected,
        "rate": (events - warmup) / ((stored.last_ns - start) / 1e9) if events else 0.0,
        "receiver_cpu_us": (after.process_cpu_ns - before.process_cpu_ns) / 1e3 / max(1, events),
        "producer_cpu_us": result.get("process_cpu_ns", 0) / 1e3 / max(1, events),
        "calls_per_event": meter.calls / max(1, events),
        "commits_per_event": (after.transactions - before.transactions or meter.calls)
        / max(1, events),
        "add_cpu_us": meter.add_cpu_ns / 1e3 / max(1, meter.calls),
        "add_wall_us": meter.add_wall_ns / 1e3 / max(1, meter.calls),
        "in_add_mean": meter.in_add_sum / max(1, meter.calls),
        "in_add_max": meter.max_in_add,
        "threads": meter.threads,
        "switches": (after.switches - before.switches) / max(1, events),
    }


def _row(name: str, runs: Sequence[Result], base: float, raw: float) -> str:
    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in runs))

    rate = med("rate")
    return (
        f"| {name} | {rate:,.0f} | {rate / base:.2f}x | {rate / raw:.2f}x "
        f"| {med('receiver_cpu_us'):.0f} | {med('producer_cpu_us'):.0f} "
        f"| {med('commits_per_event'):.2f} | {med('add_cpu_us'):.0f} / {med('add_wall_us'):.0f} "
        f"| {med('in_add_mean'):.1f} / {max(r['in_add_max'] for r in runs)} "
        f"| {med('switches'):.1f} | {sum(r['expected'] - r['events'] for r in runs)} |"
    )


def unary(events: int, reps: int, against: Sequence[str]) -> None:
    """The unary-only burst: ours, naive and raw against the same receiver(s)."""
    calls = events // 2
    with tempfile.TemporaryDirectory() as scratch:
        libraries: dict[str, Path | None] = {"this": None}
        for index, revision in enumerate(against):
            libraries[revision] = _library_at(revision, Path(scratch) / str(index))
        receivers = {
            label: ReceiverProcess(
                "stigmer", batch_enabled=False, library=None if lib is None else str(lib)
            ).start()
            for label, lib in libraries.items()
        }
        try:
            runs: dict[str, list[Result]] = {}
            for _ in range(reps):
                for label, receiver in receivers.items():
                    library = libraries[label]
                    plans = [
                        (f"stigmer@{label}", "stigmer", library, 2 * (calls + _EXECUTIONS)),
                        (f"naive -> receiver@{label}", "naive", None, 2 * calls),
                        (f"raw -> receiver@{label}", "raw", None, 2 * calls),
                    ]
                    for name, pipeline, lib, expected in plans:
                        params = {
                            "scenario": "burst",
                            "pipeline": pipeline,
                            "calls": calls,
                            "executions": _EXECUTIONS,
                            "endpoint": receiver.endpoint,
                        }

                        def work(p: dict[str, Any] = params, lib: Path | None = lib) -> Result:
                            return _run("benchmarks.worker", p, lib)

                        runs.setdefault(name, []).append(_measured(receiver, expected, work))
        finally:
            for receiver in receivers.values():
                receiver.stop()
    print(
        f"#### Unary-only receiver, {events:,}-event burst, {_EXECUTIONS} executions, "
        f"{reps} rep(s), medians"
    )
    print()
    print(
        "| client -> receiver | events/s stored [wall] | x naive | x raw "
        "| receiver CPU us/event [CPU] | producer CPU us/event [CPU] | commits/event "
        "| store call CPU / wall us | calls in store mean / max | receiver context switches/event "
        "| lost |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label in libraries:
        naive = statistics.median(r["rate"] for r in runs[f"naive -> receiver@{label}"])
        raw = statistics.median(r["rate"] for r in runs[f"raw -> receiver@{label}"])
        for name in (f"stigmer@{label}", f"naive -> receiver@{label}", f"raw -> receiver@{label}"):
            print(_row(name, runs[name], naive, raw))
    print()


# ---- the receiver's own ceiling -------------------------------------------------------


def _batches(count: int, size: int, prefix: str) -> list[bytes]:
    """``count`` serialized batch requests of ``size`` distinct events over 20 executions."""
    from otel_stigmer._wire import encode_batch  # noqa: PLC0415
    from otel_stigmer.events import (  # noqa: PLC0415
        EventType,
        Status,
        new_task_progress_event,
    )

    requests = []
    sequence = 0
    for _ in range(count):
        payloads = []
        for _ in range(size):
            sequence += 1
            event = new_task_progress_event(
                f"{prefix}-{sequence % _EXECUTIONS}",
                EventType.TASK_COMPLETED,
                "bench",
                "step",
                Status.COMPLETED,
                "",
                sequence,
            )
            payloads.append(event.SerializeToString(deterministic=True))
        requests.append(encode_batch(payloads))
    return requests


def feed(params: dict[str, Any]) -> Result:
    """Feeder process: send pre-serialized batches with ``in_flight`` calls outstanding."""
    import grpc  # noqa: PLC0415

    requests = _batches(int(params["batches"]), int(params["size"]), params["prefix"])
    channel = grpc.insecure_channel(params["endpoint"])
    send = channel.unary_unary(_BATCH_METHOD, request_serializer=None, response_deserializer=None)
    metadata = (("authorization", f"Bearer {API_KEY}"),)
    send(requests[0], metadata=metadata, timeout=30)  # connect before the clock starts
    slots = threading.Semaphore(int(params["in_flight"]))
    errors: list[BaseException] = []

    def done(future: Any) -> None:
        if future.exception() is not None:
            errors.append(future.exception())
        slots.release()

    cpu = time.process_time_ns()
    start = time.monotonic_ns()
    for request in requests[1:]:
        slots.acquire()
        send.future(request, metadata=metadata, timeout=60).add_done_callback(done)
    for _ in range(int(params["in_flight"])):
        slots.acquire()
    channel.close()
    return {
        "start_ns": start,
        "process_cpu_ns": time.process_time_ns() - cpu,
        "errors": len(errors),
    }


def _store_alone(batches: int, size: int) -> float:
    """Events/s of ``EventStore.add`` with pre-parsed batches, in this process."""
    from otel_stigmer.events import ReportProgressBatchRequest  # noqa: PLC0415
    from otel_stigmer.server.store import EventStore  # noqa: PLC0415

    requests = [
        ReportProgressBatchRequest.FromString(r).events for r in _batches(batches, size, "alone")
    ]
    with tempfile.TemporaryDirectory() as scratch:
        store = EventStore(os.path.join(scratch, "events.db"))
        store.add(requests[0])
        cpu = time.process_time_ns()
        for request in requests[1:]:
            store.add(request)
        spent = time.process_time_ns() - cpu
        store.close()
    return (batches - 1) * size / (spent / 1e9)


def _feed_run(
    receiver: ReceiverProcess, tag: str, size: int, feeders: int, per_feeder: int, in_flight: int
) -> Result:
    params = [
        {
            "batches": per_feeder,
            "size": size,
            "in_flight": in_flight,
            "endpoint": receiver.endpoint,
            "prefix": f"feed-{tag}-{n}-{uuid.uuid4().hex[:6]}",
        }
        for n in range(feeders)
    ]

    def work() -> Result:
        results: list[Result] = [{}] * len(params)

        def one(index: int) -> None:
            results[index] = _run("benchmarks.receiver_load", {"feed": params[index]})

        threads = [threading.Thread(target=one, args=(n,)) for n in range(len(params))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {
            "start_ns": min(r["start_ns"] for r in results),
            "process_cpu_ns": sum(r["process_cpu_ns"] for r in results),
        }

    # Each feeder's first batch is stored before its clock starts (a warm-up call).
    return _measured(receiver, feeders * per_feeder * size, work, warmup=feeders * size)


def ceiling(
    events: int, size: int, feeders: int, in_flight: int, reps: int, against: Sequence[str]
) -> None:
    """The receiver fed as fast as raw clients can send pre-serialized batches."""
    per_feeder = events // feeders // size + 1
    runs: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        libraries: dict[str, Path | None] = {"this": None}
        for index, revision in enumerate(against):
            libraries[revision] = _library_at(revision, Path(scratch) / str(index))
        receivers = {
            label: ReceiverProcess("stigmer", library=None if lib is None else str(lib)).start()
            for label, lib in libraries.items()
        }
        try:
            for rep in range(reps):
                for label, receiver in receivers.items():
                    runs.setdefault(label, []).append(
                        _feed_run(receiver, f"{rep}", size, feeders, per_feeder, in_flight)
                    )
        finally:
            for receiver in receivers.values():
                receiver.stop()
    print(
        f"#### The receiver's batch ceiling: {feeders} raw feeder process(es), {in_flight} "
        f"calls in flight each, batches of {size}, {per_feeder * feeders * size:,} events, "
        f"{reps} rep(s), medians"
    )
    print()
    print(
        "| receiver | events/s stored [wall] | receiver CPU us/event [CPU] "
        "| events/s one receiver CPU can store [derived] | commits/batch "
        "| store call CPU / wall us | calls in store mean / max | feeders' CPU us/event | lost |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, done in runs.items():

        def med(key: str, done: list[Result] = done) -> float:
            return float(statistics.median(r[key] for r in done))

        print(
            f"| receiver@{label} | {med('rate'):,.0f} | {med('receiver_cpu_us'):.1f} "
            f"| {1e6 / med('receiver_cpu_us'):,.0f} | {med('commits_per_event') * size:.2f} "
            f"| {med('add_cpu_us'):.0f} / {med('add_wall_us'):.0f} "
            f"| {med('in_add_mean'):.1f} / {max(r['in_add_max'] for r in done)} "
            f"| {med('producer_cpu_us'):.1f} | {sum(r['expected'] - r['events'] for r in done)} |"
        )
    alone = statistics.median(_store_alone(min(200, per_feeder), size) for _ in range(reps))
    print()
    print(
        f"Store alone (EventStore.add of parsed batches, no gRPC, this revision) [CPU]: "
        f"{alone:,.0f} events/s"
    )
    print()


def main(argv: list[str] | None = None) -> int:
    """Run the sections asked for and print their tables."""
    args_in = sys.argv[1:] if argv is None else argv
    if args_in and args_in[0].startswith("{"):
        request = json.loads(args_in[0])
        sys.stdout.write(json.dumps(feed(request["feed"])) + "\n")
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.receiver_load")
    parser.add_argument("--sections", default="unary,ceiling")
    parser.add_argument("--events", type=int, default=4_000, help="events per unary burst")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--against", action="append", default=[], metavar="REV")
    parser.add_argument("--ceiling-events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100, help="events per batch (ceiling)")
    parser.add_argument("--feeders", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args(args_in)
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    sections = args.sections.split(",")
    if "unary" in sections:
        unary(args.events, args.reps, args.against)
    if "ceiling" in sections:
        ceiling(
            args.ceiling_events, args.batch, args.feeders, args.in_flight, args.reps, args.against
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
