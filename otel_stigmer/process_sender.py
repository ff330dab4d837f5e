"""The process sender: records go over a pipe to a child process that maps and sends them.

The opt-in ``STIGMER_SENDER=process``. The calling thread appends each
:class:`~otel_stigmer.records.Record` to a pending list (bounded; terminal records are
kept longest); a flusher thread writes the list every :data:`FLUSH_INTERVAL` seconds, or
sooner at :data:`FLUSH_RECORDS` records, as length-prefixed marshal frames into a pipe
(:mod:`otel_stigmer.record_codec`, :mod:`otel_stigmer._frames`). The child
(:mod:`otel_stigmer.sender_child`, started with this interpreter) runs the ordinary
:class:`~otel_stigmer.delivery.Sender`, so mapping, numbering and the gRPC calls no longer
share the application's GIL.

``force_flush`` and ``shutdown`` send a token down the pipe, acknowledged by the child once
its own flush or shutdown is done, within the caller's deadline. The child is started on
the first record (``Popen`` returns at once; records wait meanwhile), restarted with backoff
if it dies (one warning; what it had not delivered is counted as dropped), and never
shared with a forked process, which starts its own.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import site
import subprocess
import sys
import threading
import time
import weakref
from typing import Any

from otel_stigmer import _frames
from otel_stigmer._child_exit import flush_children_at_exit
from otel_stigmer._sender_setup import config_fields, retry_policy_fields
from otel_stigmer.config import ALIAS_API_KEY, ENV_API_KEY, ENV_SENDER, StigmerConfig
from otel_stigmer.exceptions import ConfigError
from otel_stigmer.record_codec import encode_record, plain
from otel_stigmer.records import Record
from otel_stigmer.retry import RetryPolicy
from otel_stigmer.stats import DeliveryStats

__all__ = ["CHILD_MODULE", "FLUSH_INTERVAL", "FLUSH_RECORDS", "ProcessSender"]

_log = logging.getLogger("otel_stigmer.delivery")

#: The module the child runs (``python -m``).
CHILD_MODULE = "otel_stigmer.sender_child"
#: How often the flusher writes pending records while records come in, in seconds.
FLUSH_INTERVAL = 0.002
#: Pending records that wake the flusher before its interval is over.
FLUSH_RECORDS = 512
#: Records per frame at most (a long backlog goes as several frames).
_FRAME_RECORDS = 2048
#: Empty rounds before the flusher sleeps until the next record.
_IDLE_ROUNDS = 50
_IDLE_WAIT = 1.0
#: Slice of a blocked write, so a shutdown deadline is seen while the pipe is full.
_WRITE_SLICE = 0.05
_RESTART_FIRST = 0.1
_REAP_SECONDS = 1.0
_RESTART_MAX = 30.0
#: Bytes the pipe to the child may hold (Linux; best effort).
_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031


class _Token:
    """A flush or shutdown request waiting in the pending list."""

    __slots__ = ("deadline", "kind", "number")

    def __init__(self, kind: str, number: int, deadline: float) -> None:
        self.kind = kind
        self.number = number
        self.deadline = deadline


class _Child:
    """One child process and the parent's ends of its two pipes (raw descriptors)."""

    def __init__(self, process: subprocess.Popen[bytes], out_fd: int, in_fd: int) -> None:
        self.process = process
        self.out_fd = out_fd
        self.in_fd = in_fd
        self.written = 0  # events (record weights) written to it
        self.tokens: set[int] = set()
        self.stats: dict[str, Any] = {}
        self.gone = False
        self.answered = False

    def close_out(self) -> None:
        fd, self.out_fd = self.out_fd, -1
        if fd >= 0:
            _close(fd)


class ProcessSender:
    """Hands records to a child process that delivers them with the ordinary sender.

    Same interface as :class:`~otel_stigmer.delivery.Sender` for the span processor:
    :meth:`submit`, :meth:`force_flush`, :meth:`shutdown`, :meth:`stats`.

    Args:
        config: Connection and queue settings; sent to the child over the pipe.
        retry_policy: Backoff between failed deliveries (in the child).
        flush_interval: Seconds between writes to the pipe while records come in.

    Raises:
        ConfigError: When this interpreter cannot start a child (not POSIX, or no
            ``sys.executable``).
    """

    _pid: int
    _lock: threading.Lock
    _child_lock: threading.Lock
    _acked: threading.Condition
    _answers: dict[int, bool]
    _awaited: set[int]
    _token_count: int
    _pending: list[Any]
    _records: int
    _drops: collections.Counter[str]
    _retired: dict[str, Any]
    _wake: threading.Event
    _stop: threading.Event
    _idle: bool
    _thread: threading.Thread | None
    _child: _Child | None
    _failures: int
    _restart_at: float

    def __init__(
        self,
        config: StigmerConfig,
        retry_policy: RetryPolicy | None = None,
        *,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        if os.name != "posix":
            raise ConfigError(
                f"{ENV_SENDER}=process needs a POSIX system (pipes, fork handlers); this is "
                f"{os.name!r}. Fix: set {ENV_SENDER}=thread."
            )
        if not sys.executable or not os.access(sys.executable, os.X_OK):
            raise ConfigError(
                f"{ENV_SENDER}=process: this interpreter cannot start a process of its own "
                f"(sys.executable is {sys.executable!r}, e.g. an embedded interpreter). "
                f"Fix: set {ENV_SENDER}=thread."
            )
        self._config = config
        self._policy = retry_policy_fields(retry_policy)
        self._interval = flush_interval
        self._max_pending = config.max_queue_size
        # Past this many pending records only terminal ones are still taken.
        self._soft_pending = max(1, config.max_queue_size * 3 // 4)
        self._closed = False
        self._warned = False
        self._reset()
        _senders.add(self)
        flush_children_at_exit(self)

    # The calling threads ---------------------------------------------------------

    def submit(self, record: Record) -> None:
        """Queue ``record`` for the child; never blocks on I/O and never raises."""
        if self._closed:
            self._drops["after_shutdown"] += record.weight
            return
        if self._pid != os.getpid():
            self._forget_after_fork()
        with self._lock:
            pending = self._pending
            size = len(pending)
            if size >= self._soft_pending and (not record.terminal or size >= self._max_pending):
                self._drops["queue_full"] += record.weight
                return
            pending.append(record)
            self._records += 1
        if self._idle:
            self._idle = False
            self._wake.set()
        elif size + 1 == FLUSH_RECORDS:
            self._wake.set()
        if self._thread is None:
            self._start_thread()

    def start(self) -> None:
        """Start the writer now rather than at the first record (a flush then starts the child)."""
        if self._closed:
            return
        if self._pid != os.getpid():
            self._forget_after_fork()
        if self._thread is None:
            self._start_thread()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Deliver everything submitted so far; False if the timeout passed first."""
        deadline = time.monotonic() + max(0, timeout_millis) / 1000
        if self._closed or self._pid != os.getpid() or self._thread is None:
            return True
        ok = self._wait(self._post(_frames.FLUSH, deadline), deadline)
        if not ok:
            _log.warning(
                "otel-stigmer flush timed out after %d ms (process sender, %d records not "
                "yet handed over)",
                timeout_millis,
                len(self._pending),
            )
        return ok

    def shutdown(self, timeout_millis: int = 30_000) -> bool:
        """Flush and stop, all within ``timeout_millis``; True when nothing was left."""
        if self._closed:
            return True
        deadline = time.monotonic() + max(0, timeout_millis) / 1000
        if self._pid != os.getpid():
            self._forget_after_fork()
        ok = True
        if self._thread is not None:
            ok = self._wait(self._post(_frames.SHUTDOWN, deadline), deadline)
        self._closed = True
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        child = self._child
        if child is not None and thread is not None and not thread.is_alive():
            # If it is not done by then, it ends by its own deadline: its input is closed.
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(max(0.0, deadline - time.monotonic()))
        return ok

    def stats(self) -> DeliveryStats:
        """The child's counters (its earlier incarnations included) plus the parent's drops."""
        total = DeliveryStats(records=self._records)
        total.dropped.update(self._drops)
        child = self._child
        depth = len(self._pending)
        for counts in (self._retired, child.stats if child is not None else {}):
            for name in ("enqueued", "sent", "retried", "failed_calls", "unauthenticated_calls"):
                setattr(total, name, getattr(total, name) + int(counts.get(name, 0)))
            total.dropped.update(counts.get("dropped", {}))
        if child is not None and not child.gone:
            depth += int(child.stats.get("queue_depth", 0))
        total.queue_depth = depth
        return total

    @property
    def child_pid(self) -> int | None:
        """The process id of the running child, if one runs."""
        child = self._child
        return None if child is None or child.gone else child.process.pid

    # Tokens -----------------------------------------------------------------------

    def _post(self, kind: str, deadline: float) -> int:
        with self._lock:
            self._token_count += 1
            number = self._token_count
            self._pending.append(_Token(kind, number, deadline))
        with self._acked:
            self._awaited.add(number)
        self._idle = False
        self._wake.set()
        return number

    def _wait(self, number: int, deadline: float) -> bool:
        with self._acked:
            arrived = self._acked.wait_for(
                lambda: number in self._answers, max(0.0, deadline - time.monotonic())
            )
            self._awaited.discard(number)
            return arrived and self._answers.pop(number)

    def _answer(self, number: int, ok: bool) -> None:
        with self._acked:
            if number in self._awaited:
                self._answers[number] = ok
                self._acked.notify_all()

    # The flusher thread -------------------------------------------------------------

    def _start_thread(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(
                target=self._run, name="otel-stigmer-pipe-writer", daemon=True
            )
            self._thread = thread
            thread.start()

    def _run(self) -> None:
        empty = 0
        while not self._stop.is_set():
            waiting = self._restart_at - time.monotonic()
            if waiting > self._interval and self._child is None:
                self._wake.wait(waiting)  # no child until its restart: nothing to write
            elif empty >= _IDLE_ROUNDS:
                self._idle = True
                if not self._pending:
                    self._wake.wait(_IDLE_WAIT)
                self._idle = False
            else:
                self._wake.wait(self._interval)
            self._wake.clear()
            try:
                empty = 0 if self._round() else empty + 1
            except Exception:
                _log.exception("otel-stigmer: the process sender's writer failed (ignored)")
        self._finish()

    def _round(self) -> bool:
        """Write what is pending to the child (starting it if needed); False if nothing was."""
        child = self._child
        if child is not None and child.gone:
            self._retire(child)
            child = None
        if not self._pending:
            return False
        if child is None:
            if time.monotonic() < self._restart_at:
                return True
            child = self._spawn()
            if child is None:
                return True
        with self._lock:
            batch, self._pending = self._pending, []
        data, weight, tokens = self._encode(batch)
        # Atomic against _lost (the reader noticing the child's end): it must not fail the
        # tokens of a write that nothing reached, as those wait for the next child.
        with self._child_lock:
            sent = 0
            if not child.gone:
                child.written += weight
                child.tokens.update(tokens)
                sent = self._write(child, data)
                if sent == 0:
                    child.written -= weight
                    child.tokens.difference_update(tokens)
            if sent == 0:  # it all waits for the next child (or is counted at shutdown)
                with self._lock:
                    self._pending[:0] = batch
        if sent < len(data) and not self._stop.is_set():
            self._lost(child, "the pipe to it broke")
        return True

    def _encode(self, batch: list[Any]) -> tuple[bytes, int, list[int]]:
        parts: list[bytes] = []
        records: list[tuple[Any, ...]] = []
        tokens: list[int] = []
        weight = 0
        for item in batch:
            if type(item) is _Token:
                if records:
                    parts.append(_records_frame(records))
                    records = []
                left = max(0, int((item.deadline - time.monotonic()) * 1000))
                parts.append(_frames.frame((item.kind, item.number, left)))
                tokens.append(item.number)
                continue
            try:
                records.append(encode_record(item))
            except Exception:  # a span we cannot read must not stop delivery
                _log.exception("otel-stigmer could not encode a record for the sender process")
                continue
            weight += item.weight
            if len(records) >= _FRAME_RECORDS:
                parts.append(_records_frame(records))
                records = []
        if records:
            parts.append(_records_frame(records))
        return b"".join(parts), weight, tokens

    def _write(self, child: _Child, data: bytes) -> int:
        """Write ``data`` to the child; return how many bytes went (all, unless it failed)."""
        view = memoryview(data)
        while view:
            if child.gone or child.out_fd < 0:
                break
            try:
                view = view[os.write(child.out_fd, view) :]
            except BlockingIOError:
                if self._stop.is_set():
                    break
                select.select([], [child.out_fd], [], _WRITE_SLICE)
            except OSError:
                break
        return len(data) - len(view)

    def _finish(self) -> None:
        """The writer stops: what is still pending is dropped, the child's input closed."""
        with self._lock:
            left, self._pending = self._pending, []
        dropped = sum(item.weight for item in left if type(item) is not _Token)
        if dropped:
            self._drops["shutdown"] += dropped
            _log.warning("otel-stigmer shut down with %d records not handed over", dropped)
        child = self._child
        if child is not None:
            child.close_out()

    # The child ------------------------------------------------------------------------

    def _spawn(self) -> _Child | None:
        to_child: tuple[int, int] | None = None
        from_child: tuple[int, int] | None = None
        try:
            to_child = os.pipe()
            from_child = os.pipe()
            try:
                import fcntl  # noqa: PLC0415 - POSIX only

                fcntl.fcntl(to_child[1], _F_SETPIPE_SZ, _PIPE_BYTES)
            except (ImportError, OSError):
                pass  # the default pipe size only means more, shorter writes
            process = subprocess.Popen(  # noqa: S603 - this interpreter, a fixed module
                [sys.executable, "-m", CHILD_MODULE],
                stdin=to_child[0],
                stdout=from_child[1],
                close_fds=True,
                env=child_environment(),
            )
        except Exception as exc:
            for fd in (*(to_child or ()), *(from_child or ())):
                _close(fd)
            self._failed(f"it could not be started ({type(exc).__name__}: {exc})")
            return None
        _close(to_child[0])
        _close(from_child[1])
        child = _Child(process, to_child[1], from_child[0])
        config = _frames.frame((_frames.CONFIG, config_fields(self._config), self._policy))
        ok = self._write(child, config) == len(config)
        os.set_blocking(child.out_fd, False)
        self._child = child
        threading.Thread(
            target=self._read_answers, args=(child,), name="otel-stigmer-pipe-reader", daemon=True
        ).start()
        if not ok:
            self._lost(child, "it did not take its configuration")
        return child

    def _read_answers(self, child: _Child) -> None:
        reader = _frames.FrameReader(child.in_fd)
        while True:
            try:
                message = reader.read()
            except Exception:
                message = None
            if message is None:
                break
            kind = message[0]
            if kind == _frames.LOG:
                logging.getLogger(message[2]).log(message[1], "%s", message[3])
                continue
            if not child.answered:
                child.answered = True
                self._failures = 0
            if kind == _frames.ACK:
                child.stats = message[3]
                child.tokens.discard(message[1])
                self._answer(message[1], message[2])
            elif kind == _frames.STATS:
                child.stats = message[1]
        fd, child.in_fd = child.in_fd, -1
        _close(fd)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.process.wait(_REAP_SECONDS)  # its output closed: it is exiting
        if not self._closed:
            code = child.process.poll()
            self._lost(child, "it exited" + ("" if code is None else f" with code {code}"))
        else:
            child.gone = True

    def _lost(self, child: _Child, how: str) -> None:
        """The child is gone: count what it had not delivered, fail its tokens, restart later."""
        with self._child_lock:
            if child.gone:
                return
            child.gone = True
        stats = child.stats
        accounted = int(stats.get("sent", 0)) + sum(stats.get("dropped", {}).values())
        lost = max(0, child.written - accounted)
        if lost:
            self._drops["sender_exited"] += lost
        for number in list(child.tokens):
            self._answer(number, False)
        self._failed(f"{how}; up to {lost} events it had not delivered are counted as dropped")
        self._wake.set()

    def _failed(self, what: str) -> None:
        delay = min(_RESTART_MAX, _RESTART_FIRST * 2**self._failures)
        self._failures += 1
        self._restart_at = time.monotonic() + delay
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        _log.log(
            level,
            "otel-stigmer: the sender process failed: %s. It is started again in %.1f s; "
            "records wait meanwhile (up to %d)",
            what,
            delay,
            self._max_pending,
        )

    def _retire(self, child: _Child) -> None:
        """Fold a gone child's counters into the totals and let go of it."""
        child.close_out()
        for name in ("enqueued", "sent", "retried", "failed_calls", "unauthenticated_calls"):
            self._retired[name] = self._retired.get(name, 0) + int(child.stats.get(name, 0))
        dropped = self._retired.setdefault("dropped", collections.Counter())
        dropped.update(child.stats.get("dropped", {}))
        child.stats = {}
        if child.process.poll() is None:
            child.process.kill()  # it lost its output: nothing it does reaches us
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(_REAP_SECONDS)
        if self._child is child:
            self._child = None

    # Fork --------------------------------------------------------------------------------

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked process (which starts its own child)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._child_lock = threading.Lock()
        self._acked = threading.Condition(threading.Lock())
        self._answers = {}
        self._awaited = set()
        self._token_count = 0
        self._pending = []
        self._records = 0
        self._drops = collections.Counter()
        self._retired = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = False
        self._thread = None
        self._child = None
        self._failures = 0
        self._restart_at = 0.0

    def _forget_after_fork(self) -> None:
        """In a forked process: close the inherited pipes (never written from here), reset."""
        child = self._child
        if child is not None:
            for fd in (child.out_fd, child.in_fd):
                if fd >= 0:
                    _close(fd)
            child.out_fd = child.in_fd = -1
            # The parent's child, not this process's: nothing to wait for or warn about here.
            child.process.returncode = 0
        self._reset()


def child_environment() -> dict[str, str]:
    """The child's environment: this one without the API key and auto-instrumentation.

    The key reaches the child over the pipe only (``/proc/PID/environ`` shows the
    environment to the same user). ``opentelemetry-instrument`` works through
    ``PYTHONPATH``; the child must not instrument itself, nor set up a pipeline of its own.
    """
    env = {name: value for name, value in os.environ.items() if name not in _KEY_VARIABLES}
    paths = [
        path
        for path in env.get("PYTHONPATH", "").split(os.pathsep)
        if path and not path.rstrip(os.sep).endswith("auto_instrumentation")
    ]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in paths and root not in _site_directories():
        paths.append(root)  # where this package was imported from, e.g. a source tree
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["OTEL_SDK_DISABLED"] = "true"
    env["PYTHONSAFEPATH"] = "1"  # not the working directory first on the child's path
    return env


_KEY_VARIABLES = frozenset({ENV_API_KEY, ALIAS_API_KEY})


def _site_directories() -> list[str]:
    try:
        return [*site.getsitepackages(), site.getusersitepackages()]
    except AttributeError:  # a virtualenv's old site module
        return []


def _records_frame(records: list[tuple[Any, ...]]) -> bytes:
    try:
        return _frames.frame((_frames.RECORDS, records))
    except ValueError:  # an attribute value marshal cannot write: sent as its text
        return _frames.frame((_frames.RECORDS, [plain(record) for record in records]))


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


_senders: weakref.WeakSet[ProcessSender] = weakref.WeakSet()


def _forget_all_after_fork() -> None:
    for sender in list(_senders):
        sender._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_all_after_fork)
