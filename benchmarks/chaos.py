"""Chaos run of the spool: a 100k-event burst, SIGKILLs, receiver restarts, 30 % UNAVAILABLE.

``python -m benchmarks.chaos [--seed N] [--kills 5] [--workflows 10000]``

One runner process at a time ends workflows of ten events as fast as it can, with
``STIGMER_SPOOL_PATH`` set, against the reference receiver whose fault injector fails a
seeded 30 % of calls with UNAVAILABLE. The runner is killed with SIGKILL at ``--kills``
random moments and started again with the same spool, going on from the next workflow;
the receiver is stopped and restarted during the first and third runs. The last runner
ends the burst and flushes; a final start drains the spool. Counted at the receiver:
events of workflows that had ended before a kill yet never arrived (to compare with the
stated bound, two unspooled windows per kill) and events stored twice.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from otel_stigmer.delivery import DEFAULT_UNSPOOLED_WINDOW
from otel_stigmer.server.faults import Fault, FaultInjector
from otel_stigmer.testing import StigmerTestServer

_ROOT = Path(__file__).resolve().parent.parent
_CHILD = str(_ROOT / "tests" / "reliability" / "child_burst.py")
_EVENTS_PER_WORKFLOW = 10
_KEY = "chaos-benchmark-key-0123456789"


class RandomUnavailable(FaultInjector):
    """Fails a seeded share of calls with UNAVAILABLE."""

    def __init__(self, ratio: float, seed: int) -> None:
        super().__init__()
        self._ratio = ratio
        self._rng = random.Random(seed)
        self.injected = 0

    def next_fault(self) -> Fault | None:
        """The configured faults first, then ``ratio`` of the calls."""
        fault = super().next_fault()
        if fault is None and self._rng.random() < self._ratio:
            self.injected += 1
            return Fault(grpc.StatusCode.UNAVAILABLE, "injected chaos fault")
        return fault


@dataclass
class Runner:
    """One runner process and the workflow numbers it printed as ended."""

    process: subprocess.Popen[str]
    ended: list[int] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    flushed: bool | None = None

    @classmethod
    def start(cls, env: dict[str, str], first: int, workflows: int) -> Runner:
        """Start a burst of ``workflows`` from number ``first``."""
        process = subprocess.Popen(
            [sys.executable, _CHILD, "burst", str(first), str(workflows)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        runner = cls(process)
        threading.Thread(target=runner._read, daemon=True).start()
        return runner

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            text = line.strip()
            if text.isdigit():
                self.ended.append(int(text))
            elif text == "done":
                self.done.set()
            elif text.startswith("{"):
                self.flushed = '"flushed": true' in text
        self.done.set()


def run(seed: int, kills: int, workflows: int) -> dict[str, float]:
    """Run the chaos scenario; return its figures."""
    rng = random.Random(seed)
    faults = RandomUnavailable(0.3, seed)
    spool = Path(tempfile.mkdtemp(prefix="stigmer-chaos-")) / "spool.db"
    server = StigmerTestServer(api_key=_KEY)
    server.server.faults = faults
    ended: set[int] = set()
    kill_times: list[float] = []
    started = time.monotonic()
    with server:
        env = {
            **os.environ,
            "PYTHONPATH": str(_ROOT),
            **server.env(),
            "STIGMER_SPOOL_PATH": str(spool),
        }
        next_number = 0
        for run_index in range(kills + 1):
            runner = Runner.start(env, next_number, workflows - next_number)
            last = run_index == kills
            if run_index in (0, 2):  # a receiver restart in the middle of this run
                time.sleep(rng.uniform(0.5, 1.5))
                server.stop(grace=0)
                time.sleep(rng.uniform(0.2, 1.0))
                server.restart()
            if last:
                runner.done.wait(600)
                assert runner.process.stdin is not None
                runner.process.stdin.write("\n")
                runner.process.stdin.flush()
                runner.process.wait(300)
            else:
                moment = rng.uniform(0.5, 4.0)
                kill_times.append(moment)
                runner.done.wait(moment)
                runner.process.send_signal(signal.SIGKILL)
                runner.process.wait(60)
            time.sleep(0.2)  # let the reader thread take the last lines
            ended.update(runner.ended)
            next_number = max(ended, default=-1) + 1
            if next_number >= workflows:
                break
        drain = subprocess.run(
            [sys.executable, _CHILD, "drain"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert drain.returncode == 0, drain.stderr[-2000:]
        events = server.events()
    elapsed = time.monotonic() - started
    per_execution = collections.Counter(e.workflow_execution_id for e in events)
    lost = sum(max(0, _EVENTS_PER_WORKFLOW - per_execution[f"burst-{number}"]) for number in ended)
    duplicates = len(events) - len({e.event_id for e in events})
    return {
        "workflows_ended": len(ended),
        "events_of_ended_spans": len(ended) * _EVENTS_PER_WORKFLOW,
        "kills": len(kill_times),
        "events_lost": lost,
        "bound": 2 * DEFAULT_UNSPOOLED_WINDOW * len(kill_times),
        "duplicates_stored": duplicates,
        "unavailable_injected": faults.injected,
        "seconds": round(elapsed, 1),
    }


def main() -> None:
    """Print the figures of one chaos run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--workflows", type=int, default=10_000)
    args = parser.parse_args()
    figures = run(args.seed, args.kills, args.workflows)
    for name, value in figures.items():
        print(f"{name:24} {value}")
    verdict = "met" if figures["events_lost"] <= figures["bound"] else "NOT met"
    print(f"bound {verdict}; duplicates {'none' if not figures['duplicates_stored'] else 'FOUND'}")


if __name__ == "__main__":
    main()
