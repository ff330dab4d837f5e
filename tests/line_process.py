"""A subprocess whose output lines are read as they come, for tests of the commands."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import otel_stigmer

REPO_ROOT = str(Path(otel_stigmer.__file__).resolve().parent.parent)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without STIGMER_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STIGMER_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class LineProcess:
    """Runs ``argv`` and collects one of its output streams line by line.

    Args:
        argv: The command.
        env: Its environment.
        read: The stream to read, ``"stdout"`` or ``"stderr"``; the other one is merged
            into stdout (``merge``), piped, or discarded (reading stderr).
        merge: With ``read="stdout"``, send stderr to the same pipe.
    """

    def __init__(
        self, argv: list[str], env: dict[str, str], *, read: str = "stdout", merge: bool = True
    ) -> None:
        if read == "stderr":
            stdout, stderr = subprocess.DEVNULL, subprocess.PIPE
        else:
            stdout, stderr = subprocess.PIPE, (subprocess.STDOUT if merge else subprocess.PIPE)
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            text=True,
        )
        stream = self.proc.stderr if read == "stderr" else self.proc.stdout
        assert stream is not None
        self._stream: IO[str] = stream
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._stream:
            self.output.append(line)
            self.lines.put(line)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        """Wait for an output line matching ``pattern``; AssertionError with the output if none."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern.pattern!r} in:\n{self.text()}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            match = pattern.search(line)
            if match:
                return match

    def text(self) -> str:
        """The output read so far (all of it once the process has exited)."""
        self._reader.join(timeout=0 if self.proc.poll() is None else 10)
        return "".join(self.output)

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for the exit and the last output line; return the exit status."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def close(self) -> None:
        """Kill the process if it still runs and close its pipes."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
