"""The five benchmark sections: each starts its receivers, runs workers, returns table rows."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.receivers import ReceiverProcess, ReceiverStats
from benchmarks.report import Row, goal_at_least, goal_at_most
from benchmarks.stats import Summary, percentile, ratio_summary, summarize

__all__ = ["SECTIONS", "Sizes", "run_worker"]

_ROOT = Path(__file__).resolve().parent.parent
_WORKER_TIMEOUT_S = 600.0
#: p99 liveness goals by events/s: the first round's, and this round's at 10k events/s.
_LIVENESS_P99_GOALS_MS = {1_000: 50.0, 10_000: 10.0}
#: Executions open at once in the unary-only burst (the goal's setting).
_UNARY_EXECUTIONS = 20


@dataclass(frozen=True)
class Sizes:
    """How much work each section does."""

    reps: int = 3
    hot_calls: int = 30_000
    burst_events: int = 100_000
    #: Events of the unary-only and naive bursts, which run at 2-4k events/s.
    slow_burst_events: int = 100_000
    slow_burst_reps: int = 1
    liveness_rates: tuple[int, ...] = (100, 1_000, 10_000)
    liveness_s: float = 3.0
    otlp_liveness: bool = True
    memory_chunk_events: int = 100_000
    memory_chunks: int = 2
    scaling_events: int = 40_000
    scaling_executions: tuple[int, ...] = (1, 10, 100, 1_000)
    scaling_threads: tuple[int, ...] = (1, 4, 16)
    scaling_rate: int = 1_000
    scaling_liveness_s: float = 2.0


FULL = Sizes()
QUICK = Sizes(
    reps=1,
    hot_calls=5_000,
    burst_events=20_000,
    slow_burst_events=4_000,
    liveness_s=1.0,
    # The standard pipeline's liveness runs wait out its 5 s schedule delay: full run only.
    otlp_liveness=False,
    # One chunk below the default bound: the per-event figures, not the bound's behaviour.
    memory_chunk_events=60_000,
    memory_chunks=1,
    scaling_events=8_000,
    scaling_liveness_s=1.0,
)

Params = dict[str, Any]
Result = dict[str, Any]


def run_worker(params: Params) -> Result:
    """Run one measurement in a fresh interpreter and return its JSON result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.worker", json.dumps(params)],
        capture_output=True,
        text=True,
        cwd=_ROOT,
        env=env,
        timeout=_WORKER_TIMEOUT_S,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark worker {params.get('scenario')} failed ({done.returncode}):\n"
            + done.stderr[-4000:]
        )
    result: Result = json.loads(lines[-1])
    return result


def _us(ns: float, calls: int) -> float:
    return ns / calls / 1_000


def _fmt(summary: Summary, digits: int = 1, unit: str = "") -> str:
    return summary.format(digits, unit=unit)


def _ratio(summary: Summary) -> str:
    return summary.format(2, unit="x")


# ---- 1. hot path ----------------------------------------------------------------------


def hot_path(sizes: Sizes, raw: dict[str, Any]) -> list[Row]:
    """Time per decorated task call on the calling thread, and until the last item is stored."""
    rows: list[Row] = []
    pipelines = ("bare", "noop", "otlp", "stigmer", "process")
    with ReceiverProcess("stigmer") as stigmer, ReceiverProcess("otlp") as otlp:
        receivers = {"otlp": otlp, "stigmer": stigmer, "process": stigmer}
        for attrs in (False, True):
            variant = "attrs" if attrs else "plain"
            results: dict[str, list[Result]] = {name: [] for name in pipelines}
            for _ in range(sizes.reps):
                # Interleaved, so slow phases of a noisy machine hit every pipeline alike.
                for name in pipelines:
                    receiver = receivers.get(name)
                    if receiver is not None:
                        receiver.reset()
                    result = run_worker(
                        {
                            "scenario": "hotpath",
                            "pipeline": name,
                            "attrs": attrs,
                            "calls": sizes.hot_calls,
                            "endpoint": receiver.endpoint if receiver else "",
                        }
                    )
                    if receiver is not None:
                        # Charge the drain: until the receiver stored the last item.
                        result["stored_last_ns"] = receiver.stats().last_ns
                    results[name].append(result)
            raw[f"hot_path_{variant}"] = results
            rows.extend(_hot_path_rows(variant, results))
            rows.extend(_process_hot_path_rows(variant, results))
    return rows


def _until_stored_us(result: Result) -> float:
    """Loop start to the last item stored at the receiver (or to flush), per task call."""
    end = max(result.get("stored_last_ns", 0), result.get("flushed_ns", 0))
    return _us(end - result["start_ns"], result["calls"]) if "start_ns" in result else math.nan


def _hot_path_rows(variant: str, results: dict[str, list[Result]]) -> list[Row]:
    def wall(name: str) -> list[float]:
        return [_us(r["wall_ns"], r["calls"]) for r in results[name]]

    def cpu(name: str) -> list[float]:
        return [_us(r["cpu_ns"], r["calls"]) for r in results[name]]

    def stored(name: str) -> list[float]:
        return [_until_stored_us(r) for r in results[name]]

    def drops(name: str) -> str:
        lost = [r["dropped"] / r["produced"] for r in results[name] if r.get("produced")]
        return f"; dropped {summarize([100 * x for x in lost]).format(1)}% of spans"

    def with_drain(name: str) -> str:
        return f"; until the last is stored {_fmt(summarize(stored(name)))}"

    section = f"1. hot path, {variant} (us per task call)"
    vs_otlp = ratio_summary(wall("stigmer"), wall("otlp"))
    vs_noop = ratio_summary(wall("stigmer"), wall("noop"))
    drained_vs_otlp = ratio_summary(stored("stigmer"), stored("otlp"))
    drained_vs_noop = ratio_summary(stored("stigmer"), wall("noop"))
    goal_otlp = variant == "attrs"  # the goal: <= 1.0x OTLP for attrs, <= 1.5x no-op for plain
    return [
        Row(section, "(a) bare function", _fmt(summarize(wall("bare")), 2)),
        Row(
            section,
            "(c) @task, no-op processor",
            _fmt(summarize(wall("noop"))) + f"; caller CPU {_fmt(summarize(cpu('noop')))}",
        ),
        Row(
            section,
            "(b) @task, BatchSpanProcessor + OTLP gRPC",
            _fmt(summarize(wall("otlp")))
            + f"; caller CPU {_fmt(summarize(cpu('otlp')))}"
            + with_drain("otlp")
            + drops("otlp"),
        ),
        Row(
            section,
            "@task, Stigmer processor",
            _fmt(summarize(wall("stigmer")))
            + f"; caller CPU {_fmt(summarize(cpu('stigmer')))}"
            + with_drain("stigmer")
            + drops("stigmer"),
            f"{_ratio(vs_otlp)} of (b), loop only",
            "<= 1.0x (b)" if goal_otlp else "",
            goal_at_most(vs_otlp.median, 1.0) if goal_otlp else "",
        ),
        Row(
            section,
            "@task, Stigmer processor, drain charged",
            "",
            f"{_ratio(drained_vs_otlp)} of (b), both until stored",
            "<= 1.0x (b)" if goal_otlp else "",
            goal_at_most(drained_vs_otlp.median, 1.0) if goal_otlp else "",
        ),
        Row(
            section,
            "caller CPU only (robust to load; a lower bound of the wall ratios)",
            "",
            f"{_ratio(ratio_summary(cpu('stigmer'), cpu('noop')))} of (c), "
            f"{_ratio(ratio_summary(cpu('stigmer'), cpu('otlp')))} of (b)",
        ),
        Row(
            section,
            "@task, Stigmer processor",
            "",
            f"{_ratio(vs_noop)} of (c), loop only",
            "" if goal_otlp else "<= 1.5x (c)",
            "" if goal_otlp else goal_at_most(vs_noop.median, 1.5),
        ),
        Row(
            section,
            "@task, Stigmer processor, drain charged",
            "",
            f"{_ratio(drained_vs_noop)} of (c)",
            "" if goal_otlp else "<= 1.5x (c)",
            "" if goal_otlp else goal_at_most(drained_vs_noop.median, 1.5),
        ),
    ]


def _process_hot_path_rows(variant: str, results: dict[str, list[Result]]) -> list[Row]:
    """The process sender (``STIGMER_SENDER=process``) against no-op, OTLP and in-process."""

    def per_call(name: str, key: str) -> list[float]:
        return [_us(r[key], r["calls"]) for r in results[name]]

    def stored(name: str) -> list[float]:
        return [_until_stored_us(r) for r in results[name]]

    section = f"1. hot path, {variant} (us per task call)"
    cpu = {name: per_call(name, "cpu_ns") for name in ("noop", "otlp", "stigmer", "process")}
    wall = {name: per_call(name, "wall_ns") for name in ("noop", "otlp", "stigmer", "process")}
    vs_noop = ratio_summary(cpu["process"], cpu["noop"])
    lost = [100 * r["dropped"] / r["produced"] for r in results["process"] if r.get("produced")]
    child_rss = summarize([r.get("child_rss", 0) / (1024 * 1024) for r in results["process"]])
    goal_otlp = variant == "attrs"
    drained_vs_otlp = ratio_summary(stored("process"), stored("otlp"))
    return [
        Row(
            section,
            "@task, process sender (STIGMER_SENDER=process)",
            _fmt(summarize(wall["process"]))
            + f"; caller CPU {_fmt(summarize(cpu['process']))}"
            + f"; until the last is stored {_fmt(summarize(stored('process')))}"
            + f"; dropped {summarize(lost).format(1)}% of spans",
            f"caller CPU {_ratio(vs_noop)} of (c)",
            "" if goal_otlp else "<= 1.5x (c)",
            "" if goal_otlp else goal_at_most(vs_noop.median, 1.5),
        ),
        Row(
            section,
            "process sender against the in-process sender",
            "",
            f"caller CPU {_ratio(ratio_summary(cpu['process'], cpu['stigmer']))}, "
            f"loop {_ratio(ratio_summary(wall['process'], wall['stigmer']))}, "
            f"until stored {_ratio(ratio_summary(stored('process'), stored('stigmer')))}",
        ),
        Row(
            section,
            "process sender against (b) OTLP",
            "",
            f"caller CPU {_ratio(ratio_summary(cpu['process'], cpu['otlp']))}, "
            f"loop {_ratio(ratio_summary(wall['process'], wall['otlp']))}, "
            f"until stored {_ratio(drained_vs_otlp)}",
            "<= 1.0x (b)" if goal_otlp else "",
            goal_at_most(drained_vs_otlp.median, 1.0) if goal_otlp else "",
        ),
        Row(
            section,
            "process sender: the child process (other core)",
            f"CPU {_fmt(summarize(per_call('process', 'child_cpu_ns')))} per task call "
            f"(loop and drain); RSS {_fmt(child_rss)} MiB",
        ),
    ]


# ---- 2. delivery throughput -------------------------------------------------------------


def _delivered_per_s(result: Result, stats: ReceiverStats) -> float:
    elapsed = (stats.last_ns - result["start_ns"]) / 1e9
    return stats.count / elapsed if elapsed > 0 and stats.count else 0.0


def _burst(receiver: ReceiverProcess, params: Params) -> tuple[float, int, Result]:
    receiver.reset()
    result = run_worker({"scenario": "burst", "endpoint": receiver.endpoint, **params})
    stats = receiver.stats()
    lost = max(int(result["dropped"]), int(result["produced"]) - stats.count)
    result["received"] = stats.count
    # Split the rate at the end of production: while the producer ran, and the backlog after.
    during = receiver.count_at(result["produce_end_ns"])
    result["received_while_producing"] = during
    result["received_last_ns"] = stats.last_ns
    return _delivered_per_s(result, stats), lost, result


def _phases(results: Sequence[Result]) -> str:
    """Producer time, and stored/s while producing and for the backlog after."""
    producing = [(r["produce_end_ns"] - r["start_ns"]) / 1e9 for r in results]
    during = [r["received_while_producing"] / s for r, s in zip(results, producing, strict=True)]
    after = [
        (r["received"] - r["received_while_producing"])
        / ((r["received_last_ns"] - r["produce_end_ns"]) / 1e9)
        for r in results
        if r["received_last_ns"] > r["produce_end_ns"]
        and r["received"] > r["received_while_producing"]
    ]
    text = (
        f"producing took {_fmt(summarize(producing), 2)} s, "
        f"{_fmt(summarize(during), 0)}/s stored meanwhile"
    )
    if after:
        text += f", backlog after at {_fmt(summarize(after), 0)}/s"
    return text


def throughput(sizes: Sizes, raw: dict[str, Any]) -> list[Row]:
    """Items per second stored by the receiver for one burst, with drops."""
    rates: dict[str, list[float]] = {}
    lost: dict[str, list[float]] = {}
    results: dict[str, list[Result]] = {}
    with (
        ReceiverProcess("stigmer") as batch,
        ReceiverProcess("stigmer", batch_enabled=False) as unary,
        ReceiverProcess("otlp") as otlp,
    ):
        half = sizes.burst_events // 2  # a task call reports two events
        plans: list[tuple[str, ReceiverProcess, Params, int]] = [
            ("stigmer", batch, {"pipeline": "stigmer", "calls": half}, sizes.reps),
            ("process", batch, {"pipeline": "process", "calls": half}, sizes.reps),
            ("otlp", otlp, {"pipeline": "otlp", "calls": sizes.burst_events}, sizes.reps),
            (
                "unary",
                unary,
                {
                    "pipeline": "stigmer",
                    "calls": sizes.slow_burst_events // 2,
                    "executions": _UNARY_EXECUTIONS,
                },
                sizes.slow_burst_reps,
            ),
            (
                "naive",
                batch,
                {"pipeline": "naive", "calls": sizes.slow_burst_events // 2},
                sizes.slow_burst_reps,
            ),
            (
                "raw",
                batch,
                {"pipeline": "raw", "calls": sizes.slow_burst_events // 2},
                sizes.slow_burst_reps,
            ),
        ]
        for rep in range(sizes.reps):
            for name, receiver, params, reps in plans:
                if rep >= reps:
                    continue
                rate, dropped, result = _burst(receiver, params)
                rates.setdefault(name, []).append(rate)
                lost.setdefault(name, []).append(dropped)
                results.setdefault(name, []).append(result)
    raw["throughput"] = results
    section = f"2. delivery throughput ({sizes.burst_events:,}-item burst, items/s stored)"

    def value(name: str, unit: str) -> str:
        size = results[name][0]["produced"]
        reps = len(rates[name])
        return (
            f"{_fmt(summarize(rates[name]), 0)} {unit}/s; lost {_fmt(summarize(lost[name]), 0)}"
            f" of {size:,} ({reps} rep{'s' if reps > 1 else ''}); {_phases(results[name])}"
        )

    # A task call is two Stigmer events but one OTLP span: compare task calls per second.
    calls_per_s = {name: [rate * _calls_per_item(name) for rate in rates[name]] for name in rates}
    ours = summarize(rates["stigmer"])
    vs_otlp = ratio_summary(calls_per_s["stigmer"], calls_per_s["otlp"])
    naive = summarize(rates["naive"]).median
    raw_client = summarize(rates["raw"]).median
    unary_rate = summarize(rates["unary"]).median

    def times(value: float, base: float) -> float:
        return value / base if base else float("nan")

    zero = summarize(lost["stigmer"])
    process = summarize(rates["process"])
    process_cpu = [r["child_cpu_ns"] / 1_000 / max(1, r["received"]) for r in results["process"]]
    per_call = (
        f"{_fmt(summarize(calls_per_s['stigmer']), 0)} task calls/s against "
        f"{_fmt(summarize(calls_per_s['otlp']), 0)} for OTLP"
    )
    return [
        Row(section, "standard pipeline (BSP defaults + OTLP), spans", value("otlp", "spans")),
        Row(
            section,
            "naive client (report_progress_with_retry per event)",
            value("naive", "events"),
        ),
        Row(
            section,
            "raw client (sequential stub.report_progress per event)",
            value("raw", "events"),
            f"naive is {times(naive, raw_client):.2f}x of raw",
        ),
        Row(
            section,
            "Stigmer pipeline, batch RPC",
            value("stigmer", "events"),
            "",
            ">= 50,000 events/s",
            goal_at_least(ours.median, 50_000),
        ),
        Row(
            section,
            "Stigmer pipeline, batch RPC, per task call",
            per_call,
            f"{_ratio(vs_otlp)} of OTLP per task call",
            ">= 3x OTLP",
            goal_at_least(vs_otlp.median, 3.0),
        ),
        Row(
            section,
            "Stigmer pipeline, batch RPC",
            "",
            f"{times(ours.median, naive):.1f}x of naive, "
            f"{times(ours.median, raw_client):.1f}x of raw",
            ">= 25x naive",
            goal_at_least(times(ours.median, naive), 25.0),
        ),
        Row(
            section,
            "process sender (STIGMER_SENDER=process), batch RPC",
            value("process", "events")
            + f"; the child's CPU {_fmt(summarize(process_cpu), 1)} us per event",
            f"{_ratio(ratio_summary(rates['process'], rates['stigmer']))} of in-process, "
            f"{_ratio(ratio_summary(calls_per_s['process'], calls_per_s['otlp']))} of OTLP "
            "per task call",
            ">= 50,000 events/s",
            goal_at_least(process.median, 50_000),
        ),
        Row(
            section,
            "Stigmer pipeline, batch RPC: burst with default settings",
            f"{zero.format(0)} lost",
            "",
            "zero drops",
            goal_at_most(zero.high, 0),
        ),
        Row(
            section,
            f"Stigmer pipeline, unary-only receiver, {_UNARY_EXECUTIONS} executions",
            value("unary", "events"),
            f"{times(unary_rate, naive):.2f}x of naive, "
            f"{times(unary_rate, raw_client):.2f}x of raw",
            ">= 2x naive",
            goal_at_least(times(unary_rate, naive), 2.0),
        ),
    ]


def _calls_per_item(name: str) -> float:
    """Task calls per stored item: OTLP stores one span per call, the others two events."""
    return 1.0 if name == "otlp" else 0.5


# ---- 3. liveness ------------------------------------------------------------------------


def _latencies_ms(starts: dict[str, int], arrivals: dict[str, int]) -> tuple[list[float], int]:
    found = [(arrivals[key] - t0) / 1e6 for key, t0 in starts.items() if key in arrivals]
    return found, len(starts) - len(found)


def _liveness_run(receiver: ReceiverProcess, params: Params) -> tuple[list[float], int, Result]:
    receiver.reset()
    result = run_worker({"scenario": "liveness", "endpoint": receiver.endpoint, **params})
    latencies, missing = _latencies_ms(result.pop("starts"), receiver.arrivals())
    return latencies, missing, result


def _latency_text(runs: Sequence[tuple[list[float], int, Result]]) -> str:
    """p50 and p99 over each run's spans; median (min-max) across runs."""
    p50 = summarize([percentile(latencies, 50) for latencies, _, _ in runs])
    p99 = summarize([percentile(latencies, 99) for latencies, _, _ in runs])
    spans = sum(len(latencies) for latencies, _, _ in runs)
    rate = summarize([result["achieved_events_per_s"] for _, _, result in runs]).median
    missing = sum(missing for _, missing, _ in runs)
    text = (
        f"p50 {p50.format(1)} ms, p99 {p99.format(1)} ms ({spans:,} spans in {len(runs)} "
        f"run{'s' if len(runs) > 1 else ''} at {rate:,.0f} events/s"
    )
    if missing:
        text += f"; {missing:,} never arrived"
    return text + ")"


def liveness(sizes: Sizes, raw: dict[str, Any]) -> list[Row]:
    """Time from span start to the stored ``*_started`` event, at paced rates."""
    rows: list[Row] = []
    section = "3. liveness (span start -> stored at receiver)"
    results: dict[str, list[Result]] = {}
    with ReceiverProcess("stigmer") as stigmer, ReceiverProcess("otlp") as otlp:
        for rate in sizes.liveness_rates:
            params: Params = {"events_per_s": rate, "duration_s": sizes.liveness_s}
            runs = [
                _liveness_run(stigmer, {"pipeline": "stigmer", **params}) for _ in range(sizes.reps)
            ]
            results[f"stigmer_{rate}"] = [
                {**result, "latencies_ms": latencies} for latencies, _, result in runs
            ]
            p99 = summarize([percentile(latencies, 99) for latencies, _, _ in runs]).median
            limit = _LIVENESS_P99_GOALS_MS.get(rate)
            rows.append(
                Row(
                    section,
                    f"Stigmer task_started at {rate:,} events/s",
                    _latency_text(runs),
                    "",
                    f"p99 <= {limit:g} ms" if limit else "",
                    goal_at_most(p99, limit) if limit else "",
                )
            )
            process_runs = [
                _liveness_run(stigmer, {"pipeline": "process", **params}) for _ in range(sizes.reps)
            ]
            results[f"process_{rate}"] = [
                {**result, "latencies_ms": latencies} for latencies, _, result in process_runs
            ]
            p99 = summarize([percentile(latencies, 99) for latencies, _, _ in process_runs]).median
            rows.append(
                Row(
                    section,
                    f"process sender task_started at {rate:,} events/s",
                    _latency_text(process_runs),
                    "",
                    f"p99 <= {limit:g} ms" if limit else "",
                    goal_at_most(p99, limit) if limit else "",
                )
            )
            if sizes.otlp_liveness:
                # One run: each waits out the standard pipeline's 5 s schedule delay.
                run = _liveness_run(otlp, {"pipeline": "otlp", **params})
                results[f"otlp_{rate}"] = [{**run[2], "latencies_ms": run[0]}]
                rows.append(
                    Row(
                        section,
                        f"standard pipeline, span (at its end) at {rate:,} events/s",
                        _latency_text([run]),
                    )
                )
    raw["liveness"] = results
    return rows


# ---- 4. memory --------------------------------------------------------------------------


def memory(sizes: Sizes, raw: dict[str, Any]) -> list[Row]:
    """RSS of a producer whose receiver is down."""
    result = run_worker(
        {
            "scenario": "memory",
            "chunk_events": sizes.memory_chunk_events,
            "chunks": sizes.memory_chunks,
        }
    )
    held = {
        variant: run_worker(
            {"scenario": "span_memory", "calls": sizes.memory_chunk_events // 4, "attrs": attrs}
        )
        for variant, attrs in (("plain", False), ("attrs", True))
    }
    pending = {
        variant: run_worker(
            {"scenario": "pending_memory", "calls": sizes.memory_chunk_events // 4, "attrs": attrs}
        )
        for variant, attrs in (("plain", False), ("attrs", True))
    }
    raw["memory"] = result
    raw["span_memory"] = held
    raw["pending_memory"] = pending
    section = "4. memory (receiver down)"
    first = result["samples"][0]
    last = result["samples"][-1]
    queued = first["queue_depth"] - result["depth_start"]
    per_event = (first["rss"] - result["rss_start"]) / queued if queued > 0 else float("nan")
    mib = 1024 * 1024
    bound = result["max_queue_size"]
    return [
        Row(
            section,
            f"RSS growth per queued event ({queued:,} undelivered)",
            f"{per_event:,.0f} B ({per_event * 100_000 / mib:,.1f} MiB per 100k events)",
            "",
            "<= 1 KiB per event",
            goal_at_most(per_event, 1024),
        ),
        Row(
            section,
            f"RSS at the default bound (max_queue_size {bound:,})",
            f"{last['rss'] / mib:,.1f} MiB holding {last['queue_depth']:,} events after "
            f"{last['produced']:,} produced, {last['dropped']:,} dropped (counted); "
            f"start {result['rss_start'] / mib:,.1f} MiB, "
            f"peak {result['peak_rss'] / mib:,.1f} MiB; "
            f"the sender took {last['settle_s']:,.1f} s after production to queue or drop "
            f"the last {sizes.memory_chunk_events:,}"
            + ("" if last["settled"] else " (still busy at the timeout)"),
            "",
            "documented",
            "met" if last["produced"] > bound else "n/a",
        ),
        *[
            Row(
                section,
                f"RSS per event waiting in the input queue, {variant} task (the sender "
                "stuck: records hold snapshots, not spans)",
                f"{r['rss_growth'] / max(1, r['events']):,.0f} B per event "
                f"({r['events']:,} events of {r['spans']:,} task calls waiting, "
                f"{r['dropped']:,} dropped)",
                "",
                "<= 1 KiB per event",
                goal_at_most(r["rss_growth"] / max(1, r["events"]), 1024),
            )
            for variant, r in held.items()
        ],
        *[
            Row(
                section,
                f"process sender: RSS per record waiting in the application, {variant} task "
                "(no sender process can start: the worst case)",
                f"{r['rss_growth'] / max(1, r['records']):,.0f} B per record, one event each "
                f"({r['records']:,} records of {r['spans']:,} task calls waiting, "
                f"{r['dropped']:,} dropped)",
                "",
                "<= 1 KiB per event",
                goal_at_most(r["rss_growth"] / max(1, r["records"]), 1024),
            )
            for variant, r in pending.items()
        ],
    ]


# ---- 5. scaling -------------------------------------------------------------------------


def scaling(sizes: Sizes, raw: dict[str, Any]) -> list[Row]:
    """Throughput and p99 liveness against concurrent executions and producer threads."""
    rows: list[Row] = []
    results: dict[str, Any] = {}
    section = "5. scaling (Stigmer, batch RPC)"
    points = [(e, 1) for e in sizes.scaling_executions] + [
        (t, t) for t in sizes.scaling_threads if t > 1
    ]
    with ReceiverProcess("stigmer") as receiver:
        for executions, threads in points:
            burst_rate, lost, burst = _burst(
                receiver,
                {
                    "pipeline": "stigmer",
                    "calls": sizes.scaling_events // 2,
                    "executions": executions,
                    "threads": threads,
                },
            )
            latencies, missing, live = _liveness_run(
                receiver,
                {
                    "pipeline": "stigmer",
                    "events_per_s": sizes.scaling_rate,
                    "duration_s": sizes.scaling_liveness_s,
                    "executions": executions,
                    "threads": threads,
                },
            )
            key = f"executions={executions},threads={threads}"
            results[key] = {"burst": burst, "liveness": live, "latencies_ms": latencies}
            label = (
                f"{executions:,} concurrent execution{'s' if executions > 1 else ''}, 1 thread"
                if threads == 1
                else f"{threads} producer threads, one execution each"
            )
            rows.append(
                Row(
                    section,
                    label,
                    f"{burst_rate:,.0f} events/s (lost {lost:,}); p99 liveness "
                    f"{percentile(latencies, 99):,.1f} ms at {sizes.scaling_rate:,} events/s"
                    + (f" ({missing:,} never arrived)" if missing else ""),
                )
            )
    raw["scaling"] = results
    return rows


SECTIONS: dict[str, Callable[[Sizes, dict[str, Any]], list[Row]]] = {
    "hotpath": hot_path,
    "throughput": throughput,
    "liveness": liveness,
    "memory": memory,
    "scaling": scaling,
}
