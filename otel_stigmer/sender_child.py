"""The child side of the process sender: ``python -m otel_stigmer.sender_child``.

Started by :class:`~otel_stigmer.process_sender.ProcessSender` with a pipe as standard
input and another as standard output. The first frame on the input holds the config (the
API key included: never in the arguments or the environment, which ``/proc`` shows);
then come records, which go to the ordinary :class:`~otel_stigmer.delivery.Sender` built
by :func:`~otel_stigmer.wiring.sender_for` (ordering, numbering, retries, spool, bounds and
statistics are that code's), and flush and shutdown tokens, acknowledged on the output
with the counters. Log lines of the library go to the parent, which logs them.

The child ends at end of input (the parent closed the pipe or died), after delivering
within its deadline; when the parent is gone but the pipe stays open, it ends all the same.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from typing import Any

from otel_stigmer import _frames, intake
from otel_stigmer._sender_setup import config_from, retry_policy_from
from otel_stigmer.delivery import Sender
from otel_stigmer.record_codec import decode_record
from otel_stigmer.stats import DeliveryStats
from otel_stigmer.wiring import sender_for

__all__ = ["main"]

_log = logging.getLogger("otel_stigmer.delivery")

#: How long the child delivers after its input ended without a shutdown token.
DEFAULT_EXIT_MILLIS = 5_000
#: Past its deadline, the child exits this much later even if delivery still hangs.
_HARD_EXIT_GRACE = 2.0
_STATS_PERIOD = 0.2
_PARENT_CHECK_PERIOD = 0.5


class _TerminatedError(Exception):
    """SIGTERM: end as at end of input."""


class _Output:
    """The pipe to the parent, written by several threads."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self.broken = False

    def send(self, message: tuple[Any, ...]) -> None:
        data = _frames.frame(message)
        with self._lock:
            if self.broken:
                return
            try:
                _frames.write_all(self._fd, data)
            except OSError:  # the parent is gone: nobody to tell
                self.broken = True


class _ForwardLogs(logging.Handler):
    """Sends the library's log lines to the parent."""

    def __init__(self, output: _Output) -> None:
        super().__init__(logging.INFO)
        self._output = output

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self._output.send((_frames.LOG, record.levelno, record.name, message))
        except Exception:
            self.handleError(record)


def _stats_of(sender: Sender) -> dict[str, Any]:
    stats: DeliveryStats = sender.stats()
    values = stats.as_dict()
    values.pop("dropped_total", None)
    return values


class _Child:
    def __init__(self, sender: Sender, output: _Output, parent: int) -> None:
        self.sender = sender
        self.output = output
        self.parent = parent
        self.done = threading.Event()
        self.shut_down = False
        self._finishing = threading.Lock()

    def serve(self, reader: _frames.FrameReader) -> None:
        """Submit records and answer tokens until end of input."""
        submit = self.sender.submit
        while True:
            message = reader.read()
            if message is None:
                return
            kind = message[0]
            if kind == _frames.RECORDS:
                for value in message[1]:
                    submit(decode_record(value))
            elif kind == _frames.FLUSH:
                ok = self.sender.force_flush(message[2])
                self.output.send((_frames.ACK, message[1], ok, _stats_of(self.sender)))
            elif kind == _frames.SHUTDOWN:
                ok = self.sender.shutdown(message[2])
                self.shut_down = True
                self.output.send((_frames.ACK, message[1], ok, _stats_of(self.sender)))

    def report_stats(self) -> None:
        """Send the counters when they change, and end the child if the parent is gone."""
        last: dict[str, Any] | None = None
        while not self.done.wait(_STATS_PERIOD):
            stats = _stats_of(self.sender)
            if stats != last:
                self.output.send((_frames.STATS, stats))
                last = stats
            if os.getppid() != self.parent:  # orphaned, yet the pipe is held open
                self.finish(DEFAULT_EXIT_MILLIS)

    def finish(self, timeout_millis: int) -> None:
        """Deliver within ``timeout_millis`` and exit (at the latest a little after it)."""
        # End of input and an orphaned parent may both end the child: the first one does,
        # the other waits here until the process exits.
        self._finishing.acquire()
        hard = threading.Timer(timeout_millis / 1000 + _HARD_EXIT_GRACE, os._exit, args=(0,))
        hard.daemon = True
        hard.start()
        if not self.shut_down:
            self.sender.shutdown(timeout_millis)
        self.done.set()
        logging.shutdown()
        os._exit(0)


def _terminate(_signum: int, _frame: object) -> None:
    raise _TerminatedError


def main() -> int:
    """Run the child: read the config frame, then serve until end of input."""
    # Ctrl-C in a terminal reaches the whole process group: the parent's exit flush still
    # needs this process, which ends when the parent closes the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate)
    parent = os.getppid()
    source, sink = sys.stdin.fileno(), sys.stdout.fileno()
    output = _Output(sink)
    library = logging.getLogger("otel_stigmer")
    library.addHandler(_ForwardLogs(output))
    library.setLevel(logging.INFO)
    library.propagate = False
    reader = _frames.FrameReader(source)
    try:
        first = reader.read()
    except _TerminatedError:
        return 0
    if first is None or first[0] != _frames.CONFIG:
        return 2
    _, fields, policy = first
    try:
        config = config_from(fields)
        sender = sender_for(None, config, retry_policy=retry_policy_from(policy))
    except Exception:
        _log.exception("otel-stigmer: the sender process could not start")
        return 3
    del fields, first
    # Every thread here is delivery's: a collection pauses nobody else, so records stay
    # unpacked (packing saves a business thread's collections, at a cost per record), and
    # what start-up left alive is kept out of every collection.
    intake.PACK_ABOVE = sys.maxsize
    gc.freeze()
    child = _Child(sender, output, parent)
    threading.Thread(target=child.report_stats, name="otel-stigmer-stats", daemon=True).start()
    try:
        child.serve(reader)
    except _TerminatedError:
        pass
    except Exception:
        _log.exception("otel-stigmer: the sender process failed; delivering what it has")
    child.finish(DEFAULT_EXIT_MILLIS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
