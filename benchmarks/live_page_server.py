"""The receiver side of the live-page benchmark, in its own process.

``python -m benchmarks.live_page_server --db FILE --events N`` fills ``FILE`` with about
``N`` events (95% in big runs of ``--big`` events, default 50,000, the rest in runs of 8),
serves the live page, and then obeys one command per line on stdin:

- ``login``: print a one-time login link;
- ``stream RATE SECONDS``: store RATE events per second of a new running execution, in
  batches every 10 ms, for SECONDS; print its id first;
- ``read PATH``: GET PATH from the page's own API while the writer runs;
- ``stats``: print the longest time one ``store.add`` took since the last ``stats`` (a
  write waiting behind a read shows here) and how many writes there were;
- ``quit``.

It uses only what every version of the receiver has (``EventStore.add``,
``LiveHttpServer``), so the benchmark runs it once with this checkout and once with an
older one, side by side.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from otel_stigmer.events import WorkflowProgressEvent
from otel_stigmer.server.auth import BearerKeyAuth
from otel_stigmer.server.http import LiveHttpServer
from otel_stigmer.server.store import EventStore

KEY = "live-page-benchmark-key-7d01"
BIG_RUN_EVENTS = 50_000
SMALL_RUN_EVENTS = 8
TASK_NAMES = [f"step-{n:02d}" for n in range(10)]
EPOCH_MS = 1_700_000_000_000


def _event(
    execution_id: str, seq: int, ts: int, event_type: str, status: str, **fields: object
) -> WorkflowProgressEvent:
    return WorkflowProgressEvent(
        workflow_execution_id=execution_id,
        event_type=event_type,
        status=status,
        timestamp_ms=ts,
        sequence_number=seq,
        event_id=f"{execution_id}.{seq}",
        **fields,  # type: ignore[arg-type]
    )


def run_events(
    execution_id: str, size: int, start_ms: int, *, names: list[str], end: bool = True
) -> Iterator[WorkflowProgressEvent]:
    """One workflow of about ``size`` events: calls of ``names`` in turn, one in ten retried."""
    workflow = "bulk-import" if size > SMALL_RUN_EVENTS else "small-job"
    seq = 0
    ts = start_ms

    def next_event(event_type: str, status: str, **fields: object) -> WorkflowProgressEvent:
        nonlocal seq, ts
        seq += 1
        ts += 3
        return _event(execution_id, seq, ts, event_type, status, workflow_name=workflow, **fields)

    yield next_event("workflow_started", "running")
    call = 0
    while seq < size - 5:
        name = names[call % len(names)]
        instance = f"{execution_id}-call-{call}"
        task = {"task_name": name, "task_instance_id": instance}
        if call % 10 == 9:
            yield next_event("task_started", "running", attempt=1, **task)
            yield next_event(
                "task_retry", "running", attempt=1, message="timed out, retrying", **task
            )
            yield next_event("task_started", "running", attempt=2, **task)
            yield next_event("task_completed", "completed", attempt=2, **task)
        else:
            yield next_event("task_started", "running", **task)
            if size > SMALL_RUN_EVENTS:
                yield next_event(
                    "task_progress", "running", task_progress=50, message="half", **task
                )
            yield next_event("task_completed", "completed", **task)
        call += 1
    if end:
        yield next_event("workflow_completed", "completed")


def fill(store: EventStore, total: int, big_size: int) -> dict[str, object]:
    """Store about ``total`` events: 95% in runs of ``big_size``, the rest in runs of 8."""
    big = max(1, total * 95 // 100 // big_size)
    small = max(1, (total - big * big_size) // SMALL_RUN_EVENTS)
    stride = max(1, (big + small) // big)
    began = time.monotonic()
    batch: list[WorkflowProgressEvent] = []
    big_ids: list[str] = []
    for n in range(big + small):
        is_big = n % stride == stride - 1 and len(big_ids) < big
        execution_id = f"{'big' if is_big else 'small'}-{n:06d}"
        size = big_size if is_big else SMALL_RUN_EVENTS
        if is_big:
            big_ids.append(execution_id)
        for event in run_events(execution_id, size, EPOCH_MS + n * 60_000, names=TASK_NAMES):
            batch.append(event)
            if len(batch) >= 5_000:
                store.add(batch)
                batch = []
    if batch:
        store.add(batch)
    return {
        "fill_s": time.monotonic() - began,
        "big_runs": big_ids,
        "small_runs": small,
    }


class Writer:
    """Stores a live run at a steady rate and records how long each ``add`` took."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.longest = 0.0
        self.writes = 0

    def stream(self, execution_id: str, rate: int, seconds: float) -> None:
        names = [f"live-{n:03d}" for n in range(100)]
        events = run_events(
            execution_id, int(rate * seconds) + 10, int(time.time() * 1000), names=names
        )
        per_batch = max(1, rate // 100)
        deadline = time.monotonic() + seconds
        tick = time.monotonic()
        while time.monotonic() < deadline:
            batch = list(itertools.islice(events, per_batch))
            now_ms = int(time.time() * 1000)
            for event in batch:
                event.timestamp_ms = now_ms
            began = time.monotonic()
            self.store.add(batch)
            took = time.monotonic() - began
            with self.lock:
                self.longest = max(self.longest, took)
                self.writes += 1
            tick += 0.01
            time.sleep(max(0.0, tick - time.monotonic()))

    def stats(self) -> dict[str, float]:
        with self.lock:
            result = {"longest_add_ms": self.longest * 1000, "writes": self.writes}
            self.longest, self.writes = 0.0, 0
        return result


def main() -> int:
    """Fill, serve and obey commands until ``quit``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.live_page_server")
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--big", type=int, default=BIG_RUN_EVENTS, help="events per big run")
    args = parser.parse_args()
    store = EventStore(args.db)
    info: dict[str, object] = fill(store, args.events, args.big)
    info["stored"] = store.last_rowid
    server = LiveHttpServer(store, BearerKeyAuth([KEY]), port=0).start()
    writer = Writer(store)
    info["url"] = server.url
    print(json.dumps(info), flush=True)
    threads: list[threading.Thread] = []
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "login":
            print(json.dumps({"link": server.login_url()}), flush=True)
        elif command == "stream":
            execution_id = f"live-{time.monotonic_ns()}"
            rate, seconds = int(rest[0]), float(rest[1])
            thread = threading.Thread(target=writer.stream, args=(execution_id, rate, seconds))
            thread.start()
            threads.append(thread)
            print(json.dumps({"execution_id": execution_id}), flush=True)
        elif command == "read":
            request = urllib.request.Request(
                server.url.rstrip("/") + rest[0], headers={"Authorization": f"Bearer {KEY}"}
            )
            began = time.monotonic()
            with urllib.request.urlopen(request, timeout=600) as response:
                size = len(response.read())
            print(json.dumps({"ms": (time.monotonic() - began) * 1000, "bytes": size}), flush=True)
        elif command == "stats":
            for thread in threads:
                thread.join()
            threads.clear()
            print(json.dumps(writer.stats()), flush=True)
        elif command == "quit":
            break
    server.stop()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
