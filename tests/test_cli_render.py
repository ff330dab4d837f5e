"""Terminal rendering: task lines, durations, progress bars and the closing summary."""

from __future__ import annotations

import io

from otel_stigmer.cli._render import ProgressView, Terminal
from otel_stigmer.events import ErrorDetails, WorkflowProgressEvent


def _event(
    seq: int,
    event_type: str,
    status: str,
    *,
    task: str = "",
    ms: int = 0,
    attempt: int = 0,
    error: tuple[str, str] | None = None,
    progress: int = 0,
    metadata: dict[str, str] | None = None,
) -> WorkflowProgressEvent:
    event = WorkflowProgressEvent(
        workflow_execution_id="ex-1",
        workflow_name="ingest",
        event_type=event_type,
        status=status,
        task_name=task,
        timestamp_ms=1_000_000 + ms,
        sequence_number=seq,
        attempt=attempt,
        task_progress=progress,
        metadata=metadata or {},
    )
    if error is not None:
        event.error.CopyFrom(ErrorDetails(code=error[0], message=error[1]))
    return event


RUN = [
    _event(1, "workflow_started", "running", metadata={"tasks_planned": "3"}),
    _event(2, "task_started", "running", task="fetch", ms=10),
    _event(3, "task_retry", "running", task="fetch", ms=110, attempt=1, error=("TIMEOUT", "slow")),
    _event(4, "task_started", "running", task="fetch", ms=120, attempt=2),
    _event(5, "task_completed", "completed", task="fetch", ms=370, attempt=2),
    _event(6, "task_started", "running", task="mail", ms=400),
    _event(7, "task_progress", "running", task="mail", ms=420, progress=50),
    _event(8, "task_failed", "failed", task="mail", ms=450, error=("QUOTA", "full")),
    _event(9, "workflow_completed", "completed", ms=500),
]


def test_task_lines_show_status_attempt_duration_and_error() -> None:
    """Each event becomes one line with its status, attempt, duration and error code."""
    view = ProgressView()
    lines = [line for event in RUN for line in view.feed(event)]
    assert lines[2].split() == [
        "~",
        "fetch",
        "retry",
        "attempt",
        "1",
        "0.10",
        "s",
        "TIMEOUT:",
        "slow",
    ]
    assert lines[4].split() == ["+", "fetch", "completed", "attempt", "2", "0.25", "s"]
    assert lines[6].split() == [".", "mail", "progress", "50%"]
    assert lines[7].split() == ["x", "mail", "failed", "0.05", "s", "QUOTA:", "full"]
    assert lines[8].startswith("+ workflow ingest  completed  in 0.50 s")
    assert "\x1b[" not in "".join(lines)


def test_progress_bar_counts_finished_tasks_against_the_plan() -> None:
    """Before the end, the bar is finished tasks over the planned count; 100% when done."""
    view = ProgressView()
    for event in RUN[:5]:
        view.feed(event)
    assert view.bar("ex-1").startswith("[#######.................]  33%  1/3 task calls  ingest")
    for event in RUN[5:]:
        view.feed(event)
    assert "100%  2/3 task calls" in view.bar("ex-1")


def test_summary_lists_the_retry_and_the_handled_failure() -> None:
    """The summary names the outcome, the retried task and the failed one with their errors."""
    view = ProgressView()
    for event in RUN:
        view.feed(event)
    summary = "\n".join(view.summary("ex-1"))
    assert "Summary: workflow ingest completed in 0.50 s (9 events, execution ex-1)" in summary
    assert "tasks:   2 (1 completed, 1 failed)" in summary
    assert "retried: fetch: attempt 1 failed with TIMEOUT: slow; succeeded on attempt 2" in summary
    assert "failed:  mail: QUOTA: full (handled: the workflow went on)" in summary


def test_colored_output_and_the_live_status_line() -> None:
    """With color, lines carry ANSI codes and a TTY status line is redrawn below them."""
    view = ProgressView(color=True)
    out = io.StringIO()
    terminal = Terminal(out, live=True)
    terminal.print(view.feed(RUN[0]))
    terminal.status(view.bar("ex-1"))
    terminal.print(view.feed(RUN[1]))
    terminal.finish()
    text = out.getvalue()
    assert "\x1b[36m" in text
    assert text.count("\r\x1b[K") == 3
    assert text.endswith("\r\x1b[K")


def _call(
    seq: int, event_type: str, status: str, instance: str, **kw: object
) -> WorkflowProgressEvent:
    event = _event(seq, event_type, status, task="resize", ms=seq * 10, **kw)  # type: ignore[arg-type]
    event.task_instance_id = instance
    return event


def test_parallel_calls_of_one_task_are_counted_and_labelled_separately() -> None:
    """Calls told apart by task instance id count one each and are labelled #2, #3, ..."""
    view = ProgressView()
    events = [_event(1, "workflow_started", "running")]
    events += [_call(2 + n, "task_started", "running", f"i{n}") for n in range(5)]
    events += [_call(10 + n, "task_completed", "completed", f"i{n}") for n in range(4)]
    lines = [line for event in events for line in view.feed(event)]
    assert "4/5 task calls" in view.bar("ex-1")
    # The first call is numbered once a second one shows up.
    assert lines[1].split()[:3] == [">", "resize", "started"]
    assert lines[2].split()[:3] == [">", "resize#2", "started"]
    assert lines[6].split()[:3] == ["+", "resize#1", "completed"]
    assert lines[5].split()[:3] == [">", "resize#5", "started"]
    assert "tasks:   5 calls of 1 tasks (4 completed, 1 running)" in "\n".join(view.summary("ex-1"))


def test_a_call_that_failed_for_good_after_a_retry_is_summarised_as_failed() -> None:
    """Retried then failed on its last attempt: the summary says failed, never succeeded."""
    view = ProgressView()
    for event in [
        _event(1, "workflow_started", "running"),
        _call(2, "task_started", "running", "c", attempt=1),
        _call(3, "task_retry", "running", "c", attempt=1, error=("FLAKY", "try again")),
        _call(4, "task_started", "running", "c", attempt=2),
        _call(5, "task_failed", "failed", "c", attempt=2, error=("FLAKY", "gave up")),
        _event(6, "workflow_failed", "failed", ms=70, error=("FLAKY", "gave up")),
    ]:
        view.feed(event)
    summary = "\n".join(view.summary("ex-1"))
    assert "tasks:   1 (1 failed)" in summary
    assert "retried: resize: attempt 1 failed with FLAKY: try again; then failed" in summary
    assert "succeeded" not in summary
    assert "failed:  resize: FLAKY: gave up" in summary


def test_a_late_outcome_is_shown_late_and_does_not_reopen_the_workflow() -> None:
    """A task outcome after the workflow's end is marked late; a later start keeps it ended."""
    view = ProgressView()
    view.feed(_event(1, "workflow_started", "running"))
    view.feed(_call(2, "task_started", "running", "c"))
    view.feed(_event(3, "workflow_completed", "completed", ms=30))
    (line,) = view.feed(_call(4, "task_failed", "failed", "c", error=("LOST", "worker gone")))
    assert line.endswith("(late: arrived after the workflow ended)")
    view.feed(_event(5, "workflow_progress", "running", progress=10))
    view.feed(_event(6, "workflow_resumed", "running"))
    assert view.state("ex-1").status == "completed"
    assert "late:    resize: failed (reported after the workflow ended)" in "\n".join(
        view.summary("ex-1")
    )
