"""Where every microsecond of a task call goes: ``python -m benchmarks.profile``.

Two kinds of measurement, each in a fresh worker process per configuration, interleaved
within each repetition:

* **Unprofiled accounting** (robust to a loaded machine): per task call, the calling
  thread's wall and CPU time, the CPU of every other thread of the process (the sender,
  gRPC's native threads) read from ``/proc``, and garbage collection charged to the thread
  that triggered it (``gc.callbacks``). Configurations differ by one part each (bare
  function, SDK span alone, ``@task`` with a no-op processor, the Stigmer pipeline, the
  Stigmer pipeline with the collector off), so differences of caller CPU isolate the
  decorator, the SDK span, the processor's hooks and the collector.
* **Profiled shares**: cProfile with a per-thread CPU clock in every Python thread
  (the calling thread and every thread the pipeline starts), self time grouped by
  module. Profiling inflates absolute times, so shares are scaled back onto the
  unprofiled CPU time of the same thread.

Only public entry points are used (``configure``, ``@task``/``@workflow``, the reference
receiver), and functions are grouped by the file they live in, so the breakdown follows the
library's modules as they are named at the time of the run.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import inspect
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.receivers import API_KEY, ReceiverProcess
from benchmarks.stats import summarize
from benchmarks.threads import GcMeter, thread_cpu_ns

__all__ = ["main"]

_ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("bare", "sdk", "noop", "stigmer", "stigmer-gc-off", "process")
_WARMUP_CALLS = 2_000
_CALLER = "MainThread"
_EVENTS_PER_CALL = {"plain": 2, "attrs": 3}

Params = dict[str, Any]
Result = dict[str, Any]


# ---- worker side ------------------------------------------------------------------------


class _Installed:
    """The pipeline of one configuration on the global tracer provider."""

    def __init__(self, config: str, endpoint: str) -> None:
        from opentelemetry import trace  # noqa: PLC0415 - worker-only imports
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: PLC0415

        import otel_stigmer  # noqa: PLC0415

        self.provider = TracerProvider()
        self.pipeline: otel_stigmer.StigmerPipeline | None = None
        if config.startswith(("stigmer", "process")):
            # process: STIGMER_SENDER=process, the sender in a child process of its own.
            # Only when asked, so that revisions from before the option run too (--against).
            chosen: dict[str, Any] = {"sender": "process"} if config.startswith("process") else {}
            self.pipeline = otel_stigmer.configure(
                otel_stigmer.StigmerConfig(
                    endpoint=endpoint, api_key=API_KEY, use_tls=False, **chosen
                ),
                tracer_provider=self.provider,
            )
        else:
            self.provider.add_span_processor(SpanProcessor())
        trace.set_tracer_provider(self.provider)

    def flush(self) -> None:
        """Deliver everything produced so far."""
        self.provider.force_flush(120_000)

    def child_pid(self) -> int | None:
        """The sender process of the ``process`` configuration, while it runs."""
        try:
            from otel_stigmer.process_sender import ProcessSender  # noqa: PLC0415
        except ImportError:  # a revision from before the option (--against)
            return None
        sender = self.pipeline.processor.sender if self.pipeline is not None else None
        return sender.child_pid if isinstance(sender, ProcessSender) else None

    def child_cpu_ns(self) -> int:
        """CPU of the sender process (0 for in-process pipelines)."""
        pid = self.child_pid()
        if pid is None:
            return 0
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))

    def child_rss_bytes(self) -> int:
        """Resident memory of the sender process (0 without one)."""
        pid = self.child_pid()
        if pid is None:
            return 0
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def shutdown(self) -> None:
        """Stop threads and child processes."""
        self.provider.shutdown()


def _body(config: str, attrs: bool) -> Callable[[int], None]:
    """What one task call runs under ``config``."""
    from opentelemetry import trace  # noqa: PLC0415

    from benchmarks import workload  # noqa: PLC0415
    from otel_stigmer import conventions as conv  # noqa: PLC0415

    if config == "bare":
        return workload.bare_attrs if attrs else workload.bare
    if config != "sdk":
        return workload.step_attrs if attrs else workload.step
    # The SDK span alone, with the attributes @task writes, and the same body.
    inner = inspect.unwrap(workload.step_attrs if attrs else workload.step)
    tracer = trace.get_tracer("bench")
    identity = {conv.TASK_NAME: "step", conv.WORKFLOW_EXECUTION_ID: "x", conv.WORKFLOW_NAME: "w"}

    def sdk_step(i: int) -> None:
        with tracer.start_as_current_span("step", attributes=identity):
            inner(i)

    return sdk_step


def _thread_profiler(profiles: dict[str, cProfile.Profile]) -> Callable[..., None]:
    """A ``threading.setprofile`` hook that starts a CPU-clock cProfile in each new thread."""

    def start(frame: FrameType, event: str, arg: object) -> None:
        sys.setprofile(None)
        profiler = cProfile.Profile(time.thread_time)
        profiles[threading.current_thread().name] = profiler
        profiler.enable()

    return start


def _category(path: str, function: str) -> str:
    """A row of the breakdown for a function (by the file it lives in)."""
    if path == "~":  # a C function
        name = function.lower()
        if "serializetostring" in name or "fromstring" in name or "parsefromstring" in name:
            return "protobuf serialize/parse (C)"
        if "upb" in name or "message" in name:
            return "protobuf message build/read (C)"
        if "cygrpc" in name or "grpc" in name:
            return "gRPC (C)"
        if "lock" in name or "acquire" in name or "release" in name or "_thread" in name:
            return "locks, waits, GIL hand-over (C)"
        return "other built-ins (C)"
    parts = path.replace("\\", "/").split("/")
    if "otel_stigmer" in parts:
        module = "/".join(parts[parts.index("otel_stigmer") :])
        return module.removesuffix(".py").replace("/", ".")
    if "benchmarks" in parts:
        return "benchmark loop"
    for marker, label in (
        ("opentelemetry/sdk", "OTel SDK (span, processor fan-out)"),
        ("opentelemetry", "OTel API (context, trace)"),
        ("grpc", "gRPC (Python)"),
        ("google/protobuf", "protobuf (Python)"),
        ("wrapt", "wrapt"),
    ):
        if marker in path:
            return label
    if parts[-1] == "threading.py":
        return "threading (Python)"
    return "other stdlib"


def _profile_summary(profiler: cProfile.Profile, calls: int) -> Result:
    """Self time by category and the heaviest functions by cumulative time (ns per call)."""
    profiler.create_stats()
    stats: dict[Any, Any] = getattr(profiler, "stats", {})
    categories: dict[str, float] = {}
    functions: list[tuple[float, float, int, str]] = []
    total = 0.0
    for (path, _line, function), (_, ncalls, tottime, cumtime, _) in stats.items():
        category = _category(path, function)
        categories[category] = categories.get(category, 0.0) + tottime
        total += tottime
        label = f"{category}:{function}" if path != "~" else function
        functions.append((cumtime, tottime, ncalls, label))
    functions.sort(reverse=True)
    scale = 1e9 / calls
    return {
        "total_ns": total * scale,
        "categories": {k: v * scale for k, v in sorted(categories.items(), key=lambda x: -x[1])},
        "top": [
            {"function": label, "cum_ns": cum * scale, "self_ns": own * scale, "calls": n / calls}
            for cum, own, n, label in functions[:40]
        ],
    }


def loop_for(p: Params) -> Result:
    """Call tasks in loops of ``calls`` for ``seconds`` (a target for a sampling profiler)."""
    from benchmarks import workload  # noqa: PLC0415

    installed = _Installed(p["config"], p.get("endpoint", ""))
    fn = _body(p["config"], bool(p["attrs"]))
    deadline = time.monotonic() + float(p["seconds"])
    while time.monotonic() < deadline:
        workload.timed_workflow(fn, int(p["calls"]), execution_id="sampled")
    installed.flush()
    installed.shutdown()
    return {"config": p["config"]}


_SAMPLE_CLASSES = (
    ("garbage collection", ("gc_collect_main", "collect_with_callback", "gc_collect")),
    ("waiting for the GIL", ("take_gil",)),
    ("protobuf (upb)", ("upb",)),
    ("gRPC core", ("cygrpc", "libgrpc", "grpc_")),
)


def sample_native(variant: str, endpoint: str, seconds: float = 5.0) -> str:
    """Sample the Stigmer configuration with ``py-spy record --native``; shares by thread."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return "py-spy is not installed: no native samples."
    params = {"config": "stigmer", "attrs": variant == "attrs", "calls": 5_000}
    params |= {"endpoint": endpoint, "seconds": seconds + 4.0}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_ROOT), env.get("PYTHONPATH")]))
    target = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.profile", "--loop", json.dumps(params)],
        cwd=_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "samples.txt"
        time.sleep(2.0)  # past the imports and the warm-up of the first loop
        command = [spy, "record", "--native", "-r", "200", "-d", f"{seconds:g}", "-f", "raw"]
        done = subprocess.run(
            [*command, "-o", str(out), "-p", str(target.pid)],
            capture_output=True,
            text=True,
            check=False,
        )
        target.wait(120)
        if done.returncode != 0 or not out.exists():
            return f"py-spy failed: {done.stderr.strip()[-300:]}"
        counts: dict[str, dict[str, int]] = {}
        for line in out.read_text().splitlines():
            stack, _, number = line.rpartition(" ")
            thread = "sender thread" if "Thread._bootstrap" in stack else "calling thread"
            kinds = counts.setdefault(thread, {})
            kind = next((k for k, marks in _SAMPLE_CLASSES if any(m in stack for m in marks)), "")
            kinds[kind or "other"] = kinds.get(kind or "other", 0) + int(number)
            kinds["all"] = kinds.get("all", 0) + int(number)
    lines = [
        f"#### {variant} task, Stigmer pipeline: py-spy --native samples over {seconds:g} s "
        "(on-CPU samples of each thread, wall clock)",
        "",
        "| thread | samples | " + " | ".join(k for k, _ in _SAMPLE_CLASSES) + " | other |",
        "|---|---|" + "---|" * (len(_SAMPLE_CLASSES) + 1),
    ]
    for thread, kinds in sorted(counts.items()):
        total = kinds["all"]
        shares = [f"{100 * kinds.get(k, 0) / total:.0f}%" for k, _ in _SAMPLE_CLASSES]
        other = f"{100 * kinds.get('other', 0) / total:.0f}%"
        lines.append(f"| {thread} | {total} | " + " | ".join(shares) + f" | {other} |")
    return "\n".join(lines)


def measure(p: Params) -> Result:
    """One configuration in this process: per-thread CPU, GC, wall and drain times."""
    config, attrs, calls = p["config"], bool(p["attrs"]), int(p["calls"])
    profiles: dict[str, cProfile.Profile] = {}
    if p.get("profile"):
        threading.setprofile(_thread_profiler(profiles))
    installed = _Installed(config, p.get("endpoint", ""))
    flush = installed.flush
    from benchmarks import workload  # noqa: PLC0415

    fn = _body(config, attrs)
    workload.timed_workflow(fn, _WARMUP_CALLS, execution_id="warmup")
    flush()
    for profiler in profiles.values():
        profiler.clear()  # the warm-up does not count
    gc.collect()
    caller = cProfile.Profile(time.thread_time) if p.get("profile") else None
    before = thread_cpu_ns()
    child_before = installed.child_cpu_ns()
    start_ns = time.monotonic_ns()
    with GcMeter() as meter:
        if config == "stigmer-gc-off":
            gc.disable()
        if caller is not None:
            caller.enable()
        wall, cpu = workload.timed_workflow(fn, calls, execution_id="profile")
        if caller is not None:
            caller.disable()
        produced_ns = time.monotonic_ns()
        flush()
        drained_ns = time.monotonic_ns()
        gc.enable()
    after = thread_cpu_ns()
    child_cpu = installed.child_cpu_ns() - child_before
    threading.setprofile(None)
    result: Result = {
        "config": config,
        "calls": calls,
        "wall_ns": wall,
        "cpu_ns": cpu,
        "start_ns": start_ns,
        "produce_ns": produced_ns - start_ns,
        "drain_ns": drained_ns - produced_ns,
        "threads_cpu_ns": {k: v - before.get(k, 0) for k, v in after.items()},
        "child_cpu_ns": child_cpu,
        "gc": meter.snapshot(),
    }
    if caller is not None:
        result["profiles"] = {_CALLER: _profile_summary(caller, calls)}
        for name, profiler in profiles.items():
            summary = _profile_summary(profiler, calls)
            if summary["total_ns"] > 0:
                result["profiles"][name] = summary
    if installed.pipeline is not None:
        result["dropped"] = sum(installed.pipeline.stats().dropped.values())
        result["child_rss"] = installed.child_rss_bytes()
    installed.shutdown()
    return result


# ---- driver side ------------------------------------------------------------------------


def _run_child(params: Params, library: Path | None = None) -> Result:
    """Run one configuration in a fresh process; ``library`` holds another ``otel_stigmer``."""
    env = dict(os.environ)
    roots = [str(library)] if library is not None else []
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*roots, str(_ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.profile", "--child", json.dumps(params)],
        capture_output=True,
        text=True,
        cwd=library or _ROOT,
        env=env,
        timeout=600,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"profile worker {params} failed:\n{done.stderr[-4000:]}")
    result: Result = json.loads(lines[-1])
    return result


def _library_at(revision: str, into: Path) -> Path:
    """Extract ``otel_stigmer`` as of git ``revision`` into ``into`` (the A/B baseline).

    A directory that holds an ``otel_stigmer`` package is used as it is.
    """
    if (Path(revision) / "otel_stigmer").is_dir():
        return Path(revision)
    archive = subprocess.run(
        ["git", "archive", revision, "otel_stigmer"], cwd=_ROOT, capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def _us(values: list[float]) -> str:
    return summarize(values).format(1)


def _gc_of(result: Result, thread: str) -> dict[str, Any]:
    empty = {"collections": [0, 0, 0], "wall_ns": 0, "cpu_ns": 0, "collected": 0}
    gc_by_thread: dict[str, dict[str, Any]] = result["gc"]
    return gc_by_thread.get(thread, empty)


def _other_threads(result: Result) -> dict[str, int]:
    return {k: v for k, v in result["threads_cpu_ns"].items() if k != _CALLER and v > 0}


def accounting_table(variant: str, runs: dict[str, list[Result]]) -> str:
    """Per task call: wall, caller CPU, caller GC, other threads' CPU, drain."""
    lines = [
        f"#### {variant} task: per task call, unprofiled "
        "(median (min-max) of repetitions; caller = the thread calling the task)",
        "",
        "| configuration | caller wall us | caller CPU us | caller GC CPU us | "
        "GC runs per 10k calls (gen0/1/2) | other threads CPU us | child process CPU us "
        "| drain after the loop us | loop start to last stored us |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for config, results in runs.items():
        per = [r["calls"] for r in results]

        def column(values: Sequence[float], calls: Sequence[int] = per) -> str:  # us per call
            return _us([v / c / 1e3 for v, c in zip(values, calls, strict=True)])

        gcs = [_gc_of(r, _CALLER) for r in results]
        counts = [
            "/".join(f"{gen / c * 1e4:.0f}" for gen in g["collections"])
            for g, c in zip(gcs, per, strict=True)
        ]
        others = [sum(_other_threads(r).values()) for r in results]
        lines.append(
            f"| {config} | {column([r['wall_ns'] for r in results])} "
            f"| {column([r['cpu_ns'] for r in results])} "
            f"| {column([g['cpu_ns'] for g in gcs])} | {counts[len(counts) // 2]} "
            f"| {column(others)} | {column([r.get('child_cpu_ns', 0) for r in results])} "
            f"| {column([r['drain_ns'] for r in results])} "
            f"| {column([r.get('until_stored_ns', 0) for r in results])} |"
        )
    return "\n".join(lines)


def against_table(variant: str, runs: dict[str, list[Result]], baseline: str) -> str:
    """This revision's pipeline over ``baseline``'s (``config@revision``), paired per repetition."""
    ours = baseline.split("@", maxsplit=1)[0]
    measures: list[tuple[str, Callable[[Result], float]]] = [
        ("caller CPU [CPU]", lambda r: float(r["cpu_ns"])),
        ("caller GC [GC]", lambda r: float(_gc_of(r, _CALLER)["cpu_ns"])),
        ("other threads CPU (sender) [CPU]", lambda r: float(sum(_other_threads(r).values()))),
        ("child process CPU (process sender) [CPU]", lambda r: float(r.get("child_cpu_ns", 0))),
        ("loop start to last stored [wall]", lambda r: float(r.get("until_stored_ns", 0))),
    ]
    lines = [
        f"#### {variant} task: {ours} (this revision) against {baseline}, paired per repetition",
        "",
        f"| measure | {baseline} us per call | {ours} us per call | ratio |",
        "|---|---|---|---|",
    ]
    for label, value in measures:
        before = [value(r) / r["calls"] / 1e3 for r in runs[baseline]]
        after = [value(r) / r["calls"] / 1e3 for r in runs[ours]]
        ratios = [a / b for a, b in zip(after, before, strict=True) if b > 0]
        ratio = summarize(ratios).format(2, unit="x") if ratios else "-"
        lines.append(f"| {label} | {_us(before)} | {_us(after)} | {ratio} |")
    return "\n".join(lines)


def _median_per_call(results: list[Result], value: Callable[[Result], float]) -> float:
    return summarize([value(r) / r["calls"] / 1e3 for r in results]).median


def caller_gap_table(variant: str, runs: dict[str, list[Result]]) -> str:
    """The calling thread's CPU split by subtracting configurations that differ by one part."""

    def cpu(config: str) -> float:
        return _median_per_call(runs[config], lambda r: r["cpu_ns"])

    def gc_cpu(config: str) -> float:
        return _median_per_call(runs[config], lambda r: _gc_of(r, _CALLER)["cpu_ns"])

    rows = [
        ("task body (bare function)", cpu("bare")),
        ("SDK span: create, attach context, end (sdk - bare)", cpu("sdk") - cpu("bare")),
        ("@task decorator over the SDK span (noop - sdk)", cpu("noop") - cpu("sdk")),
        (
            "Stigmer hooks without GC ((stigmer - its GC) - (noop - its GC))",
            (cpu("stigmer") - gc_cpu("stigmer")) - (cpu("noop") - gc_cpu("noop")),
        ),
        ("GC in the caller, Stigmer pipeline", gc_cpu("stigmer")),
        ("GC in the caller, no-op processor", gc_cpu("noop")),
        ("Stigmer pipeline with the collector off (caller CPU)", cpu("stigmer-gc-off")),
        ("total: Stigmer pipeline (caller CPU)", cpu("stigmer")),
        ("total: no-op processor (caller CPU)", cpu("noop")),
    ]
    lines = [
        f"#### {variant} task: the calling thread's CPU by subtraction (us per task call, medians)",
        "",
        "| part | us |",
        "|---|---|",
    ]
    lines += [f"| {label} | {value:.1f} |" for label, value in rows]
    return "\n".join(lines)


def _thread_cpu(thread: str) -> Callable[[Result], float]:
    def cpu(result: Result) -> float:
        return float(result["threads_cpu_ns"].get(thread, 0))

    return cpu


def profile_table(
    variant: str, result: Result, unprofiled: list[Result], config: str = "stigmer"
) -> str:
    """Profiled self time by module, scaled onto the unprofiled CPU of the same thread."""
    lines = [f"#### {variant} task, configuration {config}: profiled self time by module"]
    events = _EVENTS_PER_CALL[variant]
    for thread, summary in result["profiles"].items():
        if thread == _CALLER:
            actual = _median_per_call(unprofiled, lambda r: r["cpu_ns"])
        else:
            actual = _median_per_call(unprofiled, _thread_cpu(thread))
        total = summary["total_ns"]
        if total <= 0:
            continue
        lines += [
            "",
            f"Thread `{thread}`: {actual:.1f} us CPU per task call unprofiled "
            f"({actual / events:.1f} us per event), {total / 1e3:.1f} us profiled.",
            "",
            "| module / kind | share | us per task call (scaled) |",
            "|---|---|---|",
        ]
        for category, ns in summary["categories"].items():
            share = ns / total
            if share >= 0.005:
                lines.append(f"| {category} | {100 * share:.1f}% | {share * actual:.2f} |")
        lines += ["", "| heaviest functions (cumulative, profiled) | us | calls per task |"]
        lines.append("|---|---|---|")
        for row in summary["top"][:14]:
            lines.append(
                f"| `{row['function']}` | {row['cum_ns'] / 1e3:.2f} | {row['calls']:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the accounting and the profiles; print Markdown tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="task calls per run")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--variants", default="plain,attrs")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="configurations to run")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile runs")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results here")
    parser.add_argument(
        "--py-spy", action="store_true", help="also sample with py-spy --native if installed"
    )
    parser.add_argument(
        "--against",
        metavar="REV",
        action="append",
        default=[],
        help="also run the Stigmer pipeline of git revision REV (or of a directory holding "
        "an otel_stigmer package) as configuration 'stigmer@REV'; repeatable",
    )
    parser.add_argument(
        "--profiled",
        default="stigmer",
        help="configurations to run once more under cProfile (comma-separated; e.g. "
        "stigmer,process)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--loop", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.stdout.write(json.dumps(measure(json.loads(args.child))) + "\n")
        return 0
    if args.loop:
        loop_for(json.loads(args.loop))
        return 0
    raw: dict[str, Any] = {}
    began = time.monotonic()
    libraries: dict[str, Path] = {}
    with ReceiverProcess("stigmer") as receiver, tempfile.TemporaryDirectory() as scratch:
        for index, revision in enumerate(args.against):
            into = Path(scratch) / str(index)
            libraries[f"stigmer@{revision}"] = _library_at(revision, into)
            if "process" in args.configs.split(","):  # the process sender of that revision too
                libraries[f"process@{revision}"] = libraries[f"stigmer@{revision}"]
        for variant in args.variants.split(","):
            base = {"attrs": variant == "attrs", "calls": args.calls, "endpoint": receiver.endpoint}
            configs = [c for c in args.configs.split(",") if c in CONFIGS] + list(libraries)
            runs: dict[str, list[Result]] = {config: [] for config in configs}
            for _ in range(args.reps):
                for config in configs:
                    receiver.reset()
                    result = _run_child({**base, "config": config}, libraries.get(config))
                    if config.startswith(("stigmer", "process")):
                        stored = receiver.stats()
                        result["stored"] = stored.count
                        result["until_stored_ns"] = stored.last_ns - result["start_ns"]
                    runs[config].append(result)
            print(accounting_table(variant, runs) + "\n")
            for baseline in libraries:
                if baseline.split("@")[0] in runs:
                    print(against_table(variant, runs, baseline) + "\n")
            if {"bare", "sdk", "noop", "stigmer", "stigmer-gc-off"} <= runs.keys():
                print(caller_gap_table(variant, runs) + "\n")
            raw[variant] = {"runs": runs}
            for config in [] if args.no_profile else args.profiled.split(","):
                if config not in runs:
                    continue
                profiled = _run_child({**base, "config": config, "profile": True})
                key = "profile" if config == "stigmer" else f"profile_{config}"
                raw[variant][key] = profiled
                print(profile_table(variant, profiled, runs[config], config) + "\n")
            if args.py_spy:
                print(sample_native(variant, receiver.endpoint) + "\n")
            sys.stdout.flush()
    print(f"[profile took {time.monotonic() - began:.0f} s]", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(raw, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
