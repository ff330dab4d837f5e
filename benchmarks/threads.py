"""Per-thread accounting that needs no profiler: CPU time of every OS thread, GC by thread.

Both measures are robust to a loaded machine: a thread's CPU time counts only the time the
thread itself ran, and a collection is charged to the thread that triggered it (the one
whose allocation crossed the threshold), whatever else the machine was doing.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GcMeter", "thread_cpu_ns"]

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _thread_names() -> dict[int, str]:
    names: dict[int, str] = {}
    for thread in threading.enumerate():
        if thread.native_id is not None:
            names[thread.native_id] = thread.name
    return names


def thread_cpu_ns() -> dict[str, int]:
    """CPU time (user + system) of every OS thread of this process, by thread name.

    Python threads are named by their ``threading`` name; native threads (gRPC's) by the
    kernel's ``comm``. Threads that share a name are added up. Resolution is one clock
    tick (10 ms), so compare totals over seconds, not single calls.
    """
    names = _thread_names()
    totals: dict[str, int] = {}
    base = f"/proc/{os.getpid()}/task"
    for tid in os.listdir(base):
        try:
            with open(f"{base}/{tid}/stat") as stat:
                text = stat.read()
        except OSError:
            continue  # the thread ended meanwhile
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        name = names.get(int(tid), f"native:{comm}")
        totals[name] = totals.get(name, 0) + ticks * _TICK_NS
    return totals


@dataclass
class _ThreadGc:
    collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    wall_ns: int = 0
    cpu_ns: int = 0
    collected: int = 0


class GcMeter:
    """Counts collections per generation and times them, per triggering thread."""

    def __init__(self) -> None:
        self._by_thread: dict[str, _ThreadGc] = {}
        self._started: dict[int, tuple[int, int]] = {}

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        ident = threading.get_ident()
        if phase == "start":
            self._started[ident] = (time.perf_counter_ns(), time.thread_time_ns())
            return
        began = self._started.pop(ident, None)
        if began is None:
            return
        name = threading.current_thread().name
        entry = self._by_thread.setdefault(name, _ThreadGc())
        entry.collections[int(info["generation"])] += 1
        entry.wall_ns += time.perf_counter_ns() - began[0]
        entry.cpu_ns += time.thread_time_ns() - began[1]
        entry.collected += int(info.get("collected", 0))

    def __enter__(self) -> GcMeter:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``{thread name: {collections: [gen0, gen1, gen2], wall_ns, cpu_ns, collected}}``."""
        return {name: dict(entry.__dict__) for name, entry in self._by_thread.items()}
