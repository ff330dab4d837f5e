"""Terminal rendering of progress events (pure): task lines, progress bars and summaries."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

from otel_stigmer.events import TERMINAL_EVENT_TYPES, WorkflowProgressEvent

__all__ = ["ExecutionState", "ProgressView", "TaskState", "Terminal", "use_color"]

_COLORS = {
    "completed": "32",
    "failed": "31",
    "cancelled": "33",
    "retry": "33",
    "running": "36",
    "dim": "2",
    "bold": "1",
}
_MARKS = {
    "started": ">",
    "completed": "+",
    "failed": "x",
    "cancelled": "-",
    "retry": "~",
    "progress": ".",
    "paused": "|",
    "resumed": ">",
}
_BAR_WIDTH = 24
#: Metadata key a workflow may report with its planned number of task calls (for the bar):
#: ``@workflow(attributes={"stigmer.metadata.tasks_planned": 5})``.
TASKS_PLANNED_KEY = "tasks_planned"


def use_color(stream: IO[str], *, disabled: bool = False) -> bool:
    """Return whether to color ``stream``: a TTY, no ``--no-color`` and no ``NO_COLOR``."""
    if disabled or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@dataclass
class TaskState:
    """What is known of one task call of an execution (its attempts share one state).

    Calls are told apart by ``task_instance_id``; events without one (older senders)
    fall back to one call per task name.
    """

    name: str
    #: The task instance id (the task name for events without one).
    call_id: str = ""
    #: 1 for the first call of this task name in the execution, 2 for the next, ...
    number: int = 1
    #: An outcome of this call arrived after the workflow had ended.
    late: bool = False
    status: str = ""
    attempt: int = 1
    started_ms: int | None = None
    ended_ms: int | None = None
    progress: int | None = None
    error: tuple[str, str] | None = None
    #: ``(attempt, code, message)`` of every failed attempt that was retried.
    retries: list[tuple[int, str, str]] = field(default_factory=list)


@dataclass
class ExecutionState:
    """What is known of one workflow execution."""

    execution_id: str
    workflow_name: str = ""
    status: str = ""
    started_ms: int | None = None
    ended_ms: int | None = None
    progress: int | None = None
    planned: int | None = None
    events: int = 0
    error: tuple[str, str] | None = None
    #: Task calls by task instance id.
    tasks: dict[str, TaskState] = field(default_factory=dict)
    #: Number of calls seen per task name.
    calls_per_name: dict[str, int] = field(default_factory=dict)

    def call(self, event: WorkflowProgressEvent) -> TaskState:
        """Return the call ``event`` belongs to, created at its first event."""
        call_id = event.task_instance_id or event.task_name
        task = self.tasks.get(call_id)
        if task is None:
            number = self.calls_per_name.get(event.task_name, 0) + 1
            self.calls_per_name[event.task_name] = number
            task = self.tasks[call_id] = TaskState(event.task_name, call_id, number)
        return task

    def label(self, task: TaskState) -> str:
        """Return the task's name, with its call number when the task was called more than once."""
        if self.calls_per_name.get(task.name, 1) > 1:
            return f"{task.name}#{task.number}"
        return task.name

    def counts(self) -> tuple[int, int]:
        """Return ``(finished, known)`` task calls; known includes the declared plan."""
        done = sum(1 for t in self.tasks.values() if t.ended_ms is not None)
        return done, max(self.planned or 0, len(self.tasks))

    @property
    def finished(self) -> bool:
        """True once the workflow reported a terminal event."""
        return self.ended_ms is not None

    def percent(self) -> int:
        """Progress in percent: 100 when finished, else reported or derived from the tasks."""
        if self.finished:
            return 100
        if self.progress is not None:
            return self.progress
        done, total = self.counts()
        return 100 * done // total if total else 0


def _seconds(start: int | None, end: int | None) -> str:
    if start is None or end is None:
        return ""
    return f"{max(0, end - start) / 1000:.2f} s"


def _verb(event_type: str) -> str:
    return event_type.split("_", 1)[1] if "_" in event_type else event_type


class ProgressView:
    """Turns progress events into terminal lines, keeping per-execution state.

    Args:
        color: Emit ANSI colors.
    """

    def __init__(self, *, color: bool = False) -> None:
        self.color = color
        self.executions: dict[str, ExecutionState] = {}

    def _paint(self, text: str, style: str) -> str:
        code = _COLORS.get(style)
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code else text

    def state(self, execution_id: str) -> ExecutionState:
        """Return the state of ``execution_id`` (created empty when unknown)."""
        state = self.executions.get(execution_id)
        if state is None:
            state = self.executions[execution_id] = ExecutionState(execution_id)
        return state

    def feed(self, event: WorkflowProgressEvent, *, late: bool = False) -> list[str]:
        """Update the state with ``event`` and return the lines that show it.

        Args:
            event: The next event.
            late: The receiver marked it as arrived after its workflow's terminal event.
        """
        state = self.state(event.workflow_execution_id)
        state.events += 1
        if event.workflow_name:
            state.workflow_name = event.workflow_name
        planned = event.metadata.get(TASKS_PLANNED_KEY, "")
        if planned.isdigit():
            state.planned = int(planned)
        if event.task_name:
            line = self._task_line(state, event)
            if late or (state.finished and event.event_type in TERMINAL_EVENT_TYPES):
                state.call(event).late = True
                line += "  " + self._paint("(late: arrived after the workflow ended)", "dim")
            return [line]
        return [self._workflow_line(state, event)]

    def _workflow_line(self, state: ExecutionState, event: WorkflowProgressEvent) -> str:
        verb = _verb(event.event_type)
        if event.event_type == "workflow_started":
            state.started_ms = event.timestamp_ms
        terminal = event.event_type in TERMINAL_EVENT_TYPES
        if event.event_type == "workflow_progress":
            state.progress = event.task_progress
        elif event.status and (terminal or not state.finished):
            # Once ended, only another terminal event changes the outcome: never reopened.
            state.status = event.status
        detail = ""
        if terminal:
            state.ended_ms = event.timestamp_ms
            detail = f"in {_seconds(state.started_ms, state.ended_ms)}"
        if event.HasField("error") and event.error.code:
            state.error = (event.error.code, event.error.message)
            detail += f"  {event.error.code}: {event.error.message}"
        elif verb == "progress":
            detail = f"{event.task_progress}%  {event.message}"
        head = f"{_MARKS.get(verb, '*')} workflow {state.workflow_name or '?'}"
        style = verb if verb in _COLORS else "bold"
        return f"{self._paint(head, style)}  {verb}  {detail}  [{state.execution_id}]".rstrip()

    def _task_line(self, state: ExecutionState, event: WorkflowProgressEvent) -> str:
        task = state.call(event)
        verb = _verb(event.event_type)
        if event.attempt:
            task.attempt = event.attempt
        error = (event.error.code, event.error.message) if event.HasField("error") else None
        detail = ""
        if event.event_type == "task_started":
            task.started_ms, task.ended_ms = event.timestamp_ms, None
            task.status = event.status
        elif event.event_type == "task_retry":
            code, message = error or ("", event.message)
            task.retries.append((task.attempt, code, message))
            task.status = "retrying"
            detail = _seconds(task.started_ms, event.timestamp_ms)
        elif event.event_type == "task_progress":
            task.progress = event.task_progress
            detail = f"{event.task_progress}%  {event.message}"
        elif event.event_type in TERMINAL_EVENT_TYPES:
            task.ended_ms = event.timestamp_ms
            task.status = event.status
            task.error = error
            detail = _seconds(task.started_ms, task.ended_ms)
        else:
            task.status = event.status or task.status
            detail = event.message
        if error is not None and error[0]:
            detail += f"  {error[0]}: {error[1]}"
        attempt = f"attempt {task.attempt}" if task.attempt > 1 or task.retries else ""
        style = verb if verb in _COLORS else ("running" if verb == "started" else "dim")
        mark = self._paint(_MARKS.get(verb, "*"), style)
        status = self._paint(f"{verb:<10}", style)
        return f"  {mark} {state.label(task):<24} {status} {attempt:<10} {detail}".rstrip()

    def bar(self, execution_id: str) -> str:
        """Return the progress bar line of one execution."""
        state = self.state(execution_id)
        percent = state.percent()
        filled = _BAR_WIDTH * percent // 100
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        done, total = state.counts()
        status = state.status or "pending"
        painted = self._paint(status, status if status in _COLORS else "dim")
        name = state.workflow_name or state.execution_id
        return f"[{bar}] {percent:>3}%  {done}/{total} task calls  {name}  {painted}"

    def summary(self, execution_id: str) -> list[str]:
        """Return the closing summary of one execution: outcome, tasks, retries and failures."""
        state = self.state(execution_id)
        tasks = list(state.tasks.values())
        took = _seconds(state.started_ms, state.ended_ms)
        outcome = state.status or "unknown"
        lines = [
            f"Summary: workflow {state.workflow_name or '?'} {outcome}"
            + (f" in {took}" if took else "")
            + f" ({state.events} events, execution {execution_id})",
            f"  {self.bar(execution_id)}",
        ]
        counts: dict[str, int] = {}
        for task in tasks:
            counts[task.status or "unknown"] = counts.get(task.status or "unknown", 0) + 1
        breakdown = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        names = len(state.calls_per_name)
        of = f" calls of {names} tasks" if len(tasks) != names else ""
        lines.append(f"  tasks:   {len(tasks)}{of}" + (f" ({breakdown})" if breakdown else ""))
        for task in tasks:
            for attempt, code, message in task.retries:
                then = (
                    f"succeeded on attempt {task.attempt}"
                    if task.status == "completed"
                    else f"then {task.status or 'unknown'}"
                )
                lines.append(
                    f"  retried: {state.label(task)}: attempt {attempt} failed with {code}: "
                    f"{message}; " + then
                )
        for task in tasks:
            if task.status == "failed" and task.error is not None:
                handled = " (handled: the workflow went on)" if outcome == "completed" else ""
                code, message = task.error
                lines.append(f"  failed:  {state.label(task)}: {code}: {message}{handled}")
        for task in tasks:
            if task.late:
                lines.append(
                    f"  late:    {state.label(task)}: {task.status or 'unknown'} "
                    "(reported after the workflow ended)"
                )
        if state.error is not None:
            lines.append(f"  error:   {state.error[0]}: {state.error[1]}")
        return lines


class Terminal:
    """Prints lines, keeping one status line redrawn in place at the bottom of a TTY.

    Args:
        stream: Where to write.
        live: Redraw a status line (a TTY); False only prints lines.
    """

    def __init__(self, stream: IO[str], *, live: bool) -> None:
        self._stream = stream
        self._live = live
        self._status = ""

    def print(self, lines: Iterable[str]) -> None:
        """Print lines above the status line."""
        text = "".join(f"{line}\n" for line in lines)
        if not text:
            return
        if self._live and self._status:
            text = "\r\x1b[K" + text + self._status
        self._stream.write(text)
        self._stream.flush()

    def status(self, line: str) -> None:
        """Replace the status line (TTY only)."""
        if not self._live or line == self._status:
            return
        self._status = line
        self._stream.write("\r\x1b[K" + line)
        self._stream.flush()

    def finish(self) -> None:
        """Remove the status line."""
        if self._live and self._status:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._status = ""
