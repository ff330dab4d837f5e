"""Side-by-side micro-benchmarks in one process: ``python -m benchmarks.micro``.

Each compares two ways of doing one thing, alternating them in many short rounds and
reading the calling thread's CPU clock (``time.thread_time_ns``), so a busy machine slows
both alike; the result is the median of the per-round ratios.

* ``encoding``: building the batch request from events kept serialized, the current way
  (parse each event again, build the request, serialize it) against concatenating the
  stored bytes (a repeated field is its elements' tagged bytes one after the other);
  the two requests are checked byte for byte.
* ``attributes``: the role checks a span processor's hooks make, through the SDK's public
  span API against its inner dict.
* ``decorator --against REV``: a ``@task`` call (no-op span processor) through the
  decorators module as committed at ``REV`` against the working tree's.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.stats import summarize
from otel_stigmer._wire import encode_batch

__all__ = ["compare", "main"]

_ROOT = Path(__file__).resolve().parent.parent


def compare(
    baseline: Callable[[], object], candidate: Callable[[], object], rounds: int, repeat: int
) -> tuple[list[float], list[float]]:
    """CPU ns per call of each, per round (alternating which goes first)."""
    base: list[float] = []
    cand: list[float] = []
    for index in range(rounds):
        order = [(baseline, base), (candidate, cand)]
        if index % 2:
            order.reverse()
        for fn, out in order:
            began = time.thread_time_ns()
            for _ in range(repeat):
                fn()
            out.append((time.thread_time_ns() - began) / repeat)
    return base, cand


def _report(label: str, base: list[float], cand: list[float], unit: float, what: str) -> str:
    ratios = summarize([c / b for b, c in zip(base, cand, strict=True) if b])
    return (
        f"| {label} | {summarize([b / unit for b in base]).format(2)} "
        f"| {summarize([c / unit for c in cand]).format(2)} | {ratios.format(2, unit='x')} "
        f"| {what} |"
    )


def _events(count: int) -> list[bytes]:
    """Serialized events shaped like the pipeline's (ids, names, times, metadata)."""
    from otel_stigmer import EventType, Status, new_task_progress_event  # noqa: PLC0415

    payloads = []
    for i in range(count):
        event = new_task_progress_event(
            "wfexec-0192f0c4d2b87c3a8e4f1a2b3c4d5e6f",
            EventType.TASK_COMPLETED if i % 2 else EventType.TASK_STARTED,
            "bench-workflow",
            "step",
            Status.COMPLETED if i % 2 else Status.RUNNING,
            "Task step completed",
            1_764_000_000_000_000 + i,
        )
        event.trace_id = f"{i:032x}"
        event.span_id = f"{i:016x}"
        event.parent_span_id = f"{i + 1:016x}"
        event.event_id = f"{i:032x}{i:016x}.e"
        event.task_instance_id = f"{i:016x}"
        event.metadata["app.item"] = str(i)
        payloads.append(event.SerializeToString())
    return payloads


def encoding(rounds: int, batch: int) -> str:
    """Parse + build + serialize against concatenation, per event."""
    from otel_stigmer._proto.ai.stigmer.workflow.runner.v1.progress_pb2 import (  # noqa: PLC0415
        ReportProgressBatchRequest,
    )
    from otel_stigmer.events import WorkflowProgressEvent  # noqa: PLC0415

    payloads = _events(batch)

    def reparse() -> bytes:
        events = [WorkflowProgressEvent.FromString(p) for p in payloads]
        return ReportProgressBatchRequest(events=events).SerializeToString()

    def concatenate() -> bytes:
        return encode_batch(payloads)

    identical = reparse() == concatenate()
    base, cand = compare(reparse, concatenate, rounds, 20)
    return _report(
        f"batch request of {batch} serialized events (us per event)",
        [b / batch for b in base],
        [c / batch for c in cand],
        1e3,
        f"byte-identical: {identical}; {len(concatenate()) / batch:.0f} B per event",
    )


def attribute_reads(rounds: int) -> str:
    """The attribute reads a span processor's hooks make, via the public API and the dict.

    The sequence is the role check of a start hook and an end hook (read the attributes,
    test them for emptiness, test three keys, two of them present; read the span events):
    through ``span.attributes`` (a ``MappingProxyType`` over ``BoundedAttributes``) and
    ``span.events`` (a tuple copy), against the same tests on the SDK's inner dict.
    """
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: PLC0415

    from otel_stigmer import conventions as conv  # noqa: PLC0415
    from otel_stigmer.values import attributes_view as _attribute_dict  # noqa: PLC0415

    def _event_list(span: Any) -> Any:  # the span's events without the tuple copy
        events = getattr(span, "_events", None)
        inner = getattr(events, "_dq", None)
        return inner if inner is not None else span.events

    tracer = TracerProvider().get_tracer("micro")
    span: ReadableSpan = tracer.start_span(  # type: ignore[assignment]
        "step",
        attributes={conv.TASK_NAME: "step", conv.WORKFLOW_EXECUTION_ID: "x", "w": "y"},
    )
    span.end()  # type: ignore[attr-defined]
    marker = "stigmer.event_type"

    def public() -> None:
        attributes = span.attributes
        if attributes and conv.TASK_NAME in attributes and marker not in attributes:
            _ = conv.WORKFLOW_EXECUTION_ID in attributes
        attributes = span.attributes
        if attributes and conv.WORKFLOW_EXECUTION_ID in attributes:
            _ = marker in attributes
        _ = len(span.events)

    def direct() -> None:
        attributes = _attribute_dict(span)
        if attributes and conv.TASK_NAME in attributes and marker not in attributes:
            _ = conv.WORKFLOW_EXECUTION_ID in attributes
        attributes = _attribute_dict(span)
        if attributes and conv.WORKFLOW_EXECUTION_ID in attributes:
            _ = marker in attributes
        _ = len(_event_list(span))

    base, cand = compare(public, direct, rounds, 2_000)
    return _report(
        "role checks of a start and an end hook (us per span)",
        base,
        cand,
        1e3,
        "span.attributes / span.events against the SDK's inner dict / deque",
    )


def _load_decorators(revision: str | None) -> ModuleType:
    """The decorators module from the working tree, or as committed at ``revision``."""
    path = _ROOT / "otel_stigmer" / "decorators.py"
    name = "otel_stigmer_decorators_" + (revision or "worktree").replace("~", "_").replace("^", "_")
    source = path.read_text()
    if revision is not None:
        done = subprocess.run(
            ["git", "show", f"{revision}:otel_stigmer/decorators.py"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        source = done.stdout
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(compile(source, f"{path} ({revision or 'worktree'})", "exec"), module.__dict__)
    return module


def decorator(rounds: int, against: str) -> str:
    """A @task call inside a @workflow through two versions of the decorators."""
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: PLC0415

    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())
    trace.set_tracer_provider(provider)
    rows = []
    for attrs in (False, True):
        calls: list[Callable[[], None]] = []
        for module in (_load_decorators(against), _load_decorators(None)):
            calls.append(_task_call(module, attrs))
        base, cand = compare(calls[0], calls[1], rounds, 1_000)
        rows.append(
            _report(
                f"@task call, {'attrs' if attrs else 'plain'}, no-op processor (us per call)",
                base,
                cand,
                1e3,
                f"decorators at {against} against the working tree",
            )
        )
    return "\n".join(rows)


def _task_call(module: Any, attrs: bool) -> Callable[[], None]:
    """One task call inside an open workflow span of ``module``'s decorators."""
    from opentelemetry import context as otel_context  # noqa: PLC0415
    from opentelemetry import trace  # noqa: PLC0415

    from otel_stigmer import conventions as conv  # noqa: PLC0415

    def body(i: int) -> None:
        if attrs:
            span = trace.get_current_span()
            span.set_attributes({"app.item": i, "app.kind": "bench"})
            span.add_event(conv.PROGRESS_EVENT, {conv.PROGRESS: i % 100})

    step: Callable[[int], None] = module.task(name="step")(body)
    captured: list[Any] = []

    def record() -> None:
        captured.append(otel_context.get_current())

    module.workflow(name="bench", execution_id="micro")(record)()
    context = captured[0]

    def call() -> None:
        token = otel_context.attach(context)
        try:
            step(1)
        finally:
            otel_context.detach(token)

    return call


def instructions(revision: str | None, attrs: bool, calls: tuple[int, int] = (500, 2_500)) -> float:
    """Instructions per @task call (callgrind), from the difference of two loop lengths."""
    totals = []
    for count in calls:
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run(
                [
                    "valgrind",
                    "--tool=callgrind",
                    f"--callgrind-out-file={tmp}/out",
                    sys.executable,
                    "-m",
                    "benchmarks.micro",
                    "--count",
                    f"{revision or 'worktree'}:{count}:{'attrs' if attrs else 'plain'}",
                ],
                cwd=_ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
        found = re.search(r"Collected : (\d+)", done.stderr)
        assert found is not None, done.stderr[-2000:]
        totals.append(int(found.group(1)))
    return (totals[1] - totals[0]) / (calls[1] - calls[0])


def _count(spec: str) -> None:
    """Run ``N`` task calls of one decorators version (under callgrind)."""
    from opentelemetry import trace  # noqa: PLC0415
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider  # noqa: PLC0415

    revision, count, variant = spec.split(":")
    provider = TracerProvider()
    provider.add_span_processor(SpanProcessor())
    trace.set_tracer_provider(provider)
    module = _load_decorators(None if revision == "worktree" else revision)
    call = _task_call(module, variant == "attrs")
    for _ in range(int(count)):
        call()


def instruction_rows(against: str, candidate: str | None) -> str:
    """Instructions per @task call: decorators at ``against`` and ``candidate``."""
    rows = []
    for attrs in (False, True):
        base = instructions(against, attrs)
        cand = instructions(candidate, attrs)
        rows.append(
            f"| @task call, {'attrs' if attrs else 'plain'}, no-op processor (instructions) "
            f"| {base:,.0f} | {cand:,.0f} | {cand / base:.3f}x "
            f"| callgrind, decorators at {against} against {candidate or 'the working tree'} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen comparisons and print one Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro", description=__doc__)
    parser.add_argument("which", nargs="*", default=["encoding"], help="encoding, decorator")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--against", default="HEAD", help="revision of the decorators baseline")
    parser.add_argument(
        "--candidate", help="revision of the decorators candidate (default: working tree)"
    )
    parser.add_argument("--count", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.count:
        _count(args.count)
        return 0
    print("| comparison | baseline | candidate | candidate / baseline | note |")
    print("|---|---|---|---|---|")
    for which in args.which:
        if which == "encoding":
            print(encoding(args.rounds, args.batch))
        elif which == "attributes":
            print(attribute_reads(args.rounds))
        elif which == "decorator":
            print(decorator(args.rounds, args.against))
        elif which == "instructions":
            print(instruction_rows(args.against, args.candidate))
        else:
            print(f"unknown comparison {which!r}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
