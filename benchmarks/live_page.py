"""``python -m benchmarks.live_page [--events N] [--quick]``: the live page at a million events.

Measures, in headless Chromium against a receiver process holding ``--events`` stored
events (95% in runs of 50,000):

- ``/api/executions`` response time, and the longest single write of the gRPC side while
  the API serves reads (a write waiting behind a read shows here);
- page-ready: navigation to the newest runs listed, and to a 50,000-event run fully loaded;
- main-thread stalls: the longest task (Long Tasks API) and the longest gap between
  animation frames while loading, and while 1,000 events/s of a new run stream in.

The same is measured side by side for a baseline revision of the receiver (default: the
one before the paged store), at ``--baseline-events`` only, since its page needs minutes
per thousand events. Not part of the test suite; ``--quick`` uses 100,000 events and runs
of 10,000 for a check in about a minute. Needs /usr/bin/chromium and Playwright.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
BASELINE_REF = "c9092b0"
PROBE = """
window.__long = [];
window.__gap = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__long.push(entry.duration);
}).observe({ type: "longtask", buffered: true });
(() => {
  let last = performance.now();
  const frame = (now) => {
    window.__gap = Math.max(window.__gap, now - last);
    last = now;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
})();
"""


@dataclass
class Receiver:
    """A ``benchmarks.live_page_server`` process."""

    proc: subprocess.Popen[str]
    info: dict[str, Any] = field(default_factory=dict)

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"receiver process ended on {command!r}")
        return dict(json.loads(line))

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, BrokenPipeError, ValueError):
            self.ask("quit")
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_receiver(code_root: Path, db: Path, events: int, big: int) -> Receiver:
    """Start the receiver process with ``otel_stigmer`` imported from ``code_root``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(code_root), str(REPO)])
    command = [sys.executable, "-m", "benchmarks.live_page_server", "--db", str(db)]
    proc = subprocess.Popen(
        [*command, "--events", str(events), "--big", str(big)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        # Not the checkout: ``-m`` puts the working directory first on the path.
        cwd=db.parent,
    )
    receiver = Receiver(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the receiver process did not start")
    receiver.info = dict(json.loads(line))
    return receiver


def baseline_code(ref: str, into: Path) -> Path | None:
    """Extract ``otel_stigmer`` of git revision ``ref`` into ``into``; None when unavailable."""
    done = subprocess.run(
        ["git", "archive", ref, "otel_stigmer"], cwd=REPO, capture_output=True, check=False
    )
    if done.returncode != 0:
        print(f"baseline {ref} unavailable: {done.stderr.decode().strip()}", file=sys.stderr)
        return None
    with tarfile.open(fileobj=BytesIO(done.stdout)) as archive:
        archive.extractall(into, filter="data")
    return into


def median_ms(receiver: Receiver, path: str, times: int) -> float:
    return statistics.median(float(receiver.ask(f"read {path}")["ms"]) for _ in range(times))


def _longest_write(receiver: Receiver, reads: list[str]) -> float:
    """The longest single write of a 1,000 events/s stream while ``reads`` are served."""
    receiver.ask("stream 1000 4")
    for path in reads:
        receiver.ask(f"read {path}")
    return float(receiver.ask("stats")["longest_add_ms"])


def measure_api(receiver: Receiver, big_run: str | None, *, rows: bool) -> dict[str, float]:
    """API response times, and the longest write while reads run beside a 1,000/s stream."""
    result = {"executions_ms": median_ms(receiver, "/api/executions", 5)}
    result["longest_write_no_reads_ms"] = _longest_write(receiver, [])
    result["longest_write_listing_runs_ms"] = _longest_write(receiver, ["/api/executions"] * 3)
    if big_run:
        events = f"/api/executions/{big_run}/events"
        if rows:
            result["big_run_rows_ms"] = median_ms(receiver, events + "?format=rows&limit=20000", 3)
            result["longest_write_loading_big_run_ms"] = _longest_write(
                receiver, [events + f"?format=rows&limit=20000&after={n}" for n in (0, 1)]
            )
        result["longest_write_full_json_of_big_run_ms"] = _longest_write(receiver, [events])
    return result


def _reset_probe(page: Any) -> None:
    page.evaluate("window.__long = []; window.__gap = 0")


def _stalls(page: Any) -> tuple[float, float]:
    longest = page.evaluate("Math.max(0, ...window.__long)")
    gap = page.evaluate("window.__gap")
    return float(longest), float(gap)


def measure_page(
    browser: Any, receiver: Receiver, *, new_page: bool, stream_seconds: float
) -> dict[str, float]:
    """Page-ready and stall figures in one fresh browser context."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_init_script(PROBE)
    page = context.new_page()
    page.set_default_timeout(600_000)
    result: dict[str, float] = {}
    url = str(receiver.info["url"])
    run_selector = '[data-testid="run"]' if new_page else 'li[data-testid="execution"]'
    try:
        page.goto(str(receiver.ask("login")["link"]))  # logs in and loads the page
        page.goto(url)
        page.wait_for_selector(run_selector, timeout=120_000)
        result["runs_listed_ms"] = float(page.evaluate("performance.now()"))
        big_runs = receiver.info.get("big_runs") or []
        if new_page and big_runs:
            big = str(big_runs[-1])
            page.goto(url + "#/runs/" + big)
            page.reload()
            page.wait_for_selector(f'body[data-run-ready="{big}"]')
            result["big_run_ready_ms"] = float(page.evaluate("performance.now()"))
            result["big_run_longest_task_ms"], result["big_run_longest_frame_gap_ms"] = _stalls(
                page
            )
        else:
            # The old page replays every stored event; its stalls meanwhile are the figure.
            time.sleep(stream_seconds)
            result["load_longest_task_ms"], result["load_longest_frame_gap_ms"] = _stalls(page)
        _reset_probe(page)
        live = str(receiver.ask(f"stream 1000 {stream_seconds}")["execution_id"])
        if new_page:
            page.goto(url + "#/runs/" + live)
        time.sleep(stream_seconds + 1)
        receiver.ask("stats")
        result["stream_longest_task_ms"], result["stream_longest_frame_gap_ms"] = _stalls(page)
        long_tasks = page.evaluate("window.__long.filter((d) => d > 100).length")
        result["stream_tasks_over_100ms"] = float(long_tasks)
        if new_page:
            shown = page.evaluate(
                f'document.body.getAttribute("data-run-ready") === {json.dumps(live)}'
            )
            result["stream_run_loaded"] = 1.0 if shown else 0.0
    finally:
        context.close()
    return result


def run_target(
    label: str, code_root: Path, events: int, big: int, *, new_page: bool, stream_s: float
) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional

    with tempfile.TemporaryDirectory(prefix="live-page-bench-") as tmp:
        began = time.monotonic()
        receiver = start_receiver(code_root, Path(tmp) / "events.db", events, big)
        print(
            f"[{label}: {receiver.info['stored']:,} events stored in "
            f"{time.monotonic() - began:.0f} s]",
            file=sys.stderr,
            flush=True,
        )
        try:
            big_runs = receiver.info.get("big_runs") or []
            result: dict[str, Any] = {
                "events": receiver.info["stored"],
                "load_average_1min": os.getloadavg()[0],
            }
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
                )
                try:
                    result.update(
                        measure_page(browser, receiver, new_page=new_page, stream_seconds=stream_s)
                    )
                finally:
                    browser.close()
            big_run = str(big_runs[-1]) if big_runs else None
            result.update(measure_api(receiver, big_run, rows=new_page))
        finally:
            receiver.close()
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per figure, with ratios to the baseline."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.live_page")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=50_000, help="events of each big run")
    parser.add_argument("--baseline-events", type=int, default=1_000)
    parser.add_argument("--baseline-ref", default=BASELINE_REF)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--stream-seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="100,000 events, runs of 10,000")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.big, args.baseline_events, args.stream_seconds = 100_000, 10_000, 300, 4
    results: dict[str, Any] = {}
    results["current, at baseline size"] = run_target(
        "current, small",
        REPO,
        args.baseline_events,
        100,
        new_page=True,
        stream_s=args.stream_seconds,
    )
    if not args.no_baseline:
        with tempfile.TemporaryDirectory(prefix="live-page-baseline-") as tmp:
            root = baseline_code(args.baseline_ref, Path(tmp))
            if root is not None:
                # Its page redraws everything per event: a shorter stream keeps the run
                # within minutes (its stalls only grow with a longer one).
                results[f"baseline {args.baseline_ref}, at baseline size"] = run_target(
                    "baseline, small",
                    root,
                    args.baseline_events,
                    100,
                    new_page=False,
                    stream_s=min(args.stream_seconds, 3.0),
                )
    results["current, full size"] = run_target(
        "current, full", REPO, args.events, args.big, new_page=True, stream_s=args.stream_seconds
    )
    print(f"load average after the run: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for label, figures in results.items():
        print(f"\n{label}:")
        for name, value in figures.items():
            print(f"  {name:<34} {value:>12,.1f}")
    small = results["current, at baseline size"]
    old = results.get(f"baseline {args.baseline_ref}, at baseline size")
    if old:
        print("\nratios, baseline / current at the baseline size:")
        for name in (
            "executions_ms",
            "runs_listed_ms",
            "stream_longest_task_ms",
            "stream_longest_frame_gap_ms",
            "longest_write_listing_runs_ms",
        ):
            if name in old and name in small and small[name]:
                print(f"  {name:<34} {old[name] / small[name]:>10.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
