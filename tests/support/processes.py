"""Helpers shared by the test fixtures that run a server process (podman, the registry)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self


def stop_process_group(proc: subprocess.Popen[bytes] | None, *, timeout: float) -> None:
    """TERM the process group of ``proc``, then KILL it if it has not exited within ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file ('' when it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class ServerProcess:
    """The stop-and-clean-up half of a fixture that runs one server process in a temp dir of its own.

    Subclasses set ``_proc``, ``root``, ``_own_root`` and ``log_path`` and implement ``start``.
    """

    #: Seconds to wait for the process after TERM, and again after KILL.
    STOP_TIMEOUT = 10.0
    _proc: subprocess.Popen[bytes] | None
    root: Path
    _own_root: bool
    log_path: Path

    def start(self) -> Self:
        """Start the server (implemented by the subclass)."""
        raise NotImplementedError

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        return log_tail(self.log_path, lines)

    def stop(self, *, timeout: float | None = None) -> None:
        """Stop the server (TERM, then KILL) and remove the temp dir we made; safe to call twice."""
        proc, self._proc = self._proc, None
        stop_process_group(proc, timeout=self.STOP_TIMEOUT if timeout is None else timeout)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
